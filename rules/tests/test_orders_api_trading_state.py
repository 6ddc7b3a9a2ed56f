"""POST /api/v1/accounts/{id}/trading-state: risk managers only; every gate sees it at once."""

from __future__ import annotations

from decimal import Decimal as D

from accounts.models import TradingState
from rules import gate
from rules.checks import Order
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module


def url(account_id: int) -> str:
    return f"/api/v1/accounts/{account_id}/trading-state"


def test_a_risk_manager_halts_an_account_and_the_gate_refuses_at_once(
    api_for, risk_manager, trader_a, account_a, gate_env, django_capture_on_commit_callbacks
):
    publish(account_a.id, positions=[long_btc()])
    check = api_for(trader_a).post("/api/v1/orders/check", order_body(account_a.id), format="json")
    assert check.json()["allowed"] is True
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(risk_manager).post(url(account_a.id), {"state": "HALTED", "reason": "drill"}, format="json")
    assert response.status_code == 200
    assert response.json()["trading_state"] == "HALTED" and response.json()["trading_state_reason"] == "drill"
    again = api_for(trader_a).post("/api/v1/orders/check", order_body(account_a.id), format="json").json()
    assert [f["code"] for f in again["failures"]] == ["TRADING_HALTED"]
    # A caller holding an account object read before the halt is refused too: the change was
    # published to the live cache, and the gate takes the newer of the two.
    stale = account_a
    assert stale.trading_state == TradingState.ACTIVE
    result = gate.order_check(
        account=stale,
        order=Order.make(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.01"), price=D("49900")),
        actor=gate.Actor(user=trader_a),
    )
    assert result.decision.codes == ["TRADING_HALTED"]
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.HALTED


def test_reducing_refuses_increases_and_accepts_reductions(
    api_for, risk_manager, trader_a, account_a, gate_env, django_capture_on_commit_callbacks
):
    publish(account_a.id, positions=[long_btc()])
    with django_capture_on_commit_callbacks(execute=True):
        api_for(risk_manager).post(url(account_a.id), {"state": "REDUCING", "reason": "margin"}, format="json")
    api = api_for(trader_a)
    buy = api.post("/api/v1/orders/check", order_body(account_a.id), format="json").json()
    assert [f["code"] for f in buy["failures"]] == ["TRADING_REDUCING"]
    sell = api.post(
        "/api/v1/orders/check", order_body(account_a.id, side="SELL", price="50000.0"), format="json"
    ).json()
    assert sell["allowed"] is True and sell["reduces"] is True and sell["exit"] is False


def test_bad_trading_state_input(api_for, risk_manager, account_a, gate_env):
    api = api_for(risk_manager)
    assert api.post(url(account_a.id), {"state": "PAUSED", "reason": "x"}, format="json").status_code == 400
    assert api.post(url(account_a.id), {"state": "HALTED"}, format="json").status_code == 400
    assert api.post(url(account_a.id), {"state": "HALTED", "reason": 5}, format="json").status_code == 400
    assert api.post(url(987654), {"state": "HALTED", "reason": "x"}, format="json").status_code == 404


def test_only_risk_managers_change_the_trading_state(api_for, trader_a, viewer, outsider, account_a, gate_env):
    body = {"state": "ACTIVE", "reason": "mine"}
    assert api_for(trader_a).post(url(account_a.id), body, format="json").status_code == 403
    assert api_for(viewer).post(url(account_a.id), body, format="json").status_code == 403
    assert api_for(outsider).post(url(account_a.id), body, format="json").status_code == 403
    assert api_for(None).post(url(account_a.id), body, format="json").status_code == 401
