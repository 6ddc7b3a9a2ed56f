"""A burst over a channel's rate limit: the surplus is held, then folded into one digest
sent when the minute opens again; every event is either sent or inside a sent digest."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import outbox
from alerts.models import Delivery, DeliveryEvent, DeliveryStatus, Level


@pytest.fixture
def burst(make_channel, receiver, account_a, breach):
    """Six breaches on a channel allowed three messages a minute."""
    channel = make_channel("wecom", options={"base_url": receiver.url}, token="k", rate_limit_per_minute=3)
    for n in range(6):
        breach(account_a, rule=f"rule_{n}", level=Level.CRITICAL if n == 5 else Level.WARNING, value=f"0.9{n}")
    return channel, list(Delivery.objects.order_by("pk"))


def test_a_burst_over_the_limit_sends_the_limit_then_one_digest_with_the_rest(receiver, burst):
    channel, deliveries = burst
    t0 = timezone.now()

    outcomes = [outbox.delivery_send(delivery_id=d.pk, now=t0 + timedelta(seconds=i)) for i, d in enumerate(deliveries)]

    assert [o.status for o in outcomes] == ["sent", "sent", "sent", "deferred", "deferred", "deferred"]
    assert len(receiver.requests) == 3
    held = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[3:]])
    assert all(d.status == DeliveryStatus.PENDING and d.rate_limited and d.attempts == 0 for d in held)
    # The window opens when the oldest of the three sends is a minute old.
    assert {d.next_attempt_at for d in held} == {t0 + timedelta(seconds=60)}
    assert outcomes[3].retry_in_s == 57

    opened = t0 + timedelta(seconds=60)
    digest_outcome = outbox.delivery_send(delivery_id=deliveries[3].pk, now=opened)
    late_copies = [outbox.delivery_send(delivery_id=d.pk, now=opened).status for d in deliveries[4:]]

    assert digest_outcome.status == "sent" and late_copies == ["skipped", "skipped"]
    digest = Delivery.objects.get(event=DeliveryEvent.DIGEST)
    assert digest_outcome.delivery_id == digest.pk
    assert (digest.status, digest.channel, digest.alert, digest.level) == (
        DeliveryStatus.SENT,
        channel,
        None,
        Level.CRITICAL,
    )
    assert sorted(digest.folded.values_list("pk", flat=True)) == [d.pk for d in deliveries[3:]]
    assert set(digest.folded.values_list("status", flat=True)) == {DeliveryStatus.DIGESTED}

    assert len(receiver.requests) == 4
    content = receiver.requests[-1].json["markdown"]["content"]
    assert "[Critical] 3 alert events held back by the rate limit" in content
    for n in (3, 4, 5):
        assert f"rule_{n}" in content and f"0.9{n}" in content
    assert receiver.requests[-1].key == str(digest.idempotency_key)

    # Nothing lost: every event went out on its own or inside a digest that went out.
    for delivery in Delivery.objects.exclude(event=DeliveryEvent.DIGEST):
        assert delivery.status == DeliveryStatus.SENT or (
            delivery.status == DeliveryStatus.DIGESTED and delivery.digest.status == DeliveryStatus.SENT
        )


def test_one_held_delivery_alone_goes_out_as_itself_when_the_window_opens(make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k", rate_limit_per_minute=1)
    breach(account_a, rule="one")
    breach(account_a, rule="two")
    first, second = Delivery.objects.order_by("pk")
    t0 = timezone.now()

    assert outbox.delivery_send(delivery_id=first.pk, now=t0).status == "sent"
    assert outbox.delivery_send(delivery_id=second.pk, now=t0).status == "deferred"
    assert outbox.delivery_send(delivery_id=second.pk, now=t0 + timedelta(seconds=60)).status == "sent"

    assert not Delivery.objects.filter(event=DeliveryEvent.DIGEST).exists()
    assert "two" in receiver.requests[-1].json["markdown"]["content"]


def test_held_deliveries_are_due_for_the_sweep_when_the_window_opens(burst):
    _channel, deliveries = burst
    t0 = timezone.now()
    for d in deliveries:
        outbox.delivery_send(delivery_id=d.pk, now=t0)

    held = {d.pk for d in deliveries[3:]}
    assert held.isdisjoint(outbox.deliveries_due(now=t0 + timedelta(seconds=59)))
    assert held <= set(outbox.deliveries_due(now=t0 + timedelta(seconds=60)))


def test_a_limit_of_zero_means_no_limit(make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k", rate_limit_per_minute=0)
    for n in range(5):
        breach(account_a, rule=f"r{n}")

    statuses = [outbox.delivery_send(delivery_id=d.pk).status for d in Delivery.objects.all()]

    assert statuses == ["sent"] * 5
