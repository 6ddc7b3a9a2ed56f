"""A change of who may see an account reaches the open /ws/desk/ sockets at once (issue 14
item 6): a trader removed from an account stopped hearing its figures only on reconnecting,
20 s or more later. Through the real ASGI stack, as test_desk_consumer.py."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts import services as account_services
from accounts.models import Role
from alerts import broadcast
from alerts.broadcast import account_group
from alerts.tests.test_desk_consumer import DeskSocket

pytestmark = pytest.mark.django_db(transaction=True)

# The bound: a membership change reaches open sockets within 1 s.
WITHIN_S = 1.0


def figures_of(account) -> dict:
    return {"account_id": account.id, "figures": {"margin_ratio": "0.42"}}


async def hears_figures_of(socket: DeskSocket, account) -> bool:
    """Send the account's figures as the stream process does; True when the socket passes them on."""
    await sync_to_async(broadcast.risk_changed)([figures_of(account)])
    if await socket.communicator.receive_nothing(0.2):
        return False
    return (await socket.receive_json())["accounts"] == [figures_of(account)]


async def stops_hearing_within(socket: DeskSocket, account, seconds: float) -> float:
    """Seconds until the socket no longer passes on the account's figures (asserting it happens in time)."""
    started = asyncio.get_running_loop().time()
    while await hears_figures_of(socket, account):
        assert asyncio.get_running_loop().time() - started < seconds, "still streaming the account's figures"
    return asyncio.get_running_loop().time() - started


def test_a_trader_removed_from_an_account_stops_hearing_it_within_a_second(trader_a, account_a):
    socket = DeskSocket(trader_a)

    async def scenario():
        await socket.connect()
        assert await hears_figures_of(socket, account_a)
        # As the admin's change form does: the m2m field's set() without the trader.
        await database_sync_to_async(account_a.traders.set)([])
        await stops_hearing_within(socket, account_a, WITHIN_S)
        # Nor does the account's own group (alerts, positions) reach them any more.
        await get_channel_layer().group_send(account_group(account_a.id), {"type": "position.changed", "x": 1})
        assert await socket.hears_nothing()
        await socket.disconnect()

    async_to_sync(scenario)()


def test_removing_the_account_from_the_traders_side_is_heard_too(trader_a, account_a):
    socket = DeskSocket(trader_a)

    async def scenario():
        await socket.connect()
        assert await hears_figures_of(socket, account_a)
        await database_sync_to_async(trader_a.exchange_accounts.remove)(account_a)
        await stops_hearing_within(socket, account_a, WITHIN_S)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_trader_assigned_an_account_starts_hearing_it(trader_a, account_a, account_b):
    socket = DeskSocket(trader_a)

    async def scenario():
        await socket.connect()
        assert not await hears_figures_of(socket, account_b)
        await database_sync_to_async(account_b.traders.add)(trader_a)
        await asyncio.sleep(0.2)
        assert await hears_figures_of(socket, account_b)
        await get_channel_layer().group_send(account_group(account_b.id), {"type": "position.changed", "x": 1})
        assert (await socket.receive_json())["x"] == 1
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("change", ["deactivated", "role removed"])
def test_a_trader_who_loses_desk_access_is_disconnected_with_4403(trader_a, account_a, change):
    socket = DeskSocket(trader_a)

    def revoke():
        if change == "deactivated":
            trader_a.is_active = False
            trader_a.save()
        else:
            account_services.user_set_role(user=trader_a, role=Role.NONE)

    async def scenario():
        await socket.connect()
        await database_sync_to_async(revoke)()
        assert await socket.close_code() == 4403

    async_to_sync(scenario)()


def test_other_traders_sockets_are_left_alone(trader_a, trader_b, account_a, account_b):
    mine, theirs = DeskSocket(trader_a), DeskSocket(trader_b)

    async def scenario():
        await mine.connect()
        await theirs.connect()
        await database_sync_to_async(account_a.traders.set)([])
        await stops_hearing_within(mine, account_a, WITHIN_S)
        assert await hears_figures_of(theirs, account_b)
        await mine.disconnect()
        await theirs.disconnect()

    async_to_sync(scenario)()
