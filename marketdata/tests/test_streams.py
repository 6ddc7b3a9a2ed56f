"""The stream engine against the simulator: supervision, re-sync, staleness, bad input."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

from marketdata.exchange import BinanceFutures
from marketdata.simulator import FaultSpec
from marketdata.streams import AccountSpec, StreamEngine
from marketdata.tests.conftest import HEDGE_KEY, HEDGE_SECRET, KEY, SECRET


class RecordingSink:
    """Stands in for the database sink: records what the engine reports."""

    def __init__(self):
        self.accounts: dict[int, object] = {}
        self.marks: dict[str, tuple] = {}
        self.feed_events: list[tuple[str, bool, bool]] = []
        self.exchange_events: list[dict] = []
        self.drifts: list[tuple[int, list]] = []
        self.resyncs: list[int] = []

    async def account_changed(self, account_id, book, open_orders):
        self.accounts[account_id] = (book.account(account_id), book.positions(account_id), open_orders)

    async def marks_changed(self, marks):
        self.marks.update(marks)

    async def feed_changed(self, status, *, became_stale, recovered):
        self.feed_events.append((status.name, became_stale, recovered))

    async def exchange_event(self, account_id, event):
        self.exchange_events.append(event)

    async def drift_found(self, account_id, differences):
        self.drifts.append((account_id, differences))

    async def resync_requests(self):
        taken, self.resyncs = self.resyncs, []
        return taken


def engine_for(sim, sink, **kwargs) -> StreamEngine:
    accounts = [AccountSpec(1, "one-way", KEY, SECRET), AccountSpec(2, "hedge", HEDGE_KEY, HEDGE_SECRET)]
    return StreamEngine(
        accounts=accounts,
        rest_url=sim.base_url,
        ws_url=sim.ws_url,
        sink=sink,
        stale_after_s=kwargs.pop("stale_after_s", 1.5),
        flush_interval_s=0.2,
        **kwargs,
    )


async def wait_until(condition, timeout_s=10.0, step_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step_s)
    return False


def with_engine(sim, scenario, sink=None, **kwargs):
    async def go():
        nonlocal sink
        sink = sink or RecordingSink()
        engine = engine_for(sim, sink, **kwargs)
        await engine.start()
        try:
            assert await wait_until(lambda: engine.market.messages >= 2), "no market data arrived"
            return await scenario(engine, sink)
        finally:
            await engine.stop()

    return asyncio.run(go())


def set_mark(sim, symbol, price):
    sim.call(lambda s: s.set_marks({symbol: D(price)}))


def test_marks_and_positions_flow_into_the_book(sim):
    async def scenario(engine, sink):
        set_mark(sim, "BTCUSDT", "40000")
        assert await wait_until(lambda: engine.book.mark("BTCUSDT").price == D("40000"))
        risk = engine.book.account(1)
        assert risk.complete and risk.unrealized_pnl == D("-1500.00000000")
        hedge = {p.side: p.qty for p in engine.book.positions(2)}
        assert hedge == {"LONG": D("0.3"), "SHORT": D("0.1")}
        assert await wait_until(lambda: 1 in sink.accounts and "BTCUSDT" in sink.marks)

    with_engine(sim, scenario)


def test_an_order_on_the_exchange_reaches_the_book_through_the_user_stream(sim):
    async def scenario(engine, sink):
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            await ex.place_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("0.2"))
        assert await wait_until(lambda: [p.qty for p in engine.book.positions(1)] == [D("0.7")])
        assert any(e["e"] == "ORDER_TRADE_UPDATE" for e in sink.exchange_events)

    with_engine(sim, scenario)


def test_a_forced_drop_with_1001_is_recovered_with_a_rest_resync(sim):
    async def scenario(engine, sink):
        reconnects = engine.market.reconnects
        sim.call(lambda s: s.apply_fault(FaultSpec("drop")))
        assert await wait_until(lambda: engine.market.reconnects > reconnects and engine.market.connected)
        # the gap is filled over REST: a mark set while disconnected is in the book after the reconnect
        set_mark(sim, "BTCUSDT", "41234")
        assert await wait_until(lambda: engine.book.mark("BTCUSDT").price == D("41234"))
        assert await wait_until(lambda: all(f.connected for f in engine.user_feeds.values()))

    with_engine(sim, scenario)


def test_a_silent_feed_goes_stale_then_recovers(sim):
    async def scenario(engine, sink):
        sim.call(lambda s: s.apply_fault(FaultSpec("silent", seconds=3)))
        assert await wait_until(lambda: ("market", True, False) in sink.feed_events, timeout_s=6)
        assert engine.is_stale()
        assert await wait_until(lambda: not engine.is_stale(), timeout_s=15)
        assert sink.feed_events[-1][0] == "market"
        assert ("market", False, True) in sink.feed_events[sink.feed_events.index(("market", True, False)) :]
        assert engine.market.reconnects >= 1

    with_engine(sim, scenario, stale_after_s=1.0)


def test_an_expired_listen_key_is_replaced(sim):
    async def scenario(engine, sink):
        before = engine.user_feeds[1].reconnects
        sim.call(lambda s: s.apply_fault(FaultSpec("expire_listen_keys")))
        assert await wait_until(lambda: engine.user_feeds[1].reconnects > before and engine.user_feeds[1].connected)
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            await ex.place_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.1"))
        assert await wait_until(lambda: [p.qty for p in engine.book.positions(1)] == [D("0.4")])

    with_engine(sim, scenario)


@pytest.mark.parametrize("variant", ["json", "shape"])
def test_malformed_frames_are_counted_and_skipped(sim, variant):
    async def scenario(engine, sink):
        sim.call(lambda s: s.apply_fault(FaultSpec("malformed", count=3, variant=variant)))
        assert await wait_until(lambda: engine.market.malformed >= 3)
        seen = engine.market.messages
        set_mark(sim, "BTCUSDT", "42000")
        assert await wait_until(
            lambda: engine.market.messages > seen and engine.book.mark("BTCUSDT").price == D("42000")
        )

    with_engine(sim, scenario)


def test_drift_between_the_book_and_the_exchange_is_found_and_resynced(sim):
    async def scenario(engine, sink):
        from positions.book import BookPosition

        engine.book.upsert_position(
            1, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("9"), entry_price=D("1"), leverage=20)
        )
        sink.resyncs.append(1)  # what sync_positions_task asks for when REST disagrees
        assert await wait_until(lambda: sink.drifts)
        assert [p.qty for p in engine.book.positions(1)] == [D("0.5")]
        assert D(sink.drifts[0][1][0]["exchange_qty"]) == D("0.5")

    with_engine(sim, scenario)
