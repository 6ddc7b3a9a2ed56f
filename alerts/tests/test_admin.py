"""The admin around notifications: write-only secrets, the "send a test message" action
through the real sender, delivery status and errors on view, and retrying a failure."""

from __future__ import annotations

import pytest
from django.test import Client

from alerts import outbox
from alerts.models import Delivery, DeliveryStatus, Level, NotificationChannel

BOT_TOKEN = "777000:SECRET-bot-token"


@pytest.fixture
def rm_client(risk_manager) -> Client:
    client = Client()
    client.force_login(risk_manager)
    return client


def action(client: Client, url: str, name: str, ids: list[int]):
    return client.post(url, {"action": name, "_selected_action": ids}, follow=True)


def test_secrets_are_stored_encrypted_and_never_rendered_back(rm_client, receiver):
    form = {
        "name": "desk bot",
        "kind": "telegram",
        "language": "zh-hans",
        "enabled": "on",
        "min_level": Level.WARNING,
        "settings": f'{{"chat_id": 42, "base_url": "{receiver.url}"}}',
        "rate_limit_per_minute": 10,
        "token": BOT_TOKEN,
        "signing_secret": "",
    }
    response = rm_client.post("/admin/alerts/notificationchannel/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]

    channel = NotificationChannel.objects.get()
    assert BOT_TOKEN not in channel.secret_encrypted and channel.secrets() == {"token": BOT_TOKEN}
    page = rm_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/change/").content.decode()
    assert BOT_TOKEN not in page and channel.secret_encrypted not in page
    history = rm_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/history/").content.decode()
    assert BOT_TOKEN not in history

    # Saving again with the secret fields empty keeps the stored token.
    rm_client.post(f"/admin/alerts/notificationchannel/{channel.pk}/change/", {**form, "token": ""})
    channel.refresh_from_db()
    assert channel.secrets() == {"token": BOT_TOKEN}


def test_a_channel_missing_what_its_kind_needs_is_refused(rm_client):
    form = {
        "name": "hook",
        "kind": "webhook",
        "language": "en",
        "min_level": Level.WARNING,
        "settings": "{}",
        "rate_limit_per_minute": 10,
    }
    page = rm_client.post("/admin/alerts/notificationchannel/add/", form).content.decode()

    assert "Settings need “url” for this kind." in page
    assert "This kind needs a signing secret." in page
    assert not NotificationChannel.objects.exists()


def test_send_test_message_goes_through_the_real_sender_and_says_so(rm_client, make_channel, receiver):
    channel = make_channel(
        "telegram", language="zh-hans", options={"base_url": receiver.url, "chat_id": 42}, token=BOT_TOKEN
    )

    page = action(rm_client, "/admin/alerts/notificationchannel/", "send_test_message", [channel.pk]).content.decode()

    assert "test message sent" in page
    [request] = receiver.requests
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert "riskdesk 测试消息" in request.json["text"]
    assert request.key  # a fresh idempotency key, like any send


def test_send_test_message_shows_the_error_without_the_token(rm_client, make_channel, receiver):
    channel = make_channel("telegram", options={"base_url": receiver.url, "chat_id": 42}, token=BOT_TOKEN)
    receiver.answer(
        400, {"ok": False, "error_code": 400, "description": f"Bad Request: chat not found /bot{BOT_TOKEN}"}
    )

    page = action(rm_client, "/admin/alerts/notificationchannel/", "send_test_message", [channel.pk]).content.decode()

    assert "not sent: HTTP 400" in page and "chat not found" in page
    assert BOT_TOKEN not in page


def test_failed_deliveries_show_their_error_and_can_be_retried(rm_client, make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k")
    breach(account_a, level=Level.CRITICAL)
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, attempts=3, last_error="wecom errcode 93000: invalid webhook url"
    )

    listing = rm_client.get("/admin/alerts/delivery/").content.decode()
    assert "invalid webhook url" in listing and "Failed" in listing

    action(rm_client, "/admin/alerts/delivery/", "retry", [delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.claimed_at) == (DeliveryStatus.PENDING, 0, None)
    assert delivery.pk in outbox.deliveries_due()


def test_a_viewer_cannot_send_test_messages_or_retry(viewer, make_channel, receiver):
    channel = make_channel("telegram", options={"base_url": receiver.url, "chat_id": 42}, token=BOT_TOKEN)
    client = Client()
    client.force_login(viewer)

    action(client, "/admin/alerts/notificationchannel/", "send_test_message", [channel.pk])

    assert receiver.requests == []
