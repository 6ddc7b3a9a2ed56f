"""Issue 14 item 2: a dead stream process was invisible. The worker, from beat, raises a STREAM_DOWN
emergency to every channel while the stream process's beat is missing, and resolves it when the
beat is back."""

from __future__ import annotations

import pytest

from alerts.models import Alert, Delivery, Level, NotificationChannel
from marketdata import live
from riskdesk.tasks import watch_stream_task


@pytest.fixture
def channels(db):
    # A channel that would hear nothing below CRITICAL about accounts gets it all the same.
    return [
        NotificationChannel.objects.create(name="hook", kind="webhook", min_level=Level.EMERGENCY, settings={}),
        NotificationChannel.objects.create(name="mail", kind="email", min_level=Level.WARNING, settings={}),
    ]


def test_a_missing_beat_raises_stream_down_to_every_channel_once_and_a_beat_resolves_it(channels):
    live.process_withdraw()
    assert watch_stream_task() is False
    assert watch_stream_task() is False  # beat runs it every 5 s: one alert, one page per channel
    [alert] = Alert.objects.filter(reason_code="STREAM_DOWN")
    assert alert.level == Level.EMERGENCY and alert.account_id is None and alert.status == "open"
    assert "stream process" in alert.message
    routed = Delivery.objects.filter(alert=alert, event="opened")
    assert sorted(routed.values_list("channel__name", flat=True)) == ["hook", "mail"]

    live.process_beat({"pid": 1, "accounts": 0})
    try:
        assert watch_stream_task() is True
    finally:
        live.process_withdraw()
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolution == "cleared"


def test_a_beat_older_than_the_stale_limit_counts_as_missing(channels, settings):
    settings.STREAM_STALE_AFTER_S = 5
    live.process_beat({"pid": 1, "accounts": 0})
    beat = live.process_get()
    beat["heartbeat_ms"] -= 6_000
    from django.core.cache import cache

    cache.set(live.PROCESS_KEY, beat, 60)
    try:
        assert watch_stream_task() is False
    finally:
        live.process_withdraw()
    assert Alert.objects.get(reason_code="STREAM_DOWN").message_params["heartbeat_ms"] == beat["heartbeat_ms"]
