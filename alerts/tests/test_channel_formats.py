"""Each channel kind speaks its service's real request format to a local receiver:
paths, query strings, JSON shapes, signatures recomputed here, the idempotency key,
and the message in the channel's language."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from alerts import outbox
from alerts.models import Delivery, DeliveryStatus, Level


@pytest.fixture
def critical(account_a, breach):
    """A critical margin breach on acct-a, raised before the test makes its channel."""

    def raise_after_channel():
        alert, _ = breach(account_a, level=Level.CRITICAL, value="0.93")
        delivery = Delivery.objects.get(alert=alert)
        return alert, delivery

    return raise_after_channel


def send(delivery: Delivery) -> Delivery:
    assert outbox.delivery_send(delivery_id=delivery.pk).status == "sent"
    delivery.refresh_from_db()
    return delivery


def assert_carries_the_alert(text: str, alert) -> None:
    # Rounded for a person: the ratio as a percentage, the price grouped (the JSON keeps "0.93").
    for piece in ("acct-a", "Margin ratio", "93.00 %", "80.00 %", "64,123.5", "MARGIN_RATIO_CRITICAL"):
        assert piece in text, piece
    assert f"{settings.SITE_URL}/admin/alerts/alert/{alert.pk}/change/" in text


def test_the_webhook_posts_json_signed_over_timestamp_and_body(make_channel, receiver, critical):
    make_channel("webhook", options={"url": f"{receiver.url}/hooks/risk"}, signing_secret="whsec-1")
    alert, delivery = critical()

    delivery = send(delivery)

    [request] = receiver.requests
    assert request.path == "/hooks/risk"
    assert request.headers["content-type"].startswith("application/json")
    timestamp = request.headers["x-riskdesk-timestamp"]
    expected = hmac.new(b"whsec-1", timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-riskdesk-signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - time.time()) < 60
    assert request.key == request.headers["x-riskdesk-delivery"] == str(delivery.idempotency_key)
    body = request.json
    assert (body["event"], body["level"], body["idempotency_key"]) == ("opened", 30, str(delivery.idempotency_key))
    assert body["alert"]["id"] == alert.pk and body["alert"]["account"] == "acct-a"
    assert (body["alert"]["value"], body["alert"]["limit"], body["alert"]["mark_price"]) == ("0.93", "0.8", "64123.5")
    assert_carries_the_alert(body["text"], alert)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 1, "")
    assert delivery.sent_at is not None


def test_wecom_posts_markdown_to_the_robot_key(make_channel, receiver, critical):
    make_channel("wecom", options={"base_url": receiver.url}, token="wecom-key-123")
    alert, delivery = critical()

    send(delivery)

    [request] = receiver.requests
    assert request.path == "/cgi-bin/webhook/send"
    assert request.query == {"key": "wecom-key-123"}
    assert request.key == str(delivery.idempotency_key)
    body = request.json
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert_carries_the_alert(body["markdown"]["content"], alert)


def test_dingtalk_signs_timestamp_and_secret_into_the_query(make_channel, receiver, critical):
    make_channel("dingtalk", options={"base_url": receiver.url}, token="ding-token", signing_secret="SECabc+/=")
    alert, delivery = critical()

    send(delivery)

    [request] = receiver.requests
    assert request.path == "/robot/send"
    assert request.query["access_token"] == "ding-token"
    timestamp = request.query["timestamp"]
    assert abs(int(timestamp) / 1000 - time.time()) < 60  # milliseconds
    digest = hmac.new(b"SECabc+/=", f"{timestamp}\nSECabc+/=".encode(), hashlib.sha256).digest()
    # parse_qs decoded the query: equality proves the base64 (+ / =) was URL-encoded on the way.
    assert request.query["sign"] == base64.b64encode(digest).decode()
    body = request.json
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert "Critical" in body["markdown"]["title"]
    assert_carries_the_alert(body["markdown"]["text"], alert)


def test_feishu_signs_with_the_timestamp_and_secret_as_the_key(make_channel, receiver, critical):
    make_channel("feishu", options={"base_url": receiver.url}, token="hook-uuid-1", signing_secret="fs-secret")
    alert, delivery = critical()

    send(delivery)

    [request] = receiver.requests
    assert request.path == "/open-apis/bot/v2/hook/hook-uuid-1"
    body = request.json
    assert isinstance(body["timestamp"], str) and abs(int(body["timestamp"]) - time.time()) < 60
    expected = hmac.new(f"{body['timestamp']}\nfs-secret".encode(), b"", hashlib.sha256).digest()
    assert body["sign"] == base64.b64encode(expected).decode()
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["title"]["content"].startswith("[Critical]")
    assert body["card"]["header"]["template"] == "red"
    assert_carries_the_alert(body["card"]["elements"][0]["text"]["content"], alert)
    assert request.key == str(delivery.idempotency_key)


def test_telegram_sends_html_to_the_chat_through_the_bot_token(make_channel, receiver, critical):
    make_channel("telegram", options={"base_url": receiver.url, "chat_id": -100123}, token="123456:ABC-def")
    alert, delivery = critical()

    send(delivery)

    [request] = receiver.requests
    assert request.path == "/bot123456:ABC-def/sendMessage"
    body = request.json
    assert (body["chat_id"], body["parse_mode"]) == (-100123, "HTML")
    assert body["text"].startswith("<b>[Critical] Alert opened")
    assert_carries_the_alert(body["text"], alert)
    assert request.key == str(delivery.idempotency_key)


def test_email_goes_over_smtp_as_text_and_html_with_a_message_id_from_the_delivery(make_channel, smtp_server, critical):
    make_channel(
        "email",
        options={"host": "127.0.0.1", "port": smtp_server.port, "to": ["desk@example.com", "cro@example.com"]},
    )
    alert, delivery = critical()

    send(delivery)

    [message] = smtp_server.messages
    assert smtp_server.envelopes[0].rcpt_tos == ["desk@example.com", "cro@example.com"]
    assert message["Subject"] == "[Critical] Alert opened: Margin ratio on acct-a"
    assert message["Message-ID"] == f"<{delivery.idempotency_key}@{urlsplit(settings.SITE_URL).hostname}>"
    assert message["X-Riskdesk-Delivery"] == str(delivery.idempotency_key)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert_carries_the_alert(text, alert)
    assert_carries_the_alert(html, alert)
    assert "<table>" in html and "<table>" not in text


def test_a_chinese_channel_gets_the_message_in_chinese_and_an_english_one_in_english(
    make_channel, receiver, account_a, breach
):
    make_channel("wecom", name="zh", language="zh-hans", options={"base_url": receiver.url}, token="zh")
    make_channel("wecom", name="en", language="en", options={"base_url": receiver.url}, token="en")
    breach(account_a, level=Level.CRITICAL, value="0.93")

    for delivery in Delivery.objects.all():
        send(delivery)

    by_key = {r.query["key"]: r.json["markdown"]["content"] for r in receiver.requests}
    assert "[严重] 告警触发" in by_key["zh"]
    assert "账户" in by_key["zh"] and "限额" in by_key["zh"] and "标记价格" in by_key["zh"]
    assert "Alert opened" not in by_key["zh"]
    assert "[Critical] Alert opened" in by_key["en"]
    assert "Account" in by_key["en"] and "Mark price" in by_key["en"]
    assert "严重" not in by_key["en"]


def test_the_message_describes_the_event_as_it_was_not_as_the_alert_is_now(make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k", min_level=Level.WARNING)
    breach(account_a, level=Level.WARNING, value="0.85")
    opened = Delivery.objects.get(event="opened")
    breach(account_a, level=Level.CRITICAL, value="0.97")  # escalates before the first send went out

    send(opened)

    content = receiver.requests[0].json["markdown"]["content"]
    assert "[Warning] Alert opened" in content and "85.00 %" in content and "97.00 %" not in content
