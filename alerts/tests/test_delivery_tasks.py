"""The Celery side: the deliver task runs the service, the sweep finds exactly the rows
a worker should try, and beat schedules both sweeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import outbox
from alerts.models import Delivery, DeliveryStatus, Level
from alerts.tasks import deliver_delivery_task
from riskdesk.celery import app


@pytest.fixture
def deliveries(make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url}, token="k")
    for n in range(5):
        breach(account_a, rule=f"rule_{n}", level=Level.CRITICAL)
    return list(Delivery.objects.order_by("pk"))


def test_the_deliver_task_sends_the_row_and_reports_the_outcome(receiver, deliveries):
    assert deliver_delivery_task(deliveries[0].pk) == "sent"
    assert deliver_delivery_task(deliveries[0].pk) == "skipped"
    assert len(receiver.requests) == 1


def test_a_deliver_task_for_a_row_that_is_gone_does_nothing(db):
    assert deliver_delivery_task(987654) == "skipped"


def test_the_sweep_picks_lost_hand_offs_due_retries_and_expired_leases(deliveries):
    now = timezone.now()
    lost, retry_due, retry_later, live_lease, dead_lease = deliveries
    Delivery.objects.filter(pk=retry_due.pk).update(next_attempt_at=now - timedelta(seconds=1), attempts=1)
    Delivery.objects.filter(pk=retry_later.pk).update(next_attempt_at=now + timedelta(seconds=30), attempts=1)
    Delivery.objects.filter(pk=live_lease.pk).update(
        status=DeliveryStatus.SENDING, claimed_at=now - timedelta(seconds=5)
    )
    Delivery.objects.filter(pk=dead_lease.pk).update(
        status=DeliveryStatus.SENDING, claimed_at=now - timedelta(minutes=5)
    )

    assert sorted(outbox.deliveries_due(now=now)) == sorted([lost.pk, retry_due.pk, dead_lease.pk])


def test_the_sweep_leaves_sent_failed_and_digested_rows_alone(deliveries):
    finished = [DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.DIGESTED]
    for delivery, status in zip(deliveries[:3], finished, strict=True):
        Delivery.objects.filter(pk=delivery.pk).update(status=status)

    assert sorted(outbox.deliveries_due()) == [d.pk for d in deliveries[3:]]


def test_a_channel_lease_setting_shortens_the_takeover(make_channel, receiver, account_a, breach):
    make_channel("wecom", options={"base_url": receiver.url, "lease_s": 4, "timeout_s": 1}, token="k")
    breach(account_a)
    now = timezone.now()
    Delivery.objects.update(status=DeliveryStatus.SENDING, claimed_at=now - timedelta(seconds=5))

    assert len(outbox.deliveries_due(now=now)) == 1


def test_beat_runs_the_delivery_sweep_every_10_s_and_the_escalation_every_15_s():
    schedule = app.conf.beat_schedule
    assert schedule["deliver-pending"]["task"] == "alerts.tasks.deliver_pending_task"
    assert schedule["deliver-pending"]["schedule"] == 10.0
    assert schedule["escalate-alerts"]["task"] == "alerts.tasks.escalate_alerts_task"
    assert schedule["escalate-alerts"]["schedule"] == 15.0
    assert {"alerts.tasks.deliver_pending_task", "alerts.tasks.escalate_alerts_task"} <= set(app.tasks)
