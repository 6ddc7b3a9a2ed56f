"""The live desk socket at /ws/desk/, through the real ASGI stack (origin check, session
auth, routing): each user hears exactly the accounts they may see."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import Client

from accounts.models import ExchangeAccount
from alerts import broadcast, services
from alerts.broadcast import account_group
from alerts.models import AlertStatus, Level
from riskdesk.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


class DeskSocket:
    """A WebSocket client speaking ASGI to the application. (channels.testing's
    WebsocketCommunicator would do, but importing channels.testing needs daphne.)"""

    def __init__(self, user=None):
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if user is not None:
            client = Client()
            client.force_login(user)  # a real session row and cookie, as after the admin login
            cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
            headers.append((b"cookie", cookie.encode()))
        scope = {"type": "websocket", "path": "/ws/desk/", "query_string": b"", "headers": headers, "subprotocols": []}
        self.communicator = ApplicationCommunicator(application, scope)

    async def connect(self) -> dict:
        await self.communicator.send_input({"type": "websocket.connect"})
        return await self.communicator.receive_output(3)

    async def receive_json(self) -> dict:
        frame = await self.communicator.receive_output(3)
        assert frame["type"] == "websocket.send", frame
        return json.loads(frame["text"])

    async def close_code(self) -> int:
        frame = await self.communicator.receive_output(3)
        assert frame["type"] == "websocket.close", frame
        return frame["code"]

    async def hears_nothing(self) -> bool:
        return await self.communicator.receive_nothing(0.3)

    async def disconnect(self) -> None:
        await self.communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.communicator.wait(3)


raise_alert = database_sync_to_async(services.alert_raise)


def numbers(account, **kw) -> dict:
    base = {
        "account_id": account.id if account is not None else None,
        "rule": "margin_ratio",
        "subject": "account",
        "level": Level.CRITICAL,
        "reason_code": "MARGIN_RATIO_CRITICAL",
        "value": Decimal("0.93"),
        "limit": Decimal("0.80"),
        "mark_price": Decimal("64123.5"),
        "details": {},
    }
    return {**base, **kw}


def test_a_trader_hears_their_account_and_never_another_traders(trader_a, account_a, account_b):
    socket = DeskSocket(trader_a)

    async def scenario():
        assert (await socket.connect())["type"] == "websocket.accept"
        await raise_alert(**numbers(account_b))
        alert, _ = await raise_alert(**numbers(account_a, message="margin ratio 0.93 above 0.80"))

        message = await socket.receive_json()
        assert message["type"] == "alert.changed"
        assert message["alert"] == {
            "id": alert.pk,
            "account_id": account_a.id,
            "rule": "margin_ratio",
            "subject": "account",
            "level": 30,
            "status": "open",
            "reason_code": "MARGIN_RATIO_CRITICAL",
            "value": "0.93",
            "limit": "0.8",
            "mark_price": "64123.5",
            "message": "margin ratio 0.93 above 0.80",
            "message_code": "",
            "message_params": {},
            "resolution": "",
            "value_at_open": "0.93",
            "peak_value": "0.93",
            "reopen_count": 0,
            "opened_at": message["alert"]["opened_at"],
            "updated_at": message["alert"]["updated_at"],
        }
        assert await socket.hears_nothing()
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("who", ["risk_manager", "viewer"])
def test_risk_managers_and_viewers_hear_every_account(request, who, account_a, account_b):
    socket = DeskSocket(request.getfixturevalue(who))

    async def scenario():
        assert (await socket.connect())["type"] == "websocket.accept"
        await raise_alert(**numbers(account_a))
        await raise_alert(**numbers(account_b))

        heard = {(await socket.receive_json())["alert"]["account_id"] for _ in range(2)}
        assert heard == {account_a.id, account_b.id}
        await socket.disconnect()

    async_to_sync(scenario)()


def test_an_acknowledgement_is_pushed_to_the_trader_too(trader_a, risk_manager, account_a):
    socket = DeskSocket(trader_a)

    async def scenario():
        await socket.connect()
        alert, _ = await raise_alert(**numbers(account_a))
        assert (await socket.receive_json())["alert"]["status"] == "open"

        await database_sync_to_async(services.alert_acknowledge)(alert=alert, by=risk_manager, note="seen")

        assert (await socket.receive_json())["alert"]["status"] == AlertStatus.ACKNOWLEDGED
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_desk_wide_alert_reaches_every_desk_member(trader_a):
    socket = DeskSocket(trader_a)  # trader_a has no account here

    async def scenario():
        await socket.connect()
        await raise_alert(**numbers(None, rule="stream_stale", reason_code="STREAM_STALE"))

        assert (await socket.receive_json())["alert"]["rule"] == "stream_stale"
        await socket.disconnect()

    async_to_sync(scenario)()


def test_risk_and_position_changes_are_forwarded_as_they_come(trader_a, account_a, account_b):
    socket = DeskSocket(trader_a)
    figures = {"account_id": account_a.id, "figures": {"margin_ratio": "0.42"}}
    position = {"type": "position.changed", "account_id": account_a.id, "symbol": "BTCUSDT", "size": "0.5"}

    async def scenario():
        await socket.connect()
        # As the stream process's sink sends them: account_b's figures must not reach trader_a.
        await sync_to_async(broadcast.risk_changed)([{**figures, "account_id": account_b.id}, figures])
        await get_channel_layer().group_send(account_group(account_a.id), position)

        assert await socket.receive_json() == {"type": "risk.changed", "accounts": [figures]}
        assert await socket.receive_json() == position
        assert await socket.hears_nothing()
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_risk_manager_hears_every_account_in_one_message_even_one_created_after_connecting(risk_manager, account_a):
    socket = DeskSocket(risk_manager)

    async def scenario():
        await socket.connect()
        later = await database_sync_to_async(ExchangeAccount.objects.create)(name="opened after the socket")
        accounts = [{"account_id": account_a.id, "figures": {}}, {"account_id": later.id, "figures": {}}]
        await sync_to_async(broadcast.risk_changed)(accounts)

        assert await socket.receive_json() == {"type": "risk.changed", "accounts": accounts}
        assert await socket.hears_nothing()  # not once more per account
        await socket.disconnect()

    async_to_sync(scenario)()


def test_an_anonymous_socket_is_closed_with_4401(db):
    socket = DeskSocket()

    async def scenario():
        assert (await socket.connect())["type"] == "websocket.accept"
        assert await socket.close_code() == 4401

    async_to_sync(scenario)()


def test_an_outsider_is_closed_with_4403(outsider, account_a):
    socket = DeskSocket(outsider)

    async def scenario():
        assert (await socket.connect())["type"] == "websocket.accept"
        assert await socket.close_code() == 4403
        await raise_alert(**numbers(account_a))
        assert await socket.hears_nothing()

    async_to_sync(scenario)()


def test_a_foreign_origin_is_refused_before_any_of_this(trader_a):
    socket = DeskSocket(trader_a)
    socket.communicator.scope["headers"][0] = (b"origin", b"https://evil.example")

    async def scenario():
        assert (await socket.connect())["type"] == "websocket.close"

    async_to_sync(scenario)()
