"""Redis down (issue 14, item 1): cancels, the kill switch and trading-state changes still work and
are logged; new orders are refused with LIVE_STATE_UNAVAILABLE; after Redis returns, the first
check (the sync view and the event-loop lane alike) succeeds.

A private redis-server (riskdesk/tests/private_redis.py) is stopped mid-test; the exchange is the
simulator behind the real python-binance client.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import TradingState
from positions.models import OrderDecision, OrderLog, OrderSource
from riskdesk.tests.private_redis import redis_outage  # noqa: F401  (a fixture)
from rules import gate
from rules.api_orders import order_check_fast
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, order_body, publish, sim_account
from rules.tests.test_kill import desk  # noqa: F401  (a fixture: resting orders and a stop on the simulator)

gate_env, exchange = fx.gate_env, fx.exchange  # pytest finds fixtures by name in the module

ORDERS = "/api/v1/orders"
UNAVAILABLE = "LIVE_STATE_UNAVAILABLE"


@pytest.fixture
def redis_gate(redis_outage, gate_env):  # noqa: F811
    """The gate on the private Redis: cleared, with its symbols and profile (gate_env)."""
    return redis_outage


@pytest.fixture
def resting(redis_gate, exchange, account_a, trader_a, api_for):
    """Two resting buys on the simulator, placed through the gate while Redis was up."""
    publish(account_a.id, positions=[long_btc()])
    api = api_for(trader_a)
    placed = [api.post(ORDERS, order_body(account_a.id, price=p), format="json") for p in ("48000.0", "47000.0")]
    assert [p.status_code for p in placed] == [201, 201], placed[0].json()
    assert sim_account(exchange)["open_orders"] == 2
    return [p.json()["exchange"] for p in placed]


def codes(answer: dict) -> list[str]:
    return [f["code"] for f in answer["failures"]]


def test_a_cancel_with_redis_down_succeeds_and_is_logged(api_for, trader_a, account_a, resting, exchange, redis_gate):
    redis_gate.stop()
    response = api_for(trader_a).delete(ORDERS, {"account": account_a.id, "symbol": "BTCUSDT"})
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "cancelled"
    assert sim_account(exchange)["open_orders"] == 0
    gate.order_log_flush()
    row = OrderLog.objects.get(account=account_a, order_type="CANCEL_ALL")
    assert row.decision == OrderDecision.SUBMITTED
    # The day's cancel count lives in Redis: the row says this cancel was not counted.
    assert row.details["cancel_counted"] is False


def test_one_cancel_with_redis_down_succeeds(api_for, trader_a, account_a, resting, exchange, redis_gate):
    redis_gate.stop()
    params = {"account": account_a.id, "symbol": "BTCUSDT", "order_id": resting[0]["orderId"]}
    response = api_for(trader_a).delete(ORDERS, params)
    assert response.status_code == 200, response.content
    assert sim_account(exchange)["open_orders"] == 1


def test_the_kill_switch_with_redis_down_halts_cancels_and_logs(
    api_for,
    risk_manager,
    account_a,
    redis_gate,
    desk,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    redis_gate.stop()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(risk_manager).post(
            f"/api/v1/accounts/{account_a.id}/kill", {"reason": "drill"}, format="json"
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["halted"] is True and body["remaining"]["open_orders"] == 0
    assert body["remaining"]["open_conditional_orders"] == 0
    assert sim_account(desk)["open_orders"] == 0 and sim_account(desk)["open_algo_orders"] == 0
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.HALTED
    gate.order_log_flush()
    kill_rows = OrderLog.objects.filter(account=account_a, source=OrderSource.KILL_SWITCH)
    assert kill_rows.filter(order_type="CANCEL_ALL").count() == 2


def test_a_trading_state_change_with_redis_down_answers_200(
    api_for, risk_manager, account_a, redis_gate, django_capture_on_commit_callbacks
):
    redis_gate.stop()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(risk_manager).post(
            f"/api/v1/accounts/{account_a.id}/trading-state", {"state": "REDUCING", "reason": "drill"}, format="json"
        )
    assert response.status_code == 200, response.content
    account_a.refresh_from_db()
    assert account_a.trading_state == TradingState.REDUCING
    assert account_a.history.first().trading_state == TradingState.REDUCING  # the audit row


def test_a_halt_made_while_redis_was_down_holds_after_it_returns(
    api_for, risk_manager, trader_a, account_a, redis_gate, django_capture_on_commit_callbacks
):
    publish(account_a.id, positions=[long_btc()])
    redis_gate.stop()
    with django_capture_on_commit_callbacks(execute=True):
        api_for(risk_manager).post(
            f"/api/v1/accounts/{account_a.id}/trading-state", {"state": "HALTED", "reason": "drill"}, format="json"
        )
    redis_gate.start()
    publish(account_a.id, positions=[long_btc()])
    answer = api_for(trader_a).post(f"{ORDERS}/check", order_body(account_a.id), format="json").json()
    assert codes(answer) == ["TRADING_HALTED"]


def test_new_orders_are_refused_with_redis_down_and_logged(api_for, trader_a, account_a, resting, exchange, redis_gate):
    redis_gate.stop()
    api = api_for(trader_a)
    submit = api.post(ORDERS, order_body(account_a.id, price="46000.0"), format="json")
    assert submit.status_code == 422, submit.content
    assert submit.json()["outcome"] == "denied" and codes(submit.json()) == [UNAVAILABLE]
    assert submit.json()["failures"][0]["message"]
    check = api.post(f"{ORDERS}/check", order_body(account_a.id), format="json")
    assert check.status_code == 200 and check.json()["allowed"] is False and codes(check.json()) == [UNAVAILABLE]
    # An exit is refused too: the rate windows live in Redis, and a bot looping on refused exits could
    # get the key banned by Binance, which would take the kill switch down with it.
    exit_ = api.post(ORDERS, order_body(account_a.id, side="SELL", reduce_only=True, price="51000.0"), format="json")
    assert exit_.status_code == 422 and codes(exit_.json()) == [UNAVAILABLE]
    assert sim_account(exchange)["open_orders"] == 2  # nothing new reached the exchange
    gate.order_log_flush()
    denied = OrderLog.objects.filter(account=account_a, decision=OrderDecision.DENIED)
    assert denied.count() == 3 and all(row.reason_codes == [UNAVAILABLE] for row in denied)


def test_the_risk_api_says_the_live_state_is_unavailable(api_for, trader_a, account_a, redis_gate):
    publish(account_a.id, positions=[long_btc()])
    redis_gate.stop()
    response = api_for(trader_a).get(f"/api/v1/accounts/{account_a.id}/risk")
    assert response.status_code == 200, response.content
    assert response.json()["stale"] is True and UNAVAILABLE in response.json()["stale_reasons"]


def test_the_first_check_after_redis_returns_succeeds(api_for, trader_a, account_a, redis_gate):
    publish(account_a.id, positions=[long_btc()])
    api = api_for(trader_a)
    assert api.post(f"{ORDERS}/check", order_body(account_a.id), format="json").json()["allowed"] is True
    redis_gate.stop()
    assert codes(api.post(f"{ORDERS}/check", order_body(account_a.id), format="json").json()) == [UNAVAILABLE]
    redis_gate.start()
    publish(account_a.id, positions=[long_btc()])  # a Redis without persistence comes back empty
    first = api.post(f"{ORDERS}/check", order_body(account_a.id), format="json")
    assert first.status_code == 200 and first.json()["allowed"] is True, first.json()


def test_the_lanes_first_check_after_a_redis_restart_succeeds(trader_a, account_a, redis_gate):
    """The event-loop lane keeps one redis.asyncio pool per loop: after a restart that no check saw
    (nothing used the pooled connection while Redis was away), that connection is dead, and without
    a retry the first check failed."""
    authorization = f"Bearer {RefreshToken.for_user(trader_a).access_token}".encode()
    body = json.dumps(order_body(account_a.id)).encode()

    async def scenario() -> list[tuple[int, dict]]:
        answers = []
        publish(account_a.id, positions=[long_btc()])
        for step in ("up", "down", "restarted", "bounced"):
            if step == "down":
                redis_gate.stop()
            elif step == "restarted":
                redis_gate.start()
                publish(account_a.id, positions=[long_btc()])  # a Redis without persistence comes back empty
            elif step == "bounced":
                redis_gate.stop()
                redis_gate.start()
                publish(account_a.id, positions=[long_btc()])
            status, content, _headers = await order_check_fast(authorization, body)
            answers.append((status, json.loads(content)))
        await gate.store_aclose()
        return answers

    up, down, restarted, bounced = async_to_sync(scenario)()
    assert up[0] == 200 and up[1]["allowed"] is True
    assert down[0] == 200 and codes(down[1]) == [UNAVAILABLE]
    assert restarted[0] == 200 and restarted[1]["allowed"] is True, restarted
    assert bounced[0] == 200 and bounced[1]["allowed"] is True, bounced


def test_a_profile_edit_with_redis_down_answers_200(
    api_for, risk_manager, redis_gate, django_capture_on_commit_callbacks
):
    from rules.models import RiskProfile

    profile = RiskProfile.objects.create(name="drill", max_leverage_warning=10, max_leverage_critical=20)
    redis_gate.stop()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(risk_manager).patch(
            f"/api/v1/profiles/{profile.id}/", {"max_leverage_warning": 12, "reason": "drill"}, format="json"
        )
    assert response.status_code == 200, response.content
    profile.refresh_from_db()
    assert profile.max_leverage_warning == 12  # committed; the evaluator's 30 s reload takes it up
