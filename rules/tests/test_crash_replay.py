"""The real 2021-05-19 crash through the simulator, the stream engine, the rules and the alert rows.

A 20x long BTC account (0.5 BTC @ 43,000 on a 5,000 USDT wallet; the exchange liquidates it at
33,132.53, reached about 12:55 UTC) must get a liquidation-distance warning, then a critical
alert escalated on the same row, and the profile's proposed action, all before the exchange
liquidates it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

from accounts import services as account_services
from alerts.models import Alert, Level
from marketdata.simulator import SimulatorThread, build_config
from marketdata.sink import DjangoSink
from marketdata.streams import AccountSpec, StreamEngine
from positions.models import OrderLog
from rules.evaluator import attach
from rules.models import RiskAction, RiskProfile

DATA = Path(__file__).resolve().parents[2] / "marketdata/data"
ACCOUNT = {
    "accounts": [
        {
            "api_key": "demo-key-1",
            "api_secret": "demo-secret-1",
            "position_mode": "one-way",
            "wallet": {"USDT": "5000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "BOTH",
                    "qty": "0.5",
                    "entry_price": "43000",
                    "leverage": 20,
                    "margin_type": "cross",
                }
            ],
        }
    ]
}


async def run_until(engine: StreamEngine, done, timeout_s: float) -> None:
    await engine.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not await done():
            await asyncio.sleep(0.2)
    finally:
        await engine.stop()


@pytest.mark.django_db(transaction=True)
def test_the_crash_raises_warning_then_critical_then_the_action_before_liquidation(settings):
    settings.STREAM_STALE_AFTER_S = 5
    account = account_services.account_create(name="btc-20x", api_key="demo-key-1", api_secret="demo-secret-1")
    RiskProfile.objects.create(
        name="crash",
        is_default=True,
        liq_distance_warning=D("0.15"),
        liq_distance_critical=D("0.05"),
        breach_after_n=2,
        hysteresis=D("0.02"),
        auto_action="reduce_positions",
        auto_action_mode="propose",
    )
    config = build_config(
        accounts=ACCOUNT,
        replay=[str(DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv")],
        speed=180.0,
        tick_interval_s=0.05,
        start_at="12:20",
        loop_replay=False,
    )
    sink = DjangoSink()
    with SimulatorThread(config) as sim:
        engine = StreamEngine(
            accounts=[AccountSpec(account.id, account.name, "demo-key-1", "demo-secret-1")],
            rest_url=sim.base_url,
            ws_url=sim.ws_url,
            sink=sink,
            stale_after_s=5,
            flush_interval_s=0.2,
        )
        evaluator = attach(engine)

        async def liquidated() -> bool:
            return await asyncio.to_thread(
                lambda: OrderLog.objects.filter(account=account, order_type="LIQUIDATION").exists()
            )

        asyncio.run(run_until(engine, liquidated, timeout_s=60))
    # The alert writer and the sink's persistence have threads of their own: what they hold is
    # written before the test looks (and before its database goes away).
    assert evaluator.drain() and sink.drain()

    liquidation = OrderLog.objects.get(account=account, order_type="LIQUIDATION")
    [alert] = Alert.objects.filter(account=account, rule="liq_distance")  # escalated, never duplicated
    assert alert.subject == "BTCUSDT:BOTH" and alert.reason_code == "LIQUIDATION_NEAR"
    assert alert.level == Level.CRITICAL and alert.escalated_at is not None
    assert alert.opened_at < alert.escalated_at < liquidation.created_at
    assert alert.details["lower_is_worse"] is True and D(alert.details["value"]) <= D("0.05")
    action = RiskAction.objects.get(account=account)  # once, on the critical latch
    assert action.trigger == "liq_distance"
    assert action.alert_id == alert.id and action.created_at < liquidation.created_at
    # Proposed before the liquidation; the liquidation left its plan about a position that is
    # gone, so it expired (decided by the desk) and can no longer be executed.
    assert action.status == RiskAction.Status.EXPIRED and action.decided_by is None
    assert action.decided_at >= action.created_at and action.decision_reason
    assert alert.resolution == "liquidated"  # not "cleared": the exchange closed the position
    [cut] = action.plan["orders"]
    assert cut["symbol"] == "BTCUSDT" and cut["side"] == "SELL" and D("0") < D(cut["quantity"]) <= D("0.5")
