"""The stream engine's account events against the simulator: liquidations (with the book's row
before them), fills, closes and ``closed_positions``, funding, ACCOUNT_CONFIG_UPDATE into the book,
and the REST reconciliation (leverage, margin type, wallet; forceOrders for missed liquidations)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from decimal import Decimal as D

from marketdata.exchange import BinanceFutures
from marketdata.tests.conftest import KEY, SECRET
from marketdata.tests.test_streams import RecordingSink, engine_for, set_mark, wait_until, with_engine


class AccountEventsSink(RecordingSink):
    def __init__(self):
        super().__init__()
        self.told: list[tuple[str, int, tuple]] = []

    def of(self, name: str) -> list[tuple]:
        return [args for told, _, args in self.told if told == name]

    async def fill_seen(self, account_id, event):
        self.told.append(("fill_seen", account_id, (event,)))

    async def liquidation_seen(self, account_id, event, before):
        self.told.append(("liquidation_seen", account_id, (event, before)))

    async def funding_seen(self, account_id, event):
        self.told.append(("funding_seen", account_id, (event,)))

    async def position_closed(self, account_id, close):
        self.told.append(("position_closed", account_id, (close,)))

    async def config_changed(self, account_id, change):
        self.told.append(("config_changed", account_id, (change,)))


def run(sim, scenario):
    return with_engine(sim, scenario, sink=AccountEventsSink())


def exchange(sim) -> BinanceFutures:
    return BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url)


def control(sim, path: str, body: dict) -> dict:
    request = urllib.request.Request(sim.base_url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_a_liquidation_is_reported_with_the_books_last_row_and_the_position_is_closed(sim):
    async def scenario(engine, sink):
        set_mark(sim, "BTCUSDT", "25000")  # near: the book's liquidation price is ~23,000
        assert await wait_until(lambda: engine.book.mark("BTCUSDT").price == D("25000"))
        row = engine._plain_row(1, "BTCUSDT", "BOTH")
        set_mark(sim, "BTCUSDT", "20000")  # past it: the exchange liquidates the 0.5 BTC
        assert await wait_until(lambda: sink.of("liquidation_seen") and not engine.book.positions(1))
        [(event, before)] = sink.of("liquidation_seen")
        assert event["o"]["o"] == "LIQUIDATION" and event["o"]["c"].startswith("autoclose-")
        # The row as it was before the fill: the desk's last liquidation price and distance.
        assert D(before["qty"]) == D("0.5") and D(before["entry_price"]) == D(43000)
        assert before["liquidation_price"] == row["liquidation_price"] and before["liquidation_distance"]
        assert D(before["liquidation_price"]) > D("20000")
        assert engine.closed_positions[(1, "BTCUSDT:BOTH")] == event["o"]["T"]
        assert sink.of("position_closed") == []  # the liquidation's report records that close
        assert sink.of("fill_seen") == []  # ... and its fill

    run(sim, scenario)


def test_fills_are_reported_and_a_close_marks_the_position_until_it_reopens(sim):
    async def scenario(engine, sink):
        async with exchange(sim) as ex:
            await ex.place_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.5"))
            assert await wait_until(lambda: not engine.book.positions(1))
            assert (1, "BTCUSDT:BOTH") in engine.closed_positions
            [(close,)] = sink.of("position_closed")
            assert (close["symbol"], close["side"], close["reason"], close["qty"]) == (
                "BTCUSDT",
                "BOTH",
                "closed",
                D("0.5"),
            )
            assert close["entry_price"] == D(43000) and close["exit_price"] == D("43000.0")
            assert D(close["before"]["qty"]) == D("0.5")
            await ex.place_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("0.1"))
            assert await wait_until(lambda: engine.book.positions(1))
            assert (1, "BTCUSDT:BOTH") not in engine.closed_positions
        fills = [event["o"] for (event,) in sink.of("fill_seen")]
        assert [(f["S"], f["l"]) for f in fills] == [("SELL", "0.500"), ("BUY", "0.100")]

    run(sim, scenario)


def test_leverage_and_multi_assets_changes_reach_the_book_within_a_second(sim):
    async def scenario(engine, sink):
        assert [p.leverage for p in engine.book.positions(1)] == [20]
        async with exchange(sim) as ex:
            changed_at = time.monotonic()
            await ex.change_leverage(symbol="BTCUSDT", leverage=50)
            assert await wait_until(lambda: [p.leverage for p in engine.book.positions(1)] == [50], timeout_s=1.0)
            assert time.monotonic() - changed_at < 1.0
            await ex.change_multi_assets_mode(enabled=True)
            assert await wait_until(lambda: engine.multi_assets.get(1) is True, timeout_s=1.0)
        assert await wait_until(lambda: len(sink.of("config_changed")) == 2)
        leverage, multi = (change for (change,) in sink.of("config_changed"))
        assert {k: leverage[k] for k in ("what", "symbol", "old", "new")} == {
            "what": "leverage",
            "symbol": "BTCUSDT",
            "old": 20,
            "new": 50,
        }
        assert (multi["what"], multi["symbol"], multi["old"], multi["new"]) == ("multi_assets", "account", None, True)
        # What the sink is handed next carries the new leverage (the live state, the gate's input).
        assert await wait_until(lambda: sink.accounts[1][1][0].leverage == 50)

    run(sim, scenario)


def test_a_margin_type_change_and_funding_are_reported(sim):
    async def scenario(engine, sink):
        async with exchange(sim) as ex:
            await ex.change_margin_type(symbol="ETHUSDT", margin_type="isolated")
        control(sim, "/_sim/funding", {"api_key": KEY, "symbol": "BTCUSDT", "rate": "0.0001"})
        assert await wait_until(lambda: sink.of("config_changed") and sink.of("funding_seen"))
        [(change,)] = sink.of("config_changed")
        assert (change["what"], change["symbol"], change["new"]) == ("margin_type", "ETHUSDT", "isolated")
        [(event,)] = sink.of("funding_seen")
        assert event["a"]["m"] == "FUNDING_FEE" and event["a"]["B"][0]["bc"] == "-2.15000000"
        assert [p.qty for p in engine.book.positions(1)] == [D("0.5")]  # funding closes nothing

    run(sim, scenario)


def test_reconciliation_compares_leverage_margin_type_and_wallet(sim):
    async def scenario(engine, sink):
        from positions.book import BookPosition

        engine.book.upsert_position(
            1,
            BookPosition(
                symbol="BTCUSDT", side="BOTH", qty=D("0.5"), entry_price=D(43000), leverage=5, margin_type="isolated"
            ),
        )
        engine._wallets[1] = D("9000")
        differences = await engine.sync_account(1)
        kinds = {d["kind"]: d for d in differences}
        assert set(kinds) == {"leverage", "margin_type", "wallet"}
        assert (kinds["leverage"]["desk_leverage"], kinds["leverage"]["exchange_leverage"]) == (5, 20)
        assert kinds["margin_type"]["exchange_margin_type"] == "cross"
        assert D(kinds["wallet"]["exchange_wallet"]) == D(10000)
        assert await engine.sync_account(1) == []  # re-synced to the exchange

    run(sim, scenario)


def test_a_liquidation_the_stream_missed_is_found_in_force_orders_once(sim):
    async def scenario(engine, sink):
        original = engine._on_user_event

        async def deaf(account_id, feed, event):  # the stream loses the liquidation's events
            return None

        set_mark(sim, "BTCUSDT", "25000")
        assert await wait_until(lambda: engine.book.mark("BTCUSDT").price == D("25000"))
        row = engine._plain_row(1, "BTCUSDT", "BOTH")
        engine._on_user_event = deaf
        heard = engine.user_feeds[1].messages
        set_mark(sim, "BTCUSDT", "20000")
        # The liquidation's fill and its ACCOUNT_UPDATE have reached the socket and gone unheard.
        assert await wait_until(lambda: engine.user_feeds[1].messages >= heard + 2)
        state = await asyncio.to_thread(sim.call, lambda s: s.state())
        assert next(a for a in state["accounts"] if a["api_key"] == KEY)["liquidations"] == 1
        engine._on_user_event = original
        assert engine.book.positions(1)  # the desk still believes in it
        differences = await engine.sync_account(1)
        assert [(d["kind"], d["exchange_qty"]) for d in differences if d["kind"] == "qty"] == [("qty", "0")]
        [(event, before)] = sink.of("liquidation_seen")
        assert event["source"] == "forceOrders" and event["o"]["c"].startswith("autoclose-")
        assert before["liquidation_price"] == row["liquidation_price"]
        # 0.5 BTC from 43,000 to the fill price, as the exchange realizes it.
        assert D(event["o"]["rp"]) == (D(event["o"]["ap"]) - D(43000)) * D("0.5")
        assert sink.of("position_closed") == [] and (1, "BTCUSDT:BOTH") in engine.closed_positions
        await engine.sync_account(1)
        engine.book.upsert_position(1, _position(qty="0.5"))  # even a desk that drifts again...
        await engine.sync_account(1)
        assert len(sink.of("liquidation_seen")) == 1  # ... is not told about the same order twice

    run(sim, scenario)


def _position(qty: str):
    from positions.book import BookPosition

    return BookPosition(symbol="BTCUSDT", side="BOTH", qty=D(qty), entry_price=D(43000), leverage=20)


def test_a_liquidation_while_the_stream_process_was_down_is_found_at_start(sim):
    """The rows the last process left say 0.5 BTC; the exchange liquidated it meanwhile. The first
    sync asks forceOrders from the rows' time and reports the liquidation, with the row as
    ``before``, and nothing else about that position."""
    rows_ms = int(time.time() * 1000) - 1000
    row = {"symbol": "BTCUSDT", "side": "BOTH", "qty": "0.5", "entry_price": "43000", "liquidation_price": "23000"}
    set_mark(sim, "BTCUSDT", "20000")  # nobody watching: the exchange liquidates the 0.5 BTC
    state = sim.call(lambda s: s.state())
    assert next(a for a in state["accounts"] if a["api_key"] == KEY)["liquidations"] == 1
    sink = AccountEventsSink()

    async def go():
        engine = engine_for(sim, sink)
        engine.held_at_start = {1: ({("BTCUSDT", "BOTH"): row}, rows_ms)}
        await engine.start()
        try:
            assert not engine.book.positions(1)
            [(event, before)] = sink.of("liquidation_seen")
            assert event["source"] == "forceOrders" and before == row
            assert sink.of("position_closed") == []  # the liquidation's report records that close
            assert (1, "BTCUSDT:BOTH") in engine.closed_positions
            assert engine.held_at_start == {}  # used once, on the first sync
        finally:
            await engine.stop()

    asyncio.run(go())


def test_a_position_closed_while_the_stream_process_was_down_is_reported_closed(sim):
    rows_ms = int(time.time() * 1000) - 1000
    row = {"symbol": "ETHUSDT", "side": "BOTH", "qty": "2", "entry_price": "3000", "liquidation_price": None}
    sink = AccountEventsSink()

    async def go():
        engine = engine_for(sim, sink)
        engine.held_at_start = {1: ({("ETHUSDT", "BOTH"): row}, rows_ms)}
        await engine.start()
        try:
            [(close,)] = sink.of("position_closed")
            assert (close["symbol"], close["side"], close["reason"]) == ("ETHUSDT", "BOTH", "closed")
            assert sink.of("liquidation_seen") == []  # forceOrders had nothing on ETHUSDT
        finally:
            await engine.stop()

    asyncio.run(go())
