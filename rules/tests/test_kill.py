"""POST /api/v1/accounts/{id}/kill against the simulator: HALTED, no open orders, and with
flatten no positions, through the real python-binance path."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from asgiref.sync import async_to_sync

from accounts.models import TradingState
from marketdata.exchange import ExchangePosition
from marketdata.services import exchange_for
from marketdata.simulator import SimulatorThread
from positions.models import OrderLog, OrderSource
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, order_body, publish, sim_account, sim_config

gate_env = fx.gate_env  # pytest finds fixtures by name in the module


def url(account_id: int) -> str:
    return f"/api/v1/accounts/{account_id}/kill"


@pytest.fixture
def desk(gate_env, settings, account_a, trader_a, api_for):
    """account_a on the simulator: long 0.5 BTC, short 4 ETH, three resting orders and a stop
    (a conditional order, which Binance keeps in its algo service, apart from /openOrders)."""
    positions = [
        {"symbol": "BTCUSDT", "side": "BOTH", "qty": "0.5", "entry_price": "49000", "leverage": 20},
        {"symbol": "ETHUSDT", "side": "BOTH", "qty": "-4", "entry_price": "2600", "leverage": 10},
    ]
    thread = SimulatorThread(sim_config(positions_a=positions, wallet_a="20000"))
    settings.BINANCE_FUTURES_REST_URL = thread.start()
    settings.BINANCE_FUTURES_WS_URL = thread.ws_url
    publish(account_a.id, wallet="20000", positions=[long_btc()])
    api = api_for(trader_a)
    for body in (
        order_body(account_a.id, price="48000.0"),
        order_body(account_a.id, price="47000.0"),
        order_body(account_a.id, symbol="ETHUSDT", side="SELL", price="2700.00", quantity="1"),
    ):
        assert api.post("/api/v1/orders", body, format="json").status_code == 201
    assert sim_account(thread)["open_orders"] == 3

    async def place_stop() -> None:
        async with exchange_for(account_a) as exchange:
            await exchange.place_order(
                symbol="BTCUSDT", side="BUY", type="STOP_MARKET", quantity=D("0.1"), triggerPrice=D("90000")
            )

    async_to_sync(place_stop)()
    assert sim_account(thread)["open_algo_orders"] == 1
    yield thread
    thread.stop()


def test_kill_halts_and_leaves_no_open_orders(
    api_for, risk_manager, account_a, desk, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(risk_manager).post(url(account_a.id), {"reason": "drill"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["halted"] is True and body["remaining"]["open_orders"] == 0
    assert body["remaining"]["open_conditional_orders"] == 0
    assert {(row["symbol"], row["open_orders"], row["open_conditional_orders"]) for row in body["plan"]["cancel"]} == {
        ("BTCUSDT", 2, 1),
        ("ETHUSDT", 1, 0),
    }
    assert len(body["remaining"]["positions"]) == 2  # not flattened
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.HALTED and account_a.trading_state_reason == "drill"
    assert sim_account(desk)["open_orders"] == 0 and sim_account(desk)["open_algo_orders"] == 0


def test_kill_with_flatten_leaves_no_positions(api_for, risk_manager, account_a, desk):
    response = api_for(risk_manager).post(url(account_a.id), {"flatten": True}, format="json")
    body = response.json()
    assert response.status_code == 200
    assert body["remaining"] == {"open_orders": 0, "open_conditional_orders": 0, "positions": []}
    closes = {(o["symbol"], o["side"], o["quantity"], o["outcome"]) for o in body["orders"]}
    assert closes == {("BTCUSDT", "SELL", "0.5", "submitted"), ("ETHUSDT", "BUY", "4", "submitted")}
    assert all(o["reduce_only"] for o in body["orders"])
    state = sim_account(desk)
    assert state["positions"] == [] and state["open_orders"] == 0 and state["open_algo_orders"] == 0
    gate.order_log_flush()
    rows = OrderLog.objects.filter(account=account_a, source=OrderSource.KILL_SWITCH)
    assert rows.filter(order_type="MARKET", reduce_only=True).count() == 2
    assert rows.filter(order_type="CANCEL_ALL").count() == 2


def test_a_dry_run_returns_the_plan_and_changes_nothing(api_for, risk_manager, account_a, desk):
    response = api_for(risk_manager).post(url(account_a.id), {"flatten": True, "dry_run": True}, format="json")
    body = response.json()
    assert response.status_code == 200 and body["dry_run"] is True and body["halted"] is False
    assert len(body["plan"]["close"]) == 2 and "orders" not in body
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.ACTIVE
    state = sim_account(desk)
    assert state["open_orders"] == 3 and state["open_algo_orders"] == 1 and len(state["positions"]) == 2


def test_kill_closes_hedge_legs_by_position_side(api_for, risk_manager, account_a, gate_env, settings):
    legs = [
        {"symbol": "BTCUSDT", "side": "LONG", "qty": "0.3", "entry_price": "49000", "leverage": 10},
        {"symbol": "BTCUSDT", "side": "SHORT", "qty": "0.1", "entry_price": "51000", "leverage": 10},
    ]
    thread = SimulatorThread(sim_config(positions_a=legs, hedge_a=True, wallet_a="20000"))
    settings.BINANCE_FUTURES_REST_URL = thread.start()
    try:
        body = api_for(risk_manager).post(url(account_a.id), {"flatten": True}, format="json").json()
        sides = {(o["position_side"], o["side"], o["reduce_only"]) for o in body["orders"]}
        assert sides == {("LONG", "SELL", False), ("SHORT", "BUY", False)}
        assert body["remaining"]["positions"] == [] and sim_account(thread)["positions"] == []
    finally:
        thread.stop()


def test_an_unreachable_exchange_still_leaves_the_account_halted(api_for, risk_manager, account_a, gate_env, settings):
    settings.BINANCE_FUTURES_REST_URL = "http://127.0.0.1:9"  # discard port: connection refused
    response = api_for(risk_manager).post(url(account_a.id), {"flatten": True}, format="json")
    assert response.status_code == 502
    assert response.json()["halted"] is True and response.json()["error"]["kind"] == "ExchangeUnavailable"
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.HALTED


def test_close_orders_split_at_the_market_lot_maximum(gate_env):
    symbols = gate.catalog().symbols
    big = ExchangePosition(
        symbol="BTCUSDT",
        side="BOTH",
        qty=D("-250.5"),
        entry_price=D("50000"),
        mark_price=D("50000"),
        unrealized_pnl=D(0),
        liquidation_price=None,
        margin_type="cross",
        isolated_wallet=D(0),
        leverage=5,
        maint_margin=None,
        update_time_ms=0,
    )
    orders = gate._close_orders([big], symbols)
    assert [o["quantity"] for o in orders] == [D("120"), D("120"), D("10.5")]
    assert {o["side"] for o in orders} == {"BUY"}


def test_only_risk_managers_may_kill(api_for, trader_a, viewer, outsider, account_a, gate_env):
    for user in (trader_a, viewer, outsider):
        assert api_for(user).post(url(account_a.id), {}, format="json").status_code == 403
    assert api_for(None).post(url(account_a.id), {}, format="json").status_code == 401
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.ACTIVE


def test_bad_kill_input_is_a_400(api_for, risk_manager, account_a, gate_env):
    api = api_for(risk_manager)
    assert api.post(url(account_a.id), {"flatten": "yes"}, format="json").status_code == 400
    assert api.post(url(account_a.id), {"flaten": True}, format="json").status_code == 400
