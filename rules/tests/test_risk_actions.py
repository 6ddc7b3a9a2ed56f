"""Automatic actions carried out on the exchange (the simulator, through the real client)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from accounts import services as account_services
from marketdata.exchange import BinanceFutures
from marketdata.simulator import SimulatorThread, build_config
from marketdata.tests.conftest import ACCOUNTS, KEY, SECRET
from rules import services
from rules.models import RiskAction

PLAN = {
    "kind": "reduce_positions",
    "trigger": "margin_ratio",
    "trading_state": None,
    "cancel_orders": True,
    "orders": [
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "position_side": "BOTH",
            "quantity": "0.2",
            "type": "MARKET",
            "reduce_only": True,
        }
    ],
    "figures": {},
}


@pytest.fixture
def sim():
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000"}, tick_interval_s=0.2)
    with SimulatorThread(config) as thread:
        yield thread


@pytest.fixture
def account(sim, settings, db):
    settings.BINANCE_FUTURES_REST_URL = sim.base_url
    settings.BINANCE_FUTURES_WS_URL = sim.ws_url
    return account_services.account_create(name="acct-1", api_key=KEY, api_secret=SECRET)


def exchange_state(sim):
    async def read():
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            return await ex.positions(), await ex.open_orders()

    return asyncio.run(read())


def test_a_proposed_plan_does_nothing_until_a_risk_manager_approves_it(sim, account, risk_manager, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the task runs inline; the service is what is under test
    action = services.action_record(account_id=account.id, alert_id=None, plan=PLAN, act=False)
    assert action.status == RiskAction.Status.PROPOSED
    assert exchange_state(sim)[0][0].qty == D("0.5")
    services.action_dismiss(action=action, by=risk_manager, reason="the desk cut it by hand")
    dismissed = RiskAction.objects.get(pk=action.pk)
    assert dismissed.status == RiskAction.Status.DISMISSED
    assert dismissed.decided_by == risk_manager and dismissed.decided_at is not None
    assert dismissed.decision_reason == "the desk cut it by hand"


def test_an_approved_plan_cancels_orders_cuts_positions_and_sets_reducing(sim, account, risk_manager):
    async def rest_an_order():
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            await ex.place_order(
                symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D("0.01"), price=D("40000"), timeInForce="GTC"
            )
            # A stop that would open exposure: it lives in the algo service and must be cancelled too.
            await ex.place_order(
                symbol="BTCUSDT", side="BUY", type="STOP_MARKET", quantity=D("0.01"), triggerPrice=D("50000")
            )

    asyncio.run(rest_an_order())
    action = RiskAction.objects.create(
        account=account, trigger="margin_ratio", kind="reduce_positions", plan=PLAN, status=RiskAction.Status.APPROVED
    )
    done = services.action_execute(action_id=action.id)
    assert done.status == RiskAction.Status.EXECUTED, done.result
    positions, open_orders = exchange_state(sim)
    assert positions[0].qty == D("0.3") and open_orders == []
    assert sim.call(lambda s: s.state())["accounts"][0]["open_algo_orders"] == 0
    account.refresh_from_db()
    assert account.trading_state == "REDUCING"
    assert services.action_execute(action_id=action.id).status == RiskAction.Status.EXECUTED  # runs once
    assert exchange_state(sim)[0][0].qty == D("0.3")
