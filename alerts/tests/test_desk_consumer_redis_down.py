"""The desk socket with Redis down (issue 14, item 1): it never fails with a 500. It opens, tells the
page that live updates are unavailable and closes with 4503 (the page keeps its banner and reconnects
with back-off), and the first socket after Redis returns works (a dead pooled connection is retried)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from alerts.broadcast import ALL_ACCOUNTS
from alerts.consumers import CLOSE_LIVE_UNAVAILABLE
from alerts.tests.test_desk_consumer import DeskSocket
from riskdesk.tests.private_redis import redis_outage  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


async def refused_cleanly(socket: DeskSocket, *, opens: bool = True) -> None:
    if opens:
        frame = await socket.communicator.receive_output(3)
        assert frame["type"] == "websocket.accept", frame
    assert await socket.receive_json() == {"type": "live.unavailable"}
    assert await socket.close_code() == CLOSE_LIVE_UNAVAILABLE
    await socket.communicator.wait(3)  # the consumer ended without an exception


def test_a_socket_opened_while_redis_is_down_is_refused_cleanly(risk_manager, redis_outage):  # noqa: F811
    socket = DeskSocket(risk_manager)
    redis_outage.stop()

    async def scenario() -> None:
        await socket.communicator.send_input({"type": "websocket.connect"})
        await refused_cleanly(socket)

    async_to_sync(scenario)()


def test_an_open_socket_is_told_when_redis_goes_and_the_next_one_works(risk_manager, redis_outage):  # noqa: F811
    def scenario_for(first: DeskSocket, second: DeskSocket, third: DeskSocket):
        async def scenario() -> None:
            assert (await first.connect())["type"] == "websocket.accept"
            redis_outage.stop()
            await refused_cleanly(first, opens=False)  # its channel-layer read failed: told, then closed
            redis_outage.start()
            assert (await second.connect())["type"] == "websocket.accept"
            await second.disconnect()
            # A restart no socket saw: the layer's pooled connections are dead, the next socket still opens.
            layer = get_channel_layer()
            await layer.group_add("probe", "probe!1")  # the loop's pool holds an idle connection
            redis_outage.stop()
            redis_outage.start()
            await layer.group_add("probe", "probe!1")  # the first command after the restart: retried
            assert (await third.connect())["type"] == "websocket.accept"
            await layer.group_send(ALL_ACCOUNTS, {"type": "risk.changed", "accounts": []})
            assert (await third.receive_json())["type"] == "risk.changed"
            await third.disconnect()

        return scenario

    async_to_sync(scenario_for(DeskSocket(risk_manager), DeskSocket(risk_manager), DeskSocket(risk_manager)))()
