"""DELETE /api/v1/orders: cancel one or all; never blocked by a check, only by access."""

from __future__ import annotations

import pytest

from accounts.models import TradingState
from positions.models import OrderLog
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish, sim_account

gate_env, exchange = fx.gate_env, fx.exchange  # pytest finds fixtures by name in the module

URL = "/api/v1/orders"


@pytest.fixture
def resting(gate_env, exchange, account_a, trader_a, api_for):
    """Two resting buys on the simulator, placed through the gate."""
    publish(account_a.id, positions=[long_btc()])
    api = api_for(trader_a)
    placed = [api.post(URL, order_body(account_a.id, price=p), format="json").json() for p in ("48000.0", "47000.0")]
    assert sim_account(exchange)["open_orders"] == 2
    return [p["exchange"] for p in placed]


def cancel(api, **params):
    return api.delete(URL, params)


def test_it_cancels_one_order_by_order_id(api_for, trader_a, account_a, resting, exchange):
    response = cancel(api_for(trader_a), account=account_a.id, symbol="BTCUSDT", order_id=resting[0]["orderId"])
    assert response.status_code == 200, response.json()
    assert response.json()["outcome"] == "cancelled" and response.json()["exchange"]["status"] == "CANCELED"
    assert sim_account(exchange)["open_orders"] == 1


def test_it_cancels_one_order_by_client_order_id_from_a_json_body(api_for, trader_a, account_a, resting, exchange):
    body = {"account": account_a.id, "symbol": "BTCUSDT", "client_order_id": resting[1]["clientOrderId"]}
    response = api_for(trader_a).delete(URL, body, format="json")
    assert response.status_code == 200 and response.json()["scope"] == "one"
    assert sim_account(exchange)["open_orders"] == 1


def test_it_cancels_every_order_of_a_symbol(api_for, trader_a, account_a, resting, exchange):
    response = cancel(api_for(trader_a), account=account_a.id, symbol="BTCUSDT")
    assert response.status_code == 200 and response.json()["scope"] == "all"
    assert sim_account(exchange)["open_orders"] == 0
    gate.order_log_flush()
    assert OrderLog.objects.filter(account=account_a, order_type="CANCEL_ALL").count() == 1


def test_a_stale_feed_denies_new_orders_but_not_cancels(api_for, trader_a, account_a, resting, exchange):
    publish(account_a.id, positions=[long_btc()], feed_age_s=60)
    api = api_for(trader_a)
    new = api.post(URL, order_body(account_a.id, price="46000.0"), format="json")
    assert new.status_code == 422 and "FEED_STALE" in [f["code"] for f in new.json()["failures"]]
    assert cancel(api, account=account_a.id, symbol="BTCUSDT").status_code == 200
    assert sim_account(exchange)["open_orders"] == 0


def test_halted_and_every_limit_do_not_block_a_cancel(api_for, trader_a, account_a, resting, exchange):
    account_a.trading_state = TradingState.HALTED
    account_a.save(update_fields=["trading_state"])
    default_profile(max_daily_cancels=0, order_rate_per_second=0, disabled_checks=[])
    gate.catalog_reload()
    api = api_for(trader_a)
    assert cancel(api, account=account_a.id, symbol="BTCUSDT", order_id=resting[0]["orderId"]).status_code == 200
    assert cancel(api, account=account_a.id, symbol="BTCUSDT", order_id=resting[1]["orderId"]).status_code == 200
    assert sim_account(exchange)["open_orders"] == 0


def test_cancels_past_the_daily_cap_refuse_new_orders(api_for, trader_a, account_a, resting):
    default_profile(max_daily_cancels=1)
    api = api_for(trader_a)
    for order in resting:
        assert cancel(api, account=account_a.id, symbol="BTCUSDT", order_id=order["orderId"]).status_code == 200
    new = api.post(URL, order_body(account_a.id, price="46000.0"), format="json").json()
    assert [f["code"] for f in new["failures"]] == ["DAILY_CANCELS_CAP"]


def test_an_unknown_order_comes_back_with_binances_code(api_for, trader_a, account_a, resting):
    response = cancel(api_for(trader_a), account=account_a.id, symbol="BTCUSDT", order_id=999999)
    assert response.status_code == 422 and response.json()["error"]["code"] in (-2011, -2013)


@pytest.mark.parametrize(
    "params",
    [
        {"symbol": "BTCUSDT"},  # no account
        {"account": "x", "symbol": "BTCUSDT"},
        {"account": "ME", "symbol": "NOPEUSDT"},
        {"account": "ME", "symbol": "BTCUSDT", "order_id": "-3"},
        {"account": "ME", "symbol": "BTCUSDT", "order_id": "1", "client_order_id": "a"},
    ],
)
def test_bad_cancel_input_is_a_400(api_for, trader_a, account_a, gate_env, params):
    params = {k: account_a.id if v == "ME" else v for k, v in params.items()}
    assert cancel(api_for(trader_a), **params).status_code == 400


def test_access_to_cancel(api_for, viewer, trader_b, outsider, account_a, resting, exchange):
    params = {"account": account_a.id, "symbol": "BTCUSDT"}
    assert cancel(api_for(viewer), **params).status_code == 403
    assert cancel(api_for(trader_b), **params).status_code == 404
    assert cancel(api_for(outsider), **params).status_code == 403
    assert cancel(api_for(None), **params).status_code == 401
    assert sim_account(exchange)["open_orders"] == 2
