"""POST /api/v1/orders against the simulator (the real python-binance path on loopback)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from accounts.models import TradingState
from marketdata.simulator import FaultSpec
from positions.models import OrderDecision, OrderLog
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish, sim_account

gate_env, exchange = fx.gate_env, fx.exchange  # pytest finds fixtures by name in the module

URL = "/api/v1/orders"


@pytest.fixture
def live_a(gate_env, exchange, account_a):
    """account_a holds 0.5 BTC long at 49,000 on the simulator; the live state says the same."""
    return publish(account_a.id, positions=[long_btc()])


def submit(api, body):
    return api.post(URL, body, format="json")


def test_an_allowed_order_goes_to_the_exchange_and_its_answer_comes_back(
    api_for, trader_a, account_a, live_a, exchange
):
    response = submit(api_for(trader_a), order_body(account_a.id, price="49000.0"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcome"] == "submitted" and body["allowed"] is True
    assert body["exchange"]["status"] == "NEW" and body["exchange"]["clientOrderId"].startswith("rd-")
    assert sim_account(exchange)["open_orders"] == 1
    gate.order_log_flush()
    row = OrderLog.objects.get(account=account_a)
    assert row.decision == OrderDecision.SUBMITTED and row.exchange_order_id == str(body["exchange"]["orderId"])


def test_a_denied_order_never_reaches_the_exchange(api_for, trader_a, account_a, live_a, exchange):
    default_profile(max_order_notional=D("100"))
    response = submit(api_for(trader_a), order_body(account_a.id))
    assert response.status_code == 422
    assert response.json()["outcome"] == "denied"
    assert [f["code"] for f in response.json()["failures"]] == ["ORDER_NOTIONAL_HIGH"]
    assert sim_account(exchange)["open_orders"] == 0
    assert sim_account(exchange)["positions"][0]["qty"] == "0.5"


def test_an_exchange_rejection_comes_back_with_binances_code_and_message(api_for, trader_a, account_a, live_a):
    response = submit(api_for(trader_a), order_body(account_a.id, quantity="10", price="50000.0"))
    assert response.status_code == 422
    body = response.json()
    assert body["outcome"] == "rejected" and body["allowed"] is True
    assert body["error"]["code"] == -2019 and body["error"]["message"] == "Margin is insufficient."
    gate.order_log_flush()
    assert OrderLog.objects.get(account=account_a).decision == OrderDecision.REJECTED


@pytest.mark.parametrize(("execute", "resolution", "orders"), [(True, "placed", 1), (False, "not_placed", 0)])
def test_an_unknown_outcome_is_reconciled_by_client_order_id_not_resent(
    api_for, trader_a, account_a, live_a, exchange, execute, resolution, orders
):
    exchange.call(lambda s: s.apply_fault(FaultSpec("http503", count=1, execute=execute)))
    response = submit(api_for(trader_a), order_body(account_a.id, price="49000.0", client_order_id="bot-7"))
    assert response.status_code == 202
    body = response.json()
    assert body["outcome"] == "unknown" and body["error"]["status"] == 503
    assert body["reconciliation"]["resolution"] == resolution
    assert body["reconciliation"]["client_order_id"] == "bot-7"
    assert sim_account(exchange)["open_orders"] == orders  # never sent twice
    gate.order_log_flush()
    assert OrderLog.objects.get(account=account_a).decision == OrderDecision.UNKNOWN


def test_a_market_order_with_a_protective_price_goes_as_limit_ioc(api_for, trader_a, account_a, live_a, exchange):
    default_profile(max_market_slippage=D("0.01"))
    body = order_body(account_a.id, type="MARKET", price="50400.0")
    response = submit(api_for(trader_a), body)
    assert response.status_code == 201, response.json()
    answer = response.json()["exchange"]
    assert (answer["type"], answer["timeInForce"], answer["status"]) == ("LIMIT", "IOC", "FILLED")
    assert D(sim_account(exchange)["positions"][0]["qty"]) == D("0.510")


def test_a_market_order_without_a_protective_price_is_refused_when_slippage_is_limited(
    api_for, trader_a, account_a, live_a
):
    default_profile(max_market_slippage=D("0.01"))
    response = submit(api_for(trader_a), order_body(account_a.id, type="MARKET", price=None))
    assert [f["code"] for f in response.json()["failures"]] == ["MARKET_UNPROTECTED"]


def test_halted_still_lets_a_reduce_only_exit_through(api_for, trader_a, account_a, live_a, exchange):
    account_a.trading_state = TradingState.HALTED
    account_a.save(update_fields=["trading_state"])
    gate.catalog_reload()
    api = api_for(trader_a)
    refused = submit(api, order_body(account_a.id, price="49000.0"))
    assert refused.status_code == 422 and [f["code"] for f in refused.json()["failures"]] == ["TRADING_HALTED"]
    exit_ = submit(
        api, order_body(account_a.id, side="SELL", type="MARKET", price=None, quantity="0.2", reduce_only=True)
    )
    assert exit_.status_code == 201, exit_.json()
    assert exit_.json()["exchange"]["status"] == "FILLED"
    assert D(sim_account(exchange)["positions"][0]["qty"]) == D("0.3")


def test_a_duplicate_is_refused_but_a_denied_order_does_not_block_its_resend(api_for, trader_a, account_a, live_a):
    default_profile(duplicate_window_s=30, max_open_orders=1)
    api = api_for(trader_a)
    body = order_body(account_a.id, price="49000.0")
    assert submit(api, body).status_code == 201
    second = submit(api, body).json()
    assert "DUPLICATE_ORDER" in [f["code"] for f in second["failures"]]
    other = order_body(account_a.id, price="48000.0")
    publish(account_a.id, positions=[long_btc()], open_orders=[{"symbol": "BTCUSDT", "side": "BUY", "price": "1"}])
    denied = submit(api, other).json()
    assert [f["code"] for f in denied["failures"]] == ["OPEN_ORDERS_CAP"]
    publish(account_a.id, positions=[long_btc()])
    assert submit(api, other).status_code == 201  # the denial released its duplicate fingerprint


def test_the_daily_order_cap_counts_only_orders_that_passed(api_for, trader_a, account_a, live_a):
    default_profile(max_daily_orders=2, max_order_qty=D("1"))
    api = api_for(trader_a)
    assert submit(api, order_body(account_a.id, price="48000.0")).status_code == 201
    assert submit(api, order_body(account_a.id, quantity="2")).status_code == 422  # ORDER_QTY_HIGH
    assert submit(api, order_body(account_a.id, price="47000.0")).status_code == 201
    third = submit(api, order_body(account_a.id, price="46000.0")).json()
    assert [f["code"] for f in third["failures"]] == ["DAILY_ORDERS_CAP"]


# --------------------------------------------------------------------------- access


def test_a_viewer_cannot_submit(api_for, viewer, account_a, live_a, exchange):
    assert submit(api_for(viewer), order_body(account_a.id)).status_code == 403
    assert sim_account(exchange)["open_orders"] == 0


def test_a_trader_cannot_submit_on_another_traders_account(api_for, trader_b, account_a, live_a, exchange):
    assert submit(api_for(trader_b), order_body(account_a.id)).status_code == 404
    assert sim_account(exchange)["open_orders"] == 0


def test_an_outsider_and_no_token_are_refused(api_for, outsider, account_a, live_a):
    assert submit(api_for(outsider), order_body(account_a.id)).status_code == 403
    assert submit(api_for(None), order_body(account_a.id)).status_code == 401


def test_a_risk_manager_may_submit_on_any_account(api_for, risk_manager, account_a, live_a):
    assert submit(api_for(risk_manager), order_body(account_a.id, price="49000.0")).status_code == 201
