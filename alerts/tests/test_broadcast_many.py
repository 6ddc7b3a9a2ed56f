"""alerts.broadcast.risk_changed: the stream process's live figures for every account that changed,
sent concurrently from the sink's publishing thread on the real channel layer: one message per
account to its traders' group, and the lot in batches to the group of those who see every account."""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings

from alerts import broadcast
from conftest import require_service

ACCOUNTS = 300  # more sends than channels_redis's pool for one loop has connections: they must queue


def test_a_flush_of_hundreds_of_accounts_reaches_every_group():
    if not settings.REDIS_URL:
        require_service("REDIS_URL")
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    ids = list(range(900_001, 900_001 + ACCOUNTS))

    async def join() -> tuple[dict[int, str], str]:
        channels = {}
        for account_id in ids:  # one channel per group: a channel holds at most `capacity` messages
            channels[account_id] = await layer.new_channel()
            await layer.group_add(broadcast.account_group(account_id), channels[account_id])
        everyone = await layer.new_channel()
        await layer.group_add(broadcast.ALL_ACCOUNTS, everyone)
        return channels, everyone

    channels, everyone = asyncio.run(join())
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

    async def receive_all() -> tuple[dict[int, list], list[int]]:
        got = {}
        for account_id, channel in channels.items():
            message = await asyncio.wait_for(layer.receive(channel), 5)
            got[account_id] = [a["account_id"] for a in message["accounts"]]
            await layer.group_discard(broadcast.account_group(account_id), channel)
        batches = []
        for _ in range(-(-ACCOUNTS // broadcast.RISK_BATCH)):
            message = await asyncio.wait_for(layer.receive(everyone), 5)
            batches.append(len(message["accounts"]))
        await layer.group_discard(broadcast.ALL_ACCOUNTS, everyone)
        return got, batches

    per_account, batches = asyncio.run(receive_all())
    assert per_account == {a: [a] for a in ids}  # each trader group hears its own account only
    assert batches == [broadcast.RISK_BATCH, ACCOUNTS - broadcast.RISK_BATCH]
