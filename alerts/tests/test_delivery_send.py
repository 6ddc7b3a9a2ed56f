"""outbox.delivery_send: what a receiver's answer does to the Delivery row — 4xx fails for
good with the error kept, 5xx / timeouts retry with capped exponential backoff, 429
honours Retry-After — and the claim that keeps two workers off one row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import outbox
from alerts.models import Delivery, DeliveryStatus, Level

TOKEN = "wecom-key-SENSITIVE-42"


@pytest.fixture
def wecom(make_channel, receiver):
    return make_channel("wecom", options={"base_url": receiver.url, "max_attempts": 4}, token=TOKEN)


@pytest.fixture
def delivery(wecom, account_a, breach) -> Delivery:
    breach(account_a, level=Level.CRITICAL)
    return Delivery.objects.get()


def send_at(delivery: Delivery, now=None):
    outcome = outbox.delivery_send(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    return outcome


def test_a_4xx_answer_fails_for_good_with_the_error_kept(receiver, delivery):
    receiver.answer(404, {"error": "no such robot"})

    outcome = send_at(delivery)

    assert outcome.status == "failed"
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert delivery.last_error.startswith("HTTP 404") and "no such robot" in delivery.last_error
    assert delivery.next_attempt_at is None
    # Not retried: neither by another task nor by the sweep.
    assert send_at(delivery, timezone.now() + timedelta(hours=1)).status == "skipped"
    assert delivery.pk not in outbox.deliveries_due(now=timezone.now() + timedelta(hours=1))
    assert len(receiver.requests) == 1


def test_a_5xx_answer_is_retried_with_exponential_backoff_up_to_the_cap(receiver, delivery):
    t0 = timezone.now()
    for _ in range(3):
        receiver.answer(503, "upstream busy")

    assert send_at(delivery, t0).status == "retry"
    assert (delivery.status, delivery.attempts, delivery.claimed_at) == (DeliveryStatus.PENDING, 1, None)
    assert delivery.next_attempt_at == t0 + timedelta(seconds=5)
    assert delivery.last_error == "HTTP 503: upstream busy"

    assert send_at(delivery, t0 + timedelta(seconds=4)).status == "skipped"  # not due yet
    t1 = t0 + timedelta(seconds=5)
    assert send_at(delivery, t1).retry_in_s == 10
    assert delivery.next_attempt_at == t1 + timedelta(seconds=10)
    t2 = t1 + timedelta(seconds=10)
    assert send_at(delivery, t2).retry_in_s == 20

    assert send_at(delivery, t2 + timedelta(seconds=20)).status == "sent"
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 4, "")
    assert {r.key for r in receiver.requests} == {str(delivery.idempotency_key)}  # one key across every attempt


def test_backoff_doubles_from_five_seconds_and_stops_at_ten_minutes():
    assert [outbox.backoff_s(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]


def test_retries_stop_after_the_channel_max_attempts(receiver, delivery):
    now = timezone.now()
    for _ in range(4):
        receiver.answer(500, "boom")
    for _ in range(3):
        assert send_at(delivery, now).status == "retry"
        now = delivery.next_attempt_at

    assert send_at(delivery, now).status == "failed"
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.FAILED, 4, "HTTP 500: boom")


def test_a_429_honours_retry_after_instead_of_the_backoff(receiver, delivery):
    receiver.answer(429, {"errcode": 45009}, headers={"Retry-After": "37"})
    now = timezone.now()

    outcome = send_at(delivery, now)

    assert (outcome.status, outcome.retry_in_s) == ("retry", 37)
    assert delivery.next_attempt_at == now + timedelta(seconds=37)


def test_telegram_says_retry_after_in_its_body(make_channel, receiver, account_b, breach):
    make_channel("telegram", options={"base_url": receiver.url, "chat_id": 1}, token="1:x")
    breach(account_b, level=Level.CRITICAL)
    delivery = Delivery.objects.get()
    receiver.answer(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 12}})

    assert send_at(delivery).retry_in_s == 12


def test_a_408_and_a_refused_connection_are_retried(receiver, delivery, wecom):
    receiver.answer(408, "request timeout")
    assert send_at(delivery).status == "retry"

    wecom.settings = {"base_url": "http://127.0.0.1:9", "timeout_s": 2}  # discard port: nobody listens
    wecom.save(update_fields=["settings"])
    outcome = send_at(delivery, delivery.next_attempt_at)

    assert outcome.status == "retry"
    assert delivery.last_error.startswith("ConnectionError")


def test_a_vendor_error_code_fails_with_its_message_and_too_fast_is_retried(receiver, delivery):
    receiver.answer(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
    assert send_at(delivery).status == "retry"
    assert delivery.last_error == "wecom errcode 45009: api freq out of limit"

    receiver.answer(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    assert send_at(delivery, delivery.next_attempt_at).status == "failed"
    assert delivery.last_error == "wecom errcode 93000: invalid webhook url"


def test_the_robot_key_never_appears_in_the_stored_error(make_channel, account_b, breach):
    # Nothing listens on the discard port, so requests' error text would quote the whole URL, key and all.
    make_channel("wecom", options={"base_url": "http://127.0.0.1:9"}, token=TOKEN)
    breach(account_b, level=Level.CRITICAL)
    delivery = Delivery.objects.get()

    send_at(delivery)

    assert delivery.last_error and TOKEN not in delivery.last_error
    assert "key=***" in delivery.last_error


def test_a_row_another_worker_holds_is_skipped_until_its_lease_runs_out(receiver, delivery):
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, claimed_at=now, attempts=1)

    assert send_at(delivery, now + timedelta(seconds=30)).status == "skipped"
    assert receiver.requests == []

    # Past the lease (60 s by default) the holder is presumed dead and the row is taken over.
    assert send_at(delivery, now + timedelta(seconds=61)).status == "sent"
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)


def test_a_sent_delivery_is_never_sent_again(receiver, delivery):
    assert send_at(delivery).status == "sent"

    assert send_at(delivery, timezone.now() + timedelta(days=1)).status == "skipped"
    assert len(receiver.requests) == 1


def test_a_worker_that_lost_its_lease_does_not_overwrite_the_newer_attempt(receiver, delivery):
    """The attempt number from the claim fences every later write."""
    now = timezone.now()
    first = outbox._claim(delivery.pk, now)
    second = outbox._claim(delivery.pk, now + timedelta(seconds=61))  # the first worker stalled past its lease
    outbox._finish(delivery, second, status=DeliveryStatus.SENT, sent_at=now)

    assert outbox._finish(delivery, first, status=DeliveryStatus.FAILED, last_error="late") is False
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 2, "")
