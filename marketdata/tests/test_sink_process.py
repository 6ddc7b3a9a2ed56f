"""DjangoSink(process=True): the live state and persistence in a child process of their own
(run_streams with Redis). The child must see what the parent sees (the test database included),
publish and write what it is handed, and be replaced when it dies, with nothing queued lost."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.db import connection

from conftest import require_service
from marketdata import live
from marketdata.models import Symbol
from marketdata.sink import DjangoSink
from marketdata.tests.test_sink_persist import desk  # noqa: F401 - the fixture
from positions.models import AccountSnapshot, Position


@pytest.mark.django_db(transaction=True)
def test_the_sink_process_publishes_persists_and_is_replaced_when_it_dies(desk):  # noqa: F811
    if not settings.REDIS_URL:
        require_service("REDIS_URL")  # a child cannot read this process's in-memory cache
    if connection.vendor == "sqlite":
        require_service("DATABASE_URL")  # nor an in-memory test database
    book, ids = desk
    sink = DjangoSink(process=True)
    try:
        asyncio.run(sink.account_changed(ids[0], book, []))
        asyncio.run(sink.marks_changed({"BTCUSDT": (D("43000.5"), 1_700_000_000_000)}))
        assert sink.drain(60)
        assert Symbol.objects.get(name="BTCUSDT").mark_price == D("43000.5")
        state = live.account_get(ids[0])
        assert state["figures"]["equity"] == str(book.account(ids[0]).equity)
        assert [p["symbol"] for p in state["positions"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        assert Position.objects.filter(account_id=ids[0]).count() == 2  # SOLUSDT is unknown to the desk
        assert AccountSnapshot.objects.filter(account_id=ids[0]).count() == 1
        assert sink.publish_ms and sink.persist_ms  # the child's timings came back with the drain

        sink._work.kill_child()  # as a crash: SIGKILL
        asyncio.run(sink.account_changed(ids[1], book, []))
        assert sink.drain(60)
        assert sink._work.restarts == 1
        assert live.account_get(ids[1])["account_id"] == ids[1]
        assert AccountSnapshot.objects.filter(account_id=ids[1]).count() == 1
    finally:
        sink._work.close()
    assert not sink._work._process.is_alive()  # closing ends the child once its batches are done
