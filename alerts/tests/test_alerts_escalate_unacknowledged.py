"""alerts_escalate_unacknowledged: an open critical alert nobody acknowledged within
ALERT_ESCALATE_AFTER_S becomes an emergency, once, with a delivery for the escalation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import services
from alerts.models import Alert, AlertStatus, Delivery, Level
from alerts.tasks import escalate_alerts_task


@pytest.fixture(autouse=True)
def five_minutes(settings):
    settings.ALERT_ESCALATE_AFTER_S = 300


@pytest.fixture
def channel(make_channel, receiver):
    return make_channel("webhook", options={"url": receiver.url}, signing_secret="s", min_level=Level.CRITICAL)


def test_an_unacknowledged_critical_becomes_an_emergency_after_the_delay(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.CRITICAL)
    now = alert.opened_at + timedelta(seconds=301)

    assert services.alerts_escalate_unacknowledged(now=now) == 1

    alert.refresh_from_db()
    assert (alert.level, alert.status, alert.escalated_at) == (Level.EMERGENCY, AlertStatus.OPEN, now)
    assert alert.details["level"] == Level.EMERGENCY and alert.details["unacknowledged_for_s"] == 301
    assert "unacknowledged for 301 s" in alert.note
    assert sorted(Delivery.objects.values_list("event", "level")) == [("escalated", 40), ("opened", 30)]
    # Run again (beat may overlap): nothing more happens.
    assert services.alerts_escalate_unacknowledged(now=now + timedelta(hours=1)) == 0
    assert Delivery.objects.count() == 2


def test_a_critical_within_the_delay_stays_critical(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.CRITICAL)

    assert services.alerts_escalate_unacknowledged(now=alert.opened_at + timedelta(seconds=299)) == 0
    alert.refresh_from_db()
    assert alert.level == Level.CRITICAL


def test_an_acknowledged_critical_is_not_escalated(account_a, channel, breach, risk_manager):
    alert, _ = breach(account_a, level=Level.CRITICAL)
    services.alert_acknowledge(alert=alert, by=risk_manager, note="on it")

    assert services.alerts_escalate_unacknowledged(now=alert.opened_at + timedelta(hours=1)) == 0


def test_a_warning_is_not_escalated_by_time(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.WARNING)

    assert services.alerts_escalate_unacknowledged(now=alert.opened_at + timedelta(hours=1)) == 0


def test_the_clock_starts_when_the_alert_became_critical(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.WARNING)
    Alert.objects.filter(pk=alert.pk).update(opened_at=timezone.now() - timedelta(hours=2))
    breach(account_a, level=Level.CRITICAL)  # escalated just now
    alert.refresh_from_db()

    assert services.alerts_escalate_unacknowledged(now=alert.escalated_at + timedelta(seconds=200)) == 0
    assert services.alerts_escalate_unacknowledged(now=alert.escalated_at + timedelta(seconds=301)) == 1


def test_the_beat_task_runs_it(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.CRITICAL)
    Alert.objects.filter(pk=alert.pk).update(opened_at=timezone.now() - timedelta(seconds=301))

    assert escalate_alerts_task() == 1
    alert.refresh_from_db()
    assert alert.level == Level.EMERGENCY
