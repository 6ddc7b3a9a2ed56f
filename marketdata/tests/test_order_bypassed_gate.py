"""ORDER_BYPASSED_GATE end to end, as the stream process runs it (simulator -> stream engine ->
DjangoSink): an order placed straight on the exchange with the account's key raises the alert
within 2 s; an order the desk sent (its client id approved, as the gate does before sending) does
not; and an order resting before the desk started is found by the REST reconciliation."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest
from django.core.cache import cache

from accounts import services as account_services
from accounts.models import TradingState
from alerts.models import Alert, Level
from marketdata.exchange import BinanceFutures
from marketdata.models import Symbol
from marketdata.simulator import SimulatorThread, build_config
from marketdata.sink import DjangoSink
from marketdata.streams import AccountSpec, StreamEngine
from marketdata.tests.test_liquidation_flow import until  # polls the database off the loop
from rules.approved_orders import approved_add
from rules.models import RiskProfile

ACCOUNTS = {
    "accounts": [
        {"api_key": f"bypass-key-{n}", "api_secret": f"bypass-secret-{n}", "wallet": {"USDT": "10000"}, "positions": []}
        for n in (1, 2)
    ]
}


def bypass_alerts(account) -> list[Alert]:
    return list(Alert.objects.filter(account=account, reason_code="ORDER_BYPASSED_GATE"))


@pytest.mark.django_db(transaction=True)
def test_an_order_around_the_gate_raises_order_bypassed_gate_within_two_seconds():
    cache.clear()
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
    RiskProfile.objects.create(name="desk", is_default=True, bypass_action="halted")
    one, two = (
        account_services.account_create(name=f"bypass-{n}", api_key=f"bypass-key-{n}", api_secret=f"bypass-secret-{n}")
        for n in (1, 2)
    )
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000"}, tick_interval_s=0.05)
    sink = DjangoSink()
    with SimulatorThread(config) as sim:

        def adapter(n: int) -> BinanceFutures:
            return BinanceFutures(
                api_key=f"bypass-key-{n}", api_secret=f"bypass-secret-{n}", rest_url=sim.base_url, ws_url=sim.ws_url
            )

        async def rest_before_start() -> None:
            async with adapter(2) as ex:  # resting before the desk watches: only REST can see it
                await ex.place_order(
                    symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=D("0.01"), price=D(30000)
                )

        asyncio.run(rest_before_start())
        engine = StreamEngine(
            accounts=[
                AccountSpec(a.id, a.name, f"bypass-key-{n}", f"bypass-secret-{n}") for n, a in ((1, one), (2, two))
            ],
            rest_url=sim.base_url,
            ws_url=sim.ws_url,
            sink=sink,
            stale_after_s=5,
            flush_interval_s=0.2,
        )

        async def scenario() -> float:
            await engine.start()
            try:
                await until(lambda: all(f.connected for f in engine.user_feeds.values()))
                await until(lambda: len(bypass_alerts(two)) == 1, timeout_s=5.0)  # the REST reconciliation
                async with adapter(1) as ex:
                    # The desk's own order: its id approved before it leaves, as rules.gate._send does.
                    approved_add(one.id, "rd-approved-1")
                    await ex.place_order(
                        symbol="BTCUSDT",
                        side="BUY",
                        type="LIMIT",
                        timeInForce="GTC",
                        quantity=D("0.01"),
                        price=D(30000),
                        newClientOrderId="rd-approved-1",
                    )
                    # Around the gate: straight on the exchange with the account's key.
                    placed = time.monotonic()
                    await ex.place_order(
                        symbol="BTCUSDT",
                        side="BUY",
                        type="LIMIT",
                        timeInForce="GTC",
                        quantity=D("0.02"),
                        price=D(31000),
                        newClientOrderId="manual-1",
                    )
                    await until(lambda: len(bypass_alerts(one)) == 1, timeout_s=2.0)
                    took = time.monotonic() - placed
                    await until(lambda: one.__class__.objects.get(pk=one.pk).trading_state == TradingState.HALTED)
                return took
            finally:
                await engine.stop()

        took = asyncio.run(scenario())
    sink.drain(10)
    assert took <= 2.0
    (alert,) = bypass_alerts(one)
    assert alert.level == Level.CRITICAL and alert.subject == "manual-1"
    assert alert.details["observed"]["order"]["c"] == "manual-1"
    assert alert.details["baseline"] == {"approved_by_gate": False}
    (rest,) = bypass_alerts(two)
    assert rest.details["observed"]["order"]["x"] == "REST"
