"""No (account, rule, subject) sends a channel more than 2 messages in any 10 minutes: the rest
fold into the channel's digest. An EMERGENCY is never held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import outbox, services
from alerts.models import Delivery, DeliveryEvent, DeliveryStatus, Level


@pytest.fixture
def channel(make_channel, receiver):
    return make_channel("wecom", options={"base_url": receiver.url}, token="k", rate_limit_per_minute=10)


def flap(account, breach, t0):
    """Open, clear, open again (past the re-open window): three messages about one subject."""
    breach(account, level=Level.WARNING, value="0.85")
    opened = Delivery.objects.get(event=DeliveryEvent.OPENED)
    assert outbox.delivery_send(delivery_id=opened.pk, now=t0).status == "sent"
    services.alert_clear(account_id=account.id, rule="margin_ratio", subject="account")
    resolved = Delivery.objects.get(event=DeliveryEvent.RESOLVED)
    assert outbox.delivery_send(delivery_id=resolved.pk, now=t0 + timedelta(seconds=1)).status == "sent"
    breach(account, level=Level.WARNING, value="0.86", reopen_window_s=0)
    return Delivery.objects.filter(status=DeliveryStatus.PENDING).get()


def test_a_third_message_about_a_subject_within_ten_minutes_is_held(account_a, channel, receiver, breach):
    t0 = timezone.now() + timedelta(minutes=1)  # after every row is due
    third = flap(account_a, breach, t0)

    outcome = outbox.delivery_send(delivery_id=third.pk, now=t0 + timedelta(seconds=2))

    third.refresh_from_db()
    assert outcome.status == "deferred"
    assert (third.status, third.rate_limited, third.held_reason) == (DeliveryStatus.PENDING, True, outbox.BUDGET_REASON)
    assert third.next_attempt_at == t0 + timedelta(minutes=10)
    assert len(receiver.requests) == 2


def test_the_held_message_folds_into_the_next_digest_on_the_channel(account_a, channel, receiver, breach):
    t0 = timezone.now() + timedelta(minutes=1)  # after every row is due
    third = flap(account_a, breach, t0)
    outbox.delivery_send(delivery_id=third.pk, now=t0 + timedelta(seconds=2))
    breach(account_a, rule="drawdown", level=Level.WARNING, value="0.3")
    other = Delivery.objects.get(alert__rule="drawdown")

    outcome = outbox.delivery_send(delivery_id=other.pk, now=t0 + timedelta(seconds=3))

    digest = Delivery.objects.get(event=DeliveryEvent.DIGEST)
    assert outcome.status == "sent" and outcome.delivery_id == digest.pk
    assert set(digest.folded.values_list("pk", flat=True)) == {third.pk, other.pk}
    assert len(receiver.requests) == 3


def test_when_its_window_opens_a_held_message_goes_out_as_a_digest(account_a, channel, receiver, breach):
    t0 = timezone.now() + timedelta(minutes=1)  # after every row is due
    third = flap(account_a, breach, t0)
    outbox.delivery_send(delivery_id=third.pk, now=t0 + timedelta(seconds=2))

    outcome = outbox.delivery_send(delivery_id=third.pk, now=t0 + timedelta(minutes=10, seconds=1))

    third.refresh_from_db()
    assert outcome.status == "sent"
    assert third.status == DeliveryStatus.DIGESTED and third.digest_id == outcome.delivery_id
    assert "held back" in receiver.requests[-1].json["markdown"]["content"]


def test_an_emergency_is_never_held_by_the_budget_or_the_channels_minute(account_a, make_channel, receiver, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k", rate_limit_per_minute=2)
    t0 = timezone.now() + timedelta(minutes=1)  # after every row is due
    third = flap(account_a, breach, t0)  # the channel's minute and the subject's budget are both spent
    Delivery.objects.filter(pk=third.pk).update(status=DeliveryStatus.DIGESTED)  # out of the way

    breach(account_a, level=Level.EMERGENCY, value="0.99", reopen_window_s=0)
    emergency = Delivery.objects.get(level=Level.EMERGENCY)
    outcome = outbox.delivery_send(delivery_id=emergency.pk, now=t0 + timedelta(seconds=3))

    assert outcome.status == "sent" and outcome.delivery_id == emergency.pk
    assert "[Emergency]" in receiver.requests[-1].json["markdown"]["content"]
