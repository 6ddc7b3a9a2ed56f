"""alerts.broadcast.risk_changed: the stream process's live figures for every account that changed,
sent from the sink's publishing thread on the real channel layer: the lot in batches, once to the
group of those who see every account and once to the group of those who see some (their socket
keeps only theirs, tested in test_desk_consumer.py); nothing to each account's own group."""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings

from alerts import broadcast
from conftest import require_service

ACCOUNTS = 300  # more than one batch


def test_a_flush_of_hundreds_of_accounts_reaches_both_figure_groups_in_batches():
    if not settings.REDIS_URL:
        require_service("REDIS_URL")
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    ids = list(range(900_001, 900_001 + ACCOUNTS))
    groups = [broadcast.ALL_ACCOUNTS, broadcast.SOME_ACCOUNTS, broadcast.account_group(ids[0])]

    async def join() -> dict[str, str]:
        channels = {}
        for group in groups:
            channels[group] = await layer.new_channel()
            await layer.group_add(group, channels[group])
        return channels

    channels = asyncio.run(join())
    failure: list[BaseException] = []

    def publish() -> None:  # as the sink's thread: no event loop until broadcast makes one
        try:
            broadcast.risk_changed([{"account_id": a, "figures": {"equity": str(a)}} for a in ids])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failure.append(exc)

    thread = threading.Thread(target=publish)
    thread.start()
    thread.join(30)
    assert not failure, failure

    async def receive_all() -> tuple[dict[str, list[list[int]]], bool]:
        got: dict[str, list[list[int]]] = {}
        for group in groups[:2]:
            got[group] = []
            for _ in range(-(-ACCOUNTS // broadcast.RISK_BATCH)):
                message = await asyncio.wait_for(layer.receive(channels[group]), 5)
                got[group].append([a["account_id"] for a in message["accounts"]])
        try:
            await asyncio.wait_for(layer.receive(channels[groups[2]]), 0.5)
            account_group_heard = True
        except TimeoutError:
            account_group_heard = False
        for group, channel in channels.items():
            await layer.group_discard(group, channel)
        return got, account_group_heard

    got, account_group_heard = asyncio.run(receive_all())
    expected = [ids[: broadcast.RISK_BATCH], ids[broadcast.RISK_BATCH :]]
    # The batches go out concurrently (broadcast._send_all): their order within a group is not
    # kept, and need not be, since each carries accounts of its own.
    assert {group: sorted(batches) for group, batches in got.items()} == {
        broadcast.ALL_ACCOUNTS: expected,
        broadcast.SOME_ACCOUNTS: expected,
    }
    assert not account_group_heard  # figures never go one account at a time
