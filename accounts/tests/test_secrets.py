from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client

from accounts.models import ExchangeAccount
from conftest import PASSWORD

SECRETS = ("AKEY-aaaa-PLAINTEXT-1234", "ASECRET-aaaa-PLAINTEXT-5678")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_credentials_are_encrypted_at_rest(account_a):
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted, api_secret_encrypted FROM accounts_exchangeaccount")
        row = " ".join(cursor.fetchone())
    assert_no_secret(row)
    assert account_a.credentials() == SECRETS
    assert account_a.api_key_hint == "1234"


def test_history_keeps_no_ciphertext(account_a):
    fields = {f.name for f in ExchangeAccount.history.model._meta.fields}
    assert "api_key_encrypted" not in fields and "api_secret_encrypted" not in fields


@pytest.fixture
def admin_client(risk_manager):
    client = Client()
    assert client.login(username="rm", password=PASSWORD)
    return client


def test_admin_pages_never_show_credentials(admin_client, account_a):
    for url in (
        "/admin/accounts/exchangeaccount/",
        f"/admin/accounts/exchangeaccount/{account_a.id}/change/",
        f"/admin/accounts/exchangeaccount/{account_a.id}/history/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert_no_secret(response.content.decode())
        assert account_a.api_key_encrypted not in response.content.decode()


def test_admin_rotates_credentials_without_echoing_them(admin_client, account_a):
    data = {
        "name": "acct-a",
        "exchange": "binance_usdm",
        "position_mode": "one_way",
        "enabled": "on",
        "trading_state": "ACTIVE",
        "trading_state_reason": "",
        "api_key": "NEWKEY-9999",
        "api_secret": "NEWSECRET",
    }
    response = admin_client.post(f"/admin/accounts/exchangeaccount/{account_a.id}/change/", data, follow=True)
    assert response.status_code == 200
    account_a.refresh_from_db()
    assert account_a.credentials() == ("NEWKEY-9999", "NEWSECRET")
    page = admin_client.get(f"/admin/accounts/exchangeaccount/{account_a.id}/change/").content.decode()
    assert "NEWSECRET" not in page and "NEWKEY-9999" not in page and "9999" in page  # only the hint


def test_admin_refuses_a_key_without_its_secret(admin_client, db):
    data = {
        "name": "new",
        "exchange": "binance_usdm",
        "position_mode": "one_way",
        "trading_state": "ACTIVE",
        "api_key": "ONLYKEY",
    }
    response = admin_client.post("/admin/accounts/exchangeaccount/add/", data)
    assert response.status_code == 200 and "Enter both" in response.content.decode()
    assert not ExchangeAccount.objects.filter(name="new").exists()


def test_api_responses_never_carry_credentials(api_for, risk_manager, account_a):
    api = api_for(risk_manager)
    for url in ("/api/v1/accounts/", f"/api/v1/accounts/{account_a.id}/"):
        body = api.get(url).content.decode()
        assert_no_secret(body)
        assert "encrypted" not in body


def test_logs_redact_signatures_and_keys(caplog, account_a):
    from riskdesk.logging import RedactSecretsFilter

    logger = logging.getLogger("riskdesk.test")
    logger.addFilter(RedactSecretsFilter())
    with caplog.at_level(logging.INFO, logger="riskdesk.test"):
        logger.info("GET /fapi/v2/account?timestamp=1&signature=%s X-MBX-APIKEY: %s", "ab" * 32, SECRETS[0])
        try:
            raise RuntimeError(f"request failed api_secret={SECRETS[1]}")
        except RuntimeError:
            logger.exception("boom")
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert_no_secret(text)
    assert "ab" * 32 not in text
    assert "signature=***" in text


def test_logs_redact_chat_robot_tokens_in_urls():
    from riskdesk.logging import redact

    line = (
        "POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=WECOMKEY123 "
        "https://oapi.dingtalk.com/robot/send?access_token=DINGTOKEN&timestamp=1&sign=SIGNATURE "
        "https://api.telegram.org/bot123456:ABC-def_ghi/sendMessage "
        "https://open.feishu.cn/open-apis/bot/v2/hook/feishu-token-xyz"
    )
    cleaned = redact(line)
    for secret in ("WECOMKEY123", "DINGTOKEN", "SIGNATURE", "ABC-def_ghi", "feishu-token-xyz"):
        assert secret not in cleaned
