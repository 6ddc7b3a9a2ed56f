"""POST /api/v1/orders/check through the ASGI lane (riskdesk/asgi.py → api_orders.order_check_fast).

Each request goes through the real ASGI application, as uvicorn would call it, and where it
matters is compared with the same request through the DRF view (the test client), which is the
documented definition: same status, same body, same order log row.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from positions.models import OrderDecision, OrderLog
from riskdesk.asgi import application, check_lane
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

URL = "/api/v1/orders/check"


@pytest.fixture
def live_a(gate_env, account_a):
    return publish(account_a.id, positions=[long_btc()])


def asgi_post(body: bytes | str | dict, *, token: str | None = None, headers: dict | None = None, method="POST"):
    """One request through riskdesk.asgi.application: (status, headers, body bytes)."""
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    sent = {"host": "testserver", "content-type": "application/json", "content-length": str(len(raw))}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in sent.items() if v is not None],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    out: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.get_running_loop().create_future()  # the client stays until answered (Django listens)

    async def send(message):
        out.append(message)

    # As Django's own test clients do: a request must not close the test's connection mid-transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(application)(scope, receive, send)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    start = out[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in out[1:])


def token_for(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def drf_post(body, *, token: str | None = None, raw: bool = False):
    api = APIClient()
    if token is not None:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    if raw:
        return api.post(URL, body, content_type="application/json")
    return api.post(URL, body, format="json")


def same_answer(body, token: str | None, *, raw: bool = False) -> tuple[int, dict]:
    """The lane's answer, after proving the DRF view gives the same status and body."""
    assert check_lane.takes(_scope_headers(token)) is not None or token is None
    status, _headers, content = asgi_post(body, token=token)
    lane = json.loads(content)
    drf = drf_post(body, token=token, raw=raw)
    expected = drf.json()
    for answer in (lane, expected):
        if isinstance(answer, dict):
            answer.pop("checked_at_ms", None)
    assert (status, lane) == (drf.status_code, expected)
    return status, lane


def _scope_headers(token: str | None) -> dict:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"10")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {"path": URL, "method": "POST", "headers": headers}


# --------------------------------------------------------------------------- decisions


def test_an_allowed_order_gets_the_decision_and_projection_the_drf_view_gives(trader_a, account_a, live_a):
    status, body = same_answer(order_body(account_a.id), token_for(trader_a))
    assert status == 200 and body["allowed"] is True
    assert D(body["projected"]["position_notional"]) == D("25500")


def test_a_denial_lists_every_failed_check_with_value_and_limit(trader_a, account_a, live_a):
    default_profile(max_order_qty=D("0.005"), max_price_deviation=D("0.01"), symbol_denylist=["BTCUSDT"])
    status, body = same_answer(order_body(account_a.id, price="55000.05", quantity="0.0105"), token_for(trader_a))
    failures = {f["code"]: f for f in body["failures"]}
    assert status == 200 and body["allowed"] is False
    assert set(failures) == {"PRICE_TICK", "QTY_STEP", "ORDER_QTY_HIGH", "PRICE_COLLAR", "SYMBOL_DENIED"}
    assert failures["ORDER_QTY_HIGH"]["value"] == "0.0105" and failures["ORDER_QTY_HIGH"]["limit"] == "0.005"


def test_a_warning_and_a_missing_projection_render_as_the_drf_view_renders_them(trader_a, account_a, gate_env):
    default_profile(max_position_notional_warning=D("100"))
    publish(account_a.id, positions=[long_btc()])
    same_answer(order_body(account_a.id), token_for(trader_a))
    from django.core.cache import cache

    cache.clear()  # no live state at all: every freshness check fails and there is no projection
    status, body = same_answer(order_body(account_a.id, symbol="ETHUSDT", price="2400.00"), token_for(trader_a))
    assert status == 200 and body["projected"] is None
    assert {"FEED_STALE", "MARK_MISSING", "ACCOUNT_STATE_MISSING"} <= {f["code"] for f in body["failures"]}


def test_every_check_through_the_lane_is_logged_with_the_user_and_the_token_id(trader_a, account_a, live_a):
    token = AccessToken.for_user(trader_a)
    assert asgi_post(order_body(account_a.id), token=str(token))[0] == 200
    assert asgi_post(order_body(account_a.id, quantity="5000"), token=str(token))[0] == 200
    assert gate.order_log_flush() == 2
    rows = list(OrderLog.objects.filter(account=account_a).order_by("id"))
    assert [r.decision for r in rows] == [OrderDecision.ALLOWED, OrderDecision.DENIED]
    assert all(r.user == trader_a and r.token_id == token["jti"] for r in rows)
    assert rows[1].reason_codes == ["QTY_ABOVE_MAX"]
    assert rows[0].details["action"] == "check" and rows[0].details["projected"]["position_notional"] == "25500"


def test_the_answer_carries_the_headers_django_would_add(trader_a, account_a, live_a):
    status, headers, _ = asgi_post(order_body(account_a.id), token=token_for(trader_a))
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"x-frame-options"] == b"DENY"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": "0"},
        {"quantity": "NaN"},
        {"quantity": "1e12"},
        {"quantity": "0.000000001"},
        {"price": "abc"},
        {"symbol": "NOPEUSDT"},
        {"symbol": 123},
        {"side": "HOLD"},
        {"account": "abc"},
        {"account": 1.5},
        {"reduce_only": "yes"},
        {"type": "MARKET", "time_in_force": "GTC"},
        {"reduceOnly": True},
    ],
)
def test_bad_input_is_the_same_400_naming_the_field(trader_a, account_a, live_a, change):
    body = {**order_body(account_a.id), **change}
    status, answer = same_answer(body, token_for(trader_a))
    assert status == 400 and set(change) & set(answer)


@pytest.mark.parametrize("raw", ['{"account": 1,', '{"account": 1, "quantity": NaN}', "[1, 2]", ""])
def test_malformed_json_is_the_same_400(trader_a, live_a, raw):
    status, _answer = same_answer(raw, token_for(trader_a), raw=True)
    assert status == 400


# --------------------------------------------------------------------------- access


def test_another_traders_account_is_a_404(trader_a, account_b, live_a):
    status, answer = same_answer(order_body(account_b.id), token_for(trader_a))
    assert status == 404 and answer == {"detail": "No such account."}


def test_a_viewer_may_check_any_account(viewer, account_a, live_a):
    assert same_answer(order_body(account_a.id), token_for(viewer))[0] == 200


def test_an_outsider_is_a_403(outsider, account_a, live_a):
    status, answer = same_answer(order_body(account_a.id), token_for(outsider))
    assert status == 403 and answer == {"detail": "You have no role on this desk."}


def test_an_expired_token_is_a_401_with_the_bearer_challenge(trader_a, account_a, live_a):
    token = AccessToken.for_user(trader_a)
    token.set_exp(lifetime=-timedelta(seconds=1))
    status, answer = same_answer(order_body(account_a.id), str(token))
    assert status == 401 and answer["code"] == "token_not_valid"
    assert asgi_post(order_body(account_a.id), token=str(token))[1][b"www-authenticate"] == b'Bearer realm="api"'


def test_a_token_the_lane_has_seen_is_refused_once_it_expires(trader_a, account_a, live_a):
    # Validated tokens are kept (CachedJWTAuthentication) only until their exp.
    token = AccessToken.for_user(trader_a)
    token.set_exp(lifetime=timedelta(seconds=2))
    assert same_answer(order_body(account_a.id), str(token))[0] == 200
    time.sleep(max(0.0, token["exp"] - time.time()) + 0.05)
    status, answer = same_answer(order_body(account_a.id), str(token))
    assert status == 401 and answer["code"] == "token_not_valid"


def test_a_tampered_copy_of_a_seen_token_is_a_401(trader_a, account_a, live_a):
    token = token_for(trader_a)
    assert same_answer(order_body(account_a.id), token)[0] == 200
    head, payload, signature = token.split(".")
    forged = ".".join((head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
    assert same_answer(order_body(account_a.id), forged)[0] == 401


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"])
def test_an_invalid_token_is_a_401(account_a, live_a, token):
    assert same_answer(order_body(account_a.id), token)[0] == 401


def test_a_refresh_token_is_not_an_access_token(trader_a, account_a, live_a):
    assert same_answer(order_body(account_a.id), str(RefreshToken.for_user(trader_a)))[0] == 401


def test_a_deactivated_user_is_a_401(trader_a, account_a, live_a):
    token = token_for(trader_a)
    trader_a.is_active = False
    trader_a.save(update_fields=["is_active"])
    status, answer = same_answer(order_body(account_a.id), token)
    assert status == 401 and answer["code"] == "user_inactive"


def test_a_trader_removed_from_the_account_is_refused_once_the_access_cache_expires(
    trader_a, account_a, live_a, monkeypatch
):
    from rules import api_orders

    monkeypatch.setattr(api_orders, "ACCESS_CACHE_S", 60.0)
    api_orders.access_cache_clear()
    token = token_for(trader_a)
    assert asgi_post(order_body(account_a.id), token=token)[0] == 200
    account_a.traders.remove(trader_a)
    assert asgi_post(order_body(account_a.id), token=token)[0] == 200  # the cached answer, as the DRF view
    api_orders.access_cache_clear()
    assert asgi_post(order_body(account_a.id), token=token)[0] == 404


# --------------------------------------------------------------------------- what the lane leaves to Django


def test_no_token_goes_to_django_and_is_a_401(account_a, live_a):
    assert check_lane.takes(_scope_headers(None)) is None
    status, headers, content = asgi_post(order_body(account_a.id))
    assert status == 401 and json.loads(content) == drf_post(order_body(account_a.id)).json()


@pytest.mark.parametrize(
    "headers",
    [
        {"accept": "text/html"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"host": "evil.example"},
        {"content-length": None},
    ],
)
def test_requests_the_lane_cannot_answer_as_drf_would_go_to_django(trader_a, account_a, live_a, headers):
    scope = _scope_headers(token_for(trader_a))
    sent = {k.decode(): v.decode() for k, v in scope["headers"]}
    sent.update(headers)
    scope["headers"] = [(k.encode(), v.encode()) for k, v in sent.items() if v is not None]
    assert check_lane.takes(scope) is None


def test_another_method_goes_to_django(trader_a, account_a, live_a):
    status, _headers, _content = asgi_post(order_body(account_a.id), token=token_for(trader_a), method="GET")
    assert status == 405


def test_the_server_shutting_down_writes_the_pending_order_log(trader_a, account_a, live_a):
    assert asgi_post(order_body(account_a.id), token=token_for(trader_a))[0] == 200
    assert len(gate.ORDER_LOG.rows) == 1 and not OrderLog.objects.exists()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message["type"])

    try:
        async_to_sync(application)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    finally:
        gc.unfreeze()  # start-up froze the test process's objects; give them back to the collector
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert OrderLog.objects.filter(account=account_a, user=trader_a).count() == 1


def test_past_the_order_log_bound_a_check_waits_for_the_write_instead_of_failing(
    trader_a, account_a, live_a, monkeypatch
):
    monkeypatch.setattr(gate, "ORDER_LOG_BOUND", 2)
    token = token_for(trader_a)
    for _ in range(4):
        assert asgi_post(order_body(account_a.id), token=token)[0] == 200
    assert OrderLog.objects.filter(account=account_a).count() + len(gate.ORDER_LOG.rows) == 4
    assert OrderLog.objects.filter(account=account_a).exists() and len(gate.ORDER_LOG.rows) <= 2


def test_an_unknown_account_is_the_same_404_as_another_traders(trader_a, account_b, live_a):
    # Both doors answer alike, so account ids cannot be enumerated (riskdesk/tests/test_bad_input.py).
    status, answer = same_answer(order_body(987654321), token_for(trader_a))
    assert status == 404 and answer == {"detail": "No such account."}
