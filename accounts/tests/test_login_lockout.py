"""Brute force on every sign-in (issue 14 item 5): 30 of 30 wrong passwords were processed on
/login/, /admin/login/ and /api/v1/auth/token/. Now LOGIN_FAILURE_LIMIT wrong ones lock the login
out (the right password included) until the cool-off has passed, with a clear answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.utils import timezone, translation
from rest_framework.test import APIClient

from accounts.lockout import LOCKED_OUT
from conftest import PASSWORD

LIMIT = settings.AXES_FAILURE_LIMIT
ENGLISH = (
    "Too many failed sign-in attempts for this login. Sign-in is locked for %(minutes)d minutes; "
    "try again after that, or ask a risk manager."
)


@pytest.fixture(autouse=True)
def fresh_throttle():
    cache.clear()  # the token throttle's history: another test's requests must not count here
    yield
    cache.clear()


def cool_off_passes() -> None:
    """As if LOGIN_COOLOFF_MINUTES went by: the attempts are that much older."""
    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)


def desk_login(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def admin_login(client: Client, username: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


@pytest.mark.parametrize("sign_in", [desk_login, admin_login], ids=["desk", "admin"])
def test_wrong_passwords_lock_the_page_sign_in_until_the_cool_off(sign_in, risk_manager):
    client = Client()
    for _ in range(LIMIT - 1):
        assert sign_in(client, "rm", "wrong-password").status_code == 200  # the form again, with its error
    locked = sign_in(client, "rm", "wrong-password")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()

    refused = sign_in(client, "rm", PASSWORD)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session

    cool_off_passes()
    assert sign_in(client, "rm", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(risk_manager.pk)


def test_the_lockout_message_speaks_chinese_too(risk_manager):
    with translation.override("zh-hans"):
        if translation.gettext(ENGLISH) == ENGLISH:
            pytest.skip("zh-Hans catalogue not merged yet (the strings wait in /work/po/S-14.po)")
    client = Client(headers={"accept-language": "zh-hans"})
    for _ in range(LIMIT):
        response = desk_login(client, "rm", "wrong-password")
    assert response.status_code == 429
    assert "登录失败次数过多" in response.content.decode()


def test_wrong_passwords_lock_the_token_endpoint_with_a_reason_code(trader_a):
    api = APIClient()
    for _ in range(LIMIT - 1):
        assert api.post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"}).status_code == 401
    locked = api.post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"})
    assert locked.status_code == 429 and locked.json()["code"] == LOCKED_OUT

    refused = api.post("/api/v1/auth/token/", {"username": "trader_a", "password": PASSWORD})
    assert refused.status_code == 429
    assert refused.json()["code"] == LOCKED_OUT and refused.json()["retry_after_s"] > 0
    assert "access" not in refused.json()

    cool_off_passes()
    answer = api.post("/api/v1/auth/token/", {"username": "trader_a", "password": PASSWORD})
    assert answer.status_code == 200 and answer.json()["access"]


def test_a_lockout_is_per_login_and_address_so_others_still_sign_in(trader_a, trader_b):
    api = APIClient()
    for _ in range(LIMIT):
        api.post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"})
    assert api.post("/api/v1/auth/token/", {"username": "trader_b", "password": PASSWORD}).status_code == 200
    elsewhere = APIClient(REMOTE_ADDR="10.9.8.7")
    assert elsewhere.post("/api/v1/auth/token/", {"username": "trader_a", "password": PASSWORD}).status_code == 200


def test_a_success_before_the_limit_forgets_the_failures(trader_a):
    api = APIClient()
    for _ in range(LIMIT - 1):
        api.post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"})
    assert api.post("/api/v1/auth/token/", {"username": "trader_a", "password": PASSWORD}).status_code == 200
    assert api.post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"}).status_code == 401


def test_the_token_endpoints_are_throttled_per_address(trader_a, settings):
    rate = int(settings.AUTH_TOKEN_RATE.split("/")[0])
    api = APIClient()
    answers = [api.post("/api/v1/auth/token/refresh/", {"refresh": "not-a-token"}) for _ in range(rate + 1)]
    assert {a.status_code for a in answers[:rate]} == {401}
    assert answers[-1].status_code == 429 and answers[-1].json()["code"] == "AUTH_THROTTLED"
    assert int(answers[-1]["Retry-After"]) > 0
