"""The WebSocket order-check lane, /ws/orders/check (rules/consumers.py), through the real ASGI
application (origin check, routing, the consumer) as uvicorn would call it.

Its answers are compared with the REST check's (the DRF view through the test client, the
documented definition) for the same orders: same status, same body.
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import Role
from positions.models import OrderDecision, OrderLog
from riskdesk.asgi import application
from rules import consumers, gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish

gate_env = fx.gate_env
# Transactional: the socket's middleware (channels' session and auth) closes connections around its
# reads, which would end a test transaction's connection on MariaDB.
pytestmark = pytest.mark.django_db(transaction=True)  # the lane runs the ORM on its own threads

PATH = "/ws/orders/check"


@pytest.fixture
def live_a(gate_env, account_a):
    return publish(account_a.id, positions=[long_btc()])


@pytest.fixture(autouse=True)
def _no_request_signals():
    # As Django's test clients: the lane's thread hops must not close the test's connection mid-transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def token_for(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


class Lane:
    """A bot's socket, speaking ASGI to riskdesk.asgi.application."""

    def __init__(self, subprotocols: list[str] | None = None):
        headers = [(b"host", b"localhost")]  # a bot sends no Origin: the lane does not ask for one
        scope = {
            "type": "websocket",
            "path": PATH,
            "query_string": b"",
            "headers": headers,
            "subprotocols": subprotocols or [],
        }
        self.io = ApplicationCommunicator(application, scope)

    async def open(self) -> dict:
        await self.io.send_input({"type": "websocket.connect"})
        accepted = await self.io.receive_output(3)
        assert accepted["type"] == "websocket.accept", accepted
        return accepted

    async def send(self, frame) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.io.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.io.send_input({"type": "websocket.receive", "bytes": data})

    async def frame(self) -> dict:
        out = await self.io.receive_output(5)
        assert out["type"] == "websocket.send", out
        return json.loads(out["text"])

    async def closed_with(self) -> int:
        out = await self.io.receive_output(5)
        assert out["type"] == "websocket.close", out
        return out["code"]

    async def auth(self, token: str) -> dict:
        await self.send({"type": "auth", "token": token})
        return await self.frame()

    async def check(self, order, request_id=1) -> dict:
        await self.send({"id": request_id, "order": order})
        return await self.frame()

    async def leave(self) -> None:
        await self.io.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.io.wait(3)


def run(scenario):
    return async_to_sync(scenario)()


def rest(order, token: str) -> tuple[int, dict]:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api.post("/api/v1/orders/check", order, format="json")
    body = response.json()
    body.pop("checked_at_ms", None)
    return response.status_code, body


def lane_answers(token: str, orders: list) -> list[dict]:
    async def scenario():
        lane = Lane()
        await lane.open()
        assert (await lane.auth(token))["status"] == 200
        answers = [await lane.check(order, request_id=f"o-{i}") for i, order in enumerate(orders)]
        await lane.leave()
        return answers

    return run(scenario)


# --------------------------------------------------------------------------- the same answers as REST


def test_allowed_and_denied_answers_equal_the_rest_check(trader_a, account_a, account_b, live_a):
    default_profile(max_order_qty=D("0.05"), max_price_deviation=D("0.01"), max_position_notional_warning=D("25000"))
    token = token_for(trader_a)
    orders = [
        order_body(account_a.id),  # allowed (a warning: position notional)
        order_body(account_a.id, quantity="0.0105", price="55000.05"),  # every failure listed
        order_body(account_a.id, type="MARKET", price=None, side="SELL", reduce_only=True, quantity="0.5"),  # exit
        order_body(account_a.id, quantity="0"),  # 400 naming the field
        order_body(account_a.id, symbol="NOPEUSDT"),  # 400 unknown symbol
        {**order_body(account_a.id), "reduceOnly": True},  # 400 unknown key
        order_body(account_b.id),  # another trader's account: 404
        order_body(987654321),  # no such account: the same 404
    ]
    answers = lane_answers(token, orders)
    for i, (order, answer) in enumerate(zip(orders, answers, strict=True)):
        assert answer["type"] == "check" and answer["id"] == f"o-{i}"
        answer["body"].pop("checked_at_ms", None)
        assert (answer["status"], answer["body"]) == rest(order, token), order
    assert answers[0]["body"]["allowed"] is True and answers[0]["body"]["warnings"]
    assert answers[1]["body"]["allowed"] is False
    assert {f["code"] for f in answers[1]["body"]["failures"]} >= {"PRICE_TICK", "QTY_STEP", "PRICE_COLLAR"}
    assert [a["status"] for a in answers[3:]] == [400, 400, 400, 404, 404]


def test_every_check_is_logged_with_the_user_and_the_token_id(trader_a, account_a, live_a):
    token = AccessToken.for_user(trader_a)
    lane_answers(str(token), [order_body(account_a.id), order_body(account_a.id, quantity="5000")])
    assert gate.order_log_flush() == 2
    rows = list(OrderLog.objects.filter(account=account_a).order_by("id"))
    assert [r.decision for r in rows] == [OrderDecision.ALLOWED, OrderDecision.DENIED]
    assert all(r.user == trader_a and r.token_id == token["jti"] and r.details["action"] == "check" for r in rows)


def test_a_viewer_may_check(viewer, account_a, live_a):
    token = token_for(viewer)
    [answer] = lane_answers(token, [order_body(account_a.id)])
    assert answer["status"] == 200 and answer["body"]["allowed"] is True


# --------------------------------------------------------------------------- auth


def test_a_check_before_authenticating_is_refused_and_the_socket_closed(account_a, live_a):
    async def scenario():
        lane = Lane()
        await lane.open()
        answer = await lane.check(order_body(account_a.id), request_id=7)
        return answer, await lane.closed_with()

    answer, code = run(scenario)
    assert answer["type"] == "error" and answer["status"] == 401 and answer["id"] == 7
    assert code == consumers.CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("kind", ["garbage", "refresh", "expired", "tampered"])
def test_a_bad_token_is_refused_as_rest_refuses_it(trader_a, account_a, live_a, kind):
    from datetime import timedelta

    good = token_for(trader_a)
    if kind == "garbage":
        token = "not-a-jwt"
    elif kind == "refresh":
        token = str(RefreshToken.for_user(trader_a))
    elif kind == "expired":
        expired = AccessToken.for_user(trader_a)
        expired.set_exp(lifetime=-timedelta(seconds=1))
        token = str(expired)
    else:
        head, payload, signature = good.split(".")
        token = ".".join((head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))

    async def scenario():
        lane = Lane()
        await lane.open()
        answer = await lane.auth(token)
        return answer, await lane.closed_with()

    answer, code = run(scenario)
    status, body = rest(order_body(account_a.id), token)
    assert (answer["type"], answer["status"], answer["body"]) == ("auth", 401, body) and status == 401
    assert code == consumers.CLOSE_UNAUTHENTICATED


def test_an_outsider_is_refused_with_403(outsider, account_a, live_a):
    async def scenario():
        lane = Lane()
        await lane.open()
        answer = await lane.auth(token_for(outsider))
        return answer, await lane.closed_with()

    answer, code = run(scenario)
    assert answer["status"] == 403 and answer["body"] == {"detail": "You have no role on this desk."}
    assert code == consumers.CLOSE_FORBIDDEN


def test_the_token_may_come_as_a_subprotocol_and_is_not_echoed(trader_a, account_a, live_a):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane(subprotocols=[consumers.SUBPROTOCOL, f"bearer.{token}"])
        accepted = await lane.open()
        ready = await lane.frame()
        answer = await lane.check(order_body(account_a.id))
        await lane.leave()
        return accepted, ready, answer

    accepted, ready, answer = run(scenario)
    assert accepted.get("subprotocol") == consumers.SUBPROTOCOL
    assert token not in json.dumps(accepted)
    assert ready["type"] == "auth" and ready["status"] == 200 and ready["body"]["user"] == trader_a.pk
    assert answer["status"] == 200 and answer["body"]["allowed"] is True


# --------------------------------------------------------------------------- access re-checked


def test_a_deactivated_users_lane_is_closed_at_the_next_check(trader_a, account_a, live_a):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        first = await lane.check(order_body(account_a.id))
        await _deactivate(trader_a)
        second = await lane.check(order_body(account_a.id))
        return first, second, await lane.closed_with()

    first, second, code = run(scenario)
    assert first["status"] == 200
    assert second["status"] == 401 and second["body"]["code"] == "user_inactive"
    assert code == consumers.CLOSE_UNAUTHENTICATED


def test_an_idle_lane_of_a_user_who_lost_their_role_is_closed(trader_a, account_a, live_a, monkeypatch):
    monkeypatch.setattr(consumers, "MIN_RECHECK_S", 0.05)
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        await _set_role(trader_a, Role.NONE)
        notice = await lane.frame()  # nothing sent: the lane's own re-check finds it
        return notice, await lane.closed_with()

    notice, code = run(scenario)
    assert notice["type"] == "error" and notice["status"] == 403
    assert code == consumers.CLOSE_FORBIDDEN


def test_a_trader_removed_from_the_account_gets_the_rest_404(trader_a, account_a, live_a):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        first = await lane.check(order_body(account_a.id))
        await _remove_trader(account_a, trader_a)
        second = await lane.check(order_body(account_a.id))
        await lane.leave()
        return first, second

    first, second = run(scenario)
    assert first["status"] == 200 and second["status"] == 404  # ACCESS_CACHE_S is 0 in these tests


async def _deactivate(user) -> None:
    user.is_active = False
    await gate.off_loop(lambda: user.save(update_fields=["is_active"]))


async def _set_role(user, role) -> None:
    user.role = role
    await gate.off_loop(lambda: user.save(update_fields=["role"]))


async def _remove_trader(account, user) -> None:
    await gate.off_loop(lambda: account.traders.remove(user))


# --------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        '{"id": 1, "order": {"account": 1, "quantity": NaN}}',
        "[" * 40 + "]" * 40,
        "[1, 2]",
        '"a string"',
        '{"id": 1}',
        '{"id": 1, "order": {}, "extra": true}',
        '{"id": [1], "order": {}}',
        '{"id": "' + "x" * 100 + '", "order": {}}',
        '{"type": "subscribe", "id": 3}',
        '{"type": "auth"}',
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_lane_stays_open(trader_a, account_a, live_a, frame):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        await lane.send(frame)
        error = await lane.frame()
        after = await lane.check(order_body(account_a.id), request_id="after")
        await lane.leave()
        return error, after

    error, after = run(scenario)
    assert error["type"] in ("error", "check") and error["status"] == 400, error
    assert after["status"] == 200 and after["id"] == "after"


def test_nesting_past_the_limit_is_a_400_not_a_crash(trader_a, account_a, live_a):
    nested: dict = {}
    for _ in range(40):
        nested = {"a": nested}
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        await lane.send({"id": 1, "order": nested})
        error = await lane.frame()
        await lane.send("[" * 30_000 + "]" * 30_000)
        deeper = await lane.frame()
        await lane.leave()
        return error, deeper

    error, deeper = run(scenario)
    assert error["status"] == 400 and "nested" in error["body"]["detail"]
    assert deeper["status"] == 400 and "nested" in deeper["body"]["detail"]


def test_binary_and_oversized_frames_are_refused_with_an_error_frame(trader_a, account_a, live_a):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        await lane.send_bytes(b'{"id": 1}')
        binary = await lane.frame()
        await lane.send(json.dumps({"id": 2, "order": {"pad": "x" * (consumers.MAX_FRAME + 1)}}))
        big = await lane.frame()
        after = await lane.check(order_body(account_a.id))
        await lane.leave()
        return binary, big, after

    binary, big, after = run(scenario)
    assert binary["type"] == "error" and binary["status"] == 400
    assert big["type"] == "error" and big["status"] == 400
    assert after["status"] == 200


def test_no_authentication_in_time_closes_the_socket(db, monkeypatch):
    monkeypatch.setattr(consumers, "AUTH_TIMEOUT_S", 0.1)

    async def scenario():
        lane = Lane()
        await lane.open()
        notice = await lane.frame()
        return notice, await lane.closed_with()

    notice, code = run(scenario)
    assert notice["status"] == 401 and code == consumers.CLOSE_UNAUTHENTICATED


def test_checks_on_one_socket_are_answered_in_order(trader_a, account_a, live_a):
    token = token_for(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(token)
        for i in range(20):
            await lane.send({"id": i, "order": order_body(account_a.id)})
        ids = [(await lane.frame())["id"] for _ in range(20)]
        await lane.leave()
        return ids

    assert run(scenario) == list(range(20))


def test_a_bot_renews_its_token_on_the_open_socket(trader_a, account_a, live_a):
    first, second = AccessToken.for_user(trader_a), AccessToken.for_user(trader_a)

    async def scenario():
        lane = Lane()
        await lane.open()
        await lane.auth(str(first))
        one = await lane.check(order_body(account_a.id))
        renewed = await lane.auth(str(second))
        two = await lane.check(order_body(account_a.id))
        await lane.leave()
        return one, renewed, two

    one, renewed, two = run(scenario)
    assert one["status"] == renewed["status"] == two["status"] == 200
    gate.order_log_flush()
    assert [r.token_id for r in OrderLog.objects.filter(account=account_a).order_by("id")] == [
        first["jti"],
        second["jti"],
    ]
