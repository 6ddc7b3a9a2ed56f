"""The feed-stale alert the DjangoSink writes: raised when the market feed goes stale, resolved when
it recovers, in that order; a database error while writing it is retried, and never raised into
the market stream (it restarted the socket, which then went stale again)."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper

from alerts.models import Alert, AlertStatus
from marketdata import sink as sink_module
from marketdata.sink import DjangoSink
from marketdata.streams import FeedStatus


def feed_alert() -> Alert | None:
    return Alert.objects.filter(rule="feed_stale", subject="market").first()


async def stale_then_recovered(sink: DjangoSink, status: FeedStatus) -> None:
    await sink.feed_changed(status, became_stale=True, recovered=False)
    await sink.feed_changed(status, became_stale=False, recovered=True)
    await sink._feed_writes  # the writes run behind the stream, in order


@pytest.mark.django_db(transaction=True)
def test_stale_raises_and_recovery_resolves_the_feed_alert_in_order():
    status = FeedStatus(name="market")
    asyncio.run(stale_then_recovered(DjangoSink(), status))
    alert = feed_alert()
    assert alert is not None and alert.reason_code == "FEED_STALE" and alert.status == AlertStatus.RESOLVED


@pytest.mark.django_db(transaction=True)
def test_a_database_error_on_the_feed_alert_is_retried_not_raised(monkeypatch):
    monkeypatch.setattr(sink_module, "FEED_WRITE_ATTEMPTS", 3)
    real_execute, failures = CursorWrapper.execute, []

    def execute(self, sql, params=None):
        if "INSERT" in sql.upper() and "alert" in sql.lower() and not failures:
            failures.append(sql)
            raise OperationalError("database is locked")  # the database edge, as SQLite answers
        return real_execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", execute)

    async def stale() -> None:
        sink = DjangoSink()
        await sink.feed_changed(FeedStatus(name="market"), became_stale=True, recovered=False)  # must not raise
        await sink._feed_writes

    asyncio.run(stale())
    assert failures and feed_alert() is not None and feed_alert().status == AlertStatus.OPEN
