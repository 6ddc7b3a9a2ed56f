"""Recovery after a fault (issue 15): a user stream is back as soon as its socket is, but the
account's state is live only once its REST re-sync has landed; re-syncs wait for the socket opens,
go in turn (accounts holding something first) and spend IP weight only up to the bulk share, so
listen keys, the marks' gap fill and the kill switch's reads always find weight left."""

from __future__ import annotations

import asyncio
import time

import pytest

from marketdata import exchange, streams
from marketdata.simulator import FaultSpec
from marketdata.tests.test_streams import wait_until, with_engine


def test_turns_serve_priority_first_then_arrival_order():
    async def go():
        turns = streams._Turns(1)
        served: list[str] = []
        release = asyncio.Event()

        async def holder():
            async with turns.turn(1):
                await release.wait()

        async def waiter(name: str, priority: int):
            async with turns.turn(priority):
                served.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(waiter(n, p)) for n, p in (("empty-a", 1), ("holds-a", 0), ("empty-b", 1))]
        cancelled = asyncio.create_task(waiter("cancelled", 0))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        tasks.append(asyncio.create_task(waiter("holds-b", 0)))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, *tasks)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        return served

    assert asyncio.run(go()) == ["holds-a", "holds-b", "empty-a", "empty-b"]


def test_bulk_reads_wait_at_their_share_of_the_weight_and_ordinary_reads_do_not(monkeypatch):
    waits: list[float] = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    monkeypatch.setattr(exchange.asyncio, "sleep", fake_sleep)

    async def go():
        adapter = exchange.BinanceFutures(api_key="k", api_secret="s", rest_url="http://127.0.0.1:9", ws_url="ws://x")
        try:
            bulk_cap = exchange.WEIGHT_LIMIT_1M * exchange.WEIGHT_SLOWDOWN_AT * exchange.BULK_WEIGHT_FRACTION
            adapter.rate.used_weight, adapter.rate.weight_minute = int(bulk_cap) + 1, int(time.time() // 60)
            await adapter._respect_limits(is_order=False)
            assert waits == []  # an ordinary read (a listen key, the marks, the kill switch's) goes on
            with exchange.bulk_weight():
                await adapter._respect_limits(is_order=False)
            assert len(waits) == 1 and 0 < waits[0] <= 60  # a re-sync waits for the next minute
            await adapter._respect_limits(is_order=False)  # the class ends with the block
            assert len(waits) == 1
        finally:
            adapter.rate.used_weight = 0
            await adapter.close()

    asyncio.run(go())


def test_a_reconnected_user_stream_is_connected_at_once_and_stale_until_its_resync_lands(sim):
    """The socket is back before the re-sync: the feed says connected and stale (resyncing), the
    account's events that arrive meanwhile wait and are applied after the exchange's state."""

    async def scenario(engine, sink):
        feed = engine.user_feeds[1]
        assert await wait_until(lambda: feed.connected and not feed.stale, timeout_s=10)
        gate = asyncio.Event()
        real_sync = engine.sync_account
        held_seen: list[int] = []

        async def slow_sync(account_id):
            if account_id == 1:
                await gate.wait()
                held_seen.append(len(engine._held.get(1, [])))
            return await real_sync(account_id)

        engine.sync_account = slow_sync
        reconnects = feed.reconnects
        sim.call(lambda s: s.apply_fault(FaultSpec("drop")))
        assert await wait_until(lambda: feed.reconnects > reconnects and feed.connected, timeout_s=10)
        assert feed.stale and feed.resyncing and feed.down_since_ms is not None
        status = engine.process_status()
        assert status["user_live"] < status["user_connected"]
        messages = feed.messages
        # An account event while the re-sync is pending waits, and is applied after the state.
        params = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": "20000",
            "newClientOrderId": "held-1",
        }
        sim.call(lambda s: s.exchange.place_order(s.exchange.accounts["test-key-1"], params))
        assert await wait_until(lambda: feed.messages > messages, timeout_s=5)
        gate.set()
        assert await wait_until(lambda: not feed.stale, timeout_s=10)
        assert held_seen and held_seen[0] >= 1, held_seen
        assert not feed.resyncing and feed.down_since_ms is None and 1 not in engine._held
        assert ("user:1", False, True) in sink.feed_events
        assert "held-1" in str(engine.open_orders.get(1))

    with_engine(sim, scenario)


def test_the_user_feed_judgement_gives_a_blip_its_grace_and_no_more(settings):
    from marketdata import live

    settings.STREAM_STALE_AFTER_S = 5
    now = 1_000_000
    assert live.user_feed_is_live({"connected": True, "stale": False}, at_ms=now)
    assert not live.user_feed_is_live(None, at_ms=now)  # the TTL ran out: the process is gone
    assert not live.user_feed_is_live({"connected": False, "stale": True}, at_ms=now)  # never live
    down = {"connected": True, "stale": True, "resyncing": True, "down_since_ms": now - 5_000}
    assert live.user_feed_is_live(down, at_ms=now)
    assert not live.user_feed_is_live({**down, "down_since_ms": now - 5_001}, at_ms=now)
