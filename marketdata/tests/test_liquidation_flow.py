"""Simulator → stream engine → DjangoSink → the database, as the stream process runs them (the style
of rules/tests/test_crash_replay.py, without the evaluator): a fill in the ledger, a leverage raised
on the exchange in the book within a second, a liquidation seen on the stream as a LIQUIDATED
emergency carrying the desk's last liquidation price, its Position row gone within a second, and a
liquidation the stream missed found once by the forceOrders reconciliation."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest
from django.db import OperationalError

from accounts import services as account_services
from alerts.models import Alert, Level
from marketdata.exchange import BinanceFutures
from marketdata.models import Symbol
from marketdata.simulator import SimulatorThread, build_config
from marketdata.sink import DjangoSink
from marketdata.streams import AccountSpec, StreamEngine
from positions.models import ClosedPosition, Fill, Position

ACCOUNTS = {
    "accounts": [
        {
            "api_key": f"flow-key-{n}",
            "api_secret": f"flow-secret-{n}",
            "wallet": {"USDT": "5000"},
            # Cross liquidation price 33,132.53 (the demo's btc-20x).
            "positions": [{"symbol": "BTCUSDT", "qty": "0.5", "entry_price": "43000", "leverage": 20}],
        }
        for n in (1, 2)
    ]
}


async def until(check, timeout_s: float = 10.0) -> float:
    """Seconds until ``check()`` (run on a thread: it reads the database) is true."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if await asyncio.to_thread(check):
                return time.monotonic() - started
        except OperationalError:  # the test database's shared cache: a table locked by a writer thread
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


def liquidated(account) -> list[Alert]:
    return list(Alert.objects.filter(account=account, reason_code="LIQUIDATED"))


@pytest.mark.django_db(transaction=True)
def test_liquidations_fills_and_leverage_reach_the_database():
    Symbol.objects.create(
        name="BTCUSDT",
        base_asset="BTC",
        tick_size=D("0.1"),
        step_size=D("0.001"),
        min_qty=D("0.001"),
        max_qty=D(1000),
        min_notional=D(5),
        price_precision=1,
        quantity_precision=3,
    )
    one, two = (
        account_services.account_create(name=f"flow-{n}", api_key=f"flow-key-{n}", api_secret=f"flow-secret-{n}")
        for n in (1, 2)
    )
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000"}, tick_interval_s=0.05)
    sink = DjangoSink()
    with SimulatorThread(config) as sim:
        engine = StreamEngine(
            accounts=[AccountSpec(a.id, a.name, f"flow-key-{n}", f"flow-secret-{n}") for n, a in ((1, one), (2, two))],
            rest_url=sim.base_url,
            ws_url=sim.ws_url,
            sink=sink,
            stale_after_s=5,
            flush_interval_s=0.2,
        )

        def set_mark(price: str) -> None:
            sim.call(lambda s: s.set_marks({"BTCUSDT": D(price)}))

        async def scenario() -> tuple[dict, dict]:
            await engine.start()
            try:
                await until(lambda: all(f.connected for f in engine.user_feeds.values()))
                async with BinanceFutures(
                    api_key="flow-key-1", api_secret="flow-secret-1", rest_url=sim.base_url, ws_url=sim.ws_url
                ) as ex:
                    await ex.place_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.1"))
                    await until(lambda: Fill.objects.filter(account=one, kind="trade").exists())
                    await ex.change_leverage(symbol="BTCUSDT", leverage=25)
                    # Within a second on the book (the live state and the gate), the row and the alert.
                    await until(lambda: [p.leverage for p in engine.book.positions(one.id)] == [25], timeout_s=1.0)
                    await until(
                        lambda: list(Position.objects.filter(account=one).values_list("leverage", flat=True)) == [25],
                        timeout_s=1.0,
                    )
                    await until(
                        lambda: Alert.objects.filter(account=one, reason_code="EXCHANGE_CONFIG_CHANGED").exists()
                    )

                # Account two's stream misses its liquidation (as in a reconnect's gap).
                original = engine._on_user_event

                async def deaf_to_two(account_id, feed, event):
                    if account_id != two.id:
                        await original(account_id, feed, event)

                engine._on_user_event = deaf_to_two
                heard = engine.user_feeds[two.id].messages
                set_mark("34000")  # near: the book's rows carry a liquidation price close by
                await until(lambda: engine.book.mark("BTCUSDT").price == D("34000"))
                last_one = engine._plain_row(one.id, "BTCUSDT", "BOTH")
                last_two = engine._plain_row(two.id, "BTCUSDT", "BOTH")
                liquidated_at = time.monotonic()
                set_mark("30000")  # past both: the exchange liquidates both accounts
                await until(lambda: liquidated(one), timeout_s=2.0)
                assert time.monotonic() - liquidated_at < 2.0
                await until(lambda: not Position.objects.filter(account=one).exists(), timeout_s=1.0)
                await until(lambda: engine.user_feeds[two.id].messages >= heard + 2)
                engine._on_user_event = original
                await until(lambda: not liquidated(two) and Position.objects.filter(account=two).exists())
                await engine.sync_account(two.id)  # the reconciliation asks forceOrders
                await until(lambda: liquidated(two))
                await engine.sync_account(two.id)
            finally:
                await engine.stop()
            return last_one, last_two

        last_one, last_two = asyncio.run(scenario())
    assert sink.drain()
    for account, last in ((one, last_one), (two, last_two)):
        [alert] = liquidated(account)
        assert alert.level == Level.EMERGENCY and alert.subject == "BTCUSDT:BOTH"
        assert D(alert.details["last_liquidation_price"]) == D(last["liquidation_price"])
        # The distance is the book's at the fill: the mark frame may reach it before the user event.
        assert alert.details["last_distance"] is not None
        [closed] = ClosedPosition.objects.filter(account=account)
        assert closed.reason == "liquidated" and closed.realized_pnl < 0
        assert D(closed.details["liquidation_price"]) == D(last["liquidation_price"])
    assert Fill.objects.filter(account=one, kind="liquidation").count() == 1
    assert Fill.objects.filter(account=two, kind="liquidation").count() == 1
