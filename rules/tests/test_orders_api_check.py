"""POST /api/v1/orders/check: the decision, every failed check, the projection; bad input; access."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import TradingState
from positions.models import OrderDecision, OrderLog
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

URL = "/api/v1/orders/check"


@pytest.fixture
def live_a(gate_env, account_a):
    return publish(account_a.id, positions=[long_btc()])


def post(api, body):
    return api.post(URL, body, format="json")


def test_an_order_within_every_limit_is_allowed_with_its_projection(api_for, trader_a, account_a, live_a):
    response = post(api_for(trader_a), order_body(account_a.id))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["allowed"] is True and body["decision"] == "allowed" and body["failures"] == []
    projected = body["projected"]
    assert D(projected["position_qty"]) == D("0.51")
    # 0.5 BTC held + 0.01 bought: notional at the 50,000 mark
    assert D(projected["position_notional"]) == D("25500")
    assert D(projected["account_gross_notional"]) == D("25500")
    assert D(projected["liquidation_price"]) > 0 and D(projected["liquidation_distance"]) > 0


def test_the_decision_lists_every_failed_check_not_only_the_first(api_for, trader_a, account_a, live_a):
    default_profile(max_order_qty=D("0.005"), max_price_deviation=D("0.01"), symbol_denylist=["BTCUSDT"])
    body = order_body(account_a.id, price="55000.05", quantity="0.0105")
    response = post(api_for(trader_a), body)
    assert response.status_code == 200
    failures = {f["code"]: f for f in response.json()["failures"]}
    assert set(failures) == {"PRICE_TICK", "QTY_STEP", "ORDER_QTY_HIGH", "PRICE_COLLAR", "SYMBOL_DENIED"}
    assert failures["ORDER_QTY_HIGH"]["value"] == "0.0105" and failures["ORDER_QTY_HIGH"]["limit"] == "0.005"
    assert failures["PRICE_COLLAR"]["limit"] == "0.01"
    assert all(f["message"] for f in failures.values())


def test_a_warning_level_lets_the_order_through_with_a_warning(api_for, trader_a, account_a, live_a):
    default_profile(max_position_notional_warning=D("25000"), max_position_notional_critical=D("30000"))
    body = post(api_for(trader_a), order_body(account_a.id)).json()
    assert body["allowed"] is True
    assert [w["code"] for w in body["warnings"]] == ["POSITION_NOTIONAL_HIGH"]
    denied = post(api_for(trader_a), order_body(account_a.id, quantity="0.2")).json()
    assert [f["code"] for f in denied["failures"]] == ["POSITION_NOTIONAL_HIGH"]


def test_it_denies_new_orders_when_the_feed_is_stale(api_for, trader_a, account_a, gate_env):
    publish(account_a.id, positions=[long_btc()], feed_age_s=30)
    body = post(api_for(trader_a), order_body(account_a.id)).json()
    assert body["allowed"] is False and "FEED_STALE" in [f["code"] for f in body["failures"]]


def test_it_denies_when_there_is_no_live_state_at_all(api_for, trader_a, account_a, gate_env):
    body = post(api_for(trader_a), order_body(account_a.id)).json()
    codes = [f["code"] for f in body["failures"]]
    assert body["allowed"] is False and {"FEED_STALE", "MARK_MISSING", "ACCOUNT_STATE_MISSING"} <= set(codes)


def test_a_halted_account_refuses_an_increase_but_accepts_a_reduce_only_exit(api_for, trader_a, account_a, live_a):
    account_a.trading_state = TradingState.HALTED
    account_a.save(update_fields=["trading_state"])
    gate.catalog_reload()
    api = api_for(trader_a)
    increase = post(api, order_body(account_a.id)).json()
    assert [f["code"] for f in increase["failures"]] == ["TRADING_HALTED"]
    exit_ = post(
        api, order_body(account_a.id, side="SELL", type="MARKET", price=None, quantity="0.5", reduce_only=True)
    ).json()
    assert exit_["allowed"] is True and exit_["exit"] is True


def test_every_check_is_logged_with_the_user_and_the_token_id(api_for, trader_a, account_a, live_a):
    token = AccessToken.for_user(trader_a)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    post(api, order_body(account_a.id))
    post(api, order_body(account_a.id, quantity="5000"))
    assert gate.order_log_flush() == 2
    rows = list(OrderLog.objects.filter(account=account_a).order_by("id"))
    assert [r.decision for r in rows] == [OrderDecision.ALLOWED, OrderDecision.DENIED]
    assert all(r.user == trader_a and r.token_id == token["jti"] for r in rows)
    assert rows[1].reason_codes == ["QTY_ABOVE_MAX"]
    assert rows[0].details["projected"]["position_notional"] == "25500"


def test_the_fast_rendering_is_exactly_the_output_serializers(api_for, trader_a, account_a, live_a):
    from rules.serializers_orders import DecisionSerializer

    # Decimal, count, leverage and ratio values; a warning; a denial with no projection.
    default_profile(
        max_order_qty=D("0.005"),
        max_position_notional_warning=D("100"),
        max_leverage_critical=10,
        max_open_orders=0,
        margin_ratio_warning=D("0.001"),
    )
    api = api_for(trader_a)
    for body in (
        order_body(account_a.id),
        order_body(account_a.id, quantity="0.004", price="1.0"),
        order_body(account_a.id, symbol="ETHUSDT", price="2400.00"),
    ):
        response = post(api, body).json()
        result = gate.order_check(account=account_a, order=_order_from(body), actor=gate.Actor(user=trader_a))
        rendered = dict(DecisionSerializer(result.body()).data)
        rendered["checked_at_ms"] = response["checked_at_ms"]
        assert json.loads(json.dumps(rendered)) == response


def _order_from(body: dict):
    from rules.checks import Order

    return Order.make(
        symbol=body["symbol"], side=body["side"], type=body["type"], qty=D(body["quantity"]), price=D(body["price"])
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"quantity": "1e12"}, "quantity"),
        ({"quantity": "0.000000001"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": [1]}, "quantity"),
        ({"price": "-5"}, "price"),
        ({"price": "abc"}, "price"),
        ({"symbol": "NOPEUSDT"}, "symbol"),
        ({"symbol": 123}, "symbol"),
        ({"symbol": "btc/usdt"}, "symbol"),
        ({"side": "HOLD"}, "side"),
        ({"type": "STOP_MARKET"}, "type"),
        ({"account": "abc"}, "account"),
        ({"account": 1.5}, "account"),
        ({"reduce_only": "yes"}, "reduce_only"),
        ({"price": None}, "price"),
        ({"type": "MARKET", "time_in_force": "GTC"}, "time_in_force"),
        ({"client_order_id": "bad id!"}, "client_order_id"),
        ({"reduceOnly": True}, "reduceOnly"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_for, trader_a, account_a, live_a, change, field):
    body = {**order_body(account_a.id), **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = post(api_for(trader_a), body)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_malformed_json_is_a_400(api_for, trader_a, live_a):
    response = api_for(trader_a).post(URL, '{"account": 1,', content_type="application/json")
    assert response.status_code == 400


def test_nan_as_a_json_number_is_a_400(api_for, trader_a, account_a, live_a):
    raw = '{"account": %d, "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": NaN, "price": "1"}'
    response = api_for(trader_a).post(URL, raw % account_a.id, content_type="application/json")
    assert response.status_code == 400


# --------------------------------------------------------------------------- access


def test_another_traders_account_is_a_404(api_for, trader_a, account_b, live_a):
    assert post(api_for(trader_a), order_body(account_b.id)).status_code == 404


def test_a_viewer_may_check_any_account(api_for, viewer, account_a, live_a):
    assert post(api_for(viewer), order_body(account_a.id)).status_code == 200


def test_an_outsider_is_refused(api_for, outsider, account_a, live_a):
    assert post(api_for(outsider), order_body(account_a.id)).status_code == 403


def test_no_token_is_a_401(api_for, account_a, live_a):
    assert post(api_for(None), order_body(account_a.id)).status_code == 401


def test_check_answers_from_a_short_access_cache_and_submit_reads_access_fresh(
    api_for, trader_a, account_a, live_a, monkeypatch
):
    from rules import api_orders

    monkeypatch.setattr(api_orders, "ACCESS_CACHE_S", 0.5)
    api = api_for(trader_a)
    assert post(api, order_body(account_a.id)).status_code == 200
    account_a.traders.remove(trader_a)
    assert post(api, order_body(account_a.id)).status_code == 200  # within the cache's half second
    assert api.post("/api/v1/orders", order_body(account_a.id), format="json").status_code == 404
    time.sleep(0.6)
    assert post(api, order_body(account_a.id)).status_code == 404


def test_an_expired_token_is_a_401(trader_a, account_a, live_a):
    token = AccessToken.for_user(trader_a)
    token.set_exp(lifetime=-timedelta(seconds=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert post(api, order_body(account_a.id)).status_code == 401
