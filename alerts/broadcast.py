"""Live push to the desk over the channel layer. Called on commit (alerts: with the row as
saved), so a socket never shows a state that was rolled back.

Group names come from this module alone: the consumer joins with `groups_to_join` and every
sender sends with `groups_of` (alerts) or `risk_changed` (the stream process's figures), so the
two cannot drift. A user who may see every account (risk managers, viewers) joins one group,
ALL_ACCOUNTS, instead of one group per account: the figures of every account that changed then
reach them as one message per flush, not one per account (200 messages per flush queued an
alert behind them, bench/alerts.py), and an account created after they connected is heard too.

Traders get the figures the same way, from SOME_ACCOUNTS, and their socket keeps only the
accounts they may see (`visible_part`). One group_send per flush instead of one per account:
the 200 per-account sends of every flush (two Redis round trips each, most to groups nobody had
joined) kept the publishing thread, Redis and the GIL busy while an alert was on its way.
Alerts and position events still go to each account's own group: nothing of another account
reaches a trader's consumer for those.

Sends over Redis run on an event loop this module keeps for the calling thread, in that
thread. The alert writer calls `alert_changed` from its thread; with `async_to_sync` the send ran
on the stream process's event loop and waited whenever that loop was busy evaluating a frame (up
to ~0.25 s, bench/alerts.py). In the caller's own thread it needs no hop to another thread either
(each hop waits for the GIL). channels_redis keeps a connection pool per event loop, so a thread's
pool lives as long as the thread. The in-memory layer (embedded mode) cannot cross loops: its
queues belong to the loop its consumers read on, so its sends go to that loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

# Sends in flight at once from one thread: each holds a connection of channels_redis's pool for the
# thread's loop, and 200 at once ran it out ("Too many connections", bench/alerts.py).
SEND_CONCURRENCY = 16
SEND_TIMEOUT_S = 5.0  # a send that takes longer raises (on_commit(robust=True) logs it); Redis answers in ms

_local = threading.local()  # .loop, .pid: a forked child (Celery prefork) makes its own
_home: asyncio.AbstractEventLoop | None = None


DESK = "desk"  # desk-wide events (no account, e.g. a silent market-data stream): every desk member
ALL_ACCOUNTS = "acct.all"  # everything about every account: users who may see them all
SOME_ACCOUNTS = "acct.some"  # every account's figures, for users who see some: the consumer filters
RISK_BATCH = 200  # accounts per risk.changed message (figures only: ~60 kB)


def account_group(account_id: int | None) -> str:
    """The group of one exchange account (its traders), or DESK for None."""
    return DESK if account_id is None else f"acct.{int(account_id)}"


def groups_to_join(*, sees_all: bool, account_ids: set[int]) -> list[str]:
    if sees_all:
        return [DESK, ALL_ACCOUNTS]
    figures = [SOME_ACCOUNTS] if account_ids else []
    return [DESK, *figures, *(account_group(i) for i in sorted(account_ids))]


def user_group(user_id: int) -> str:
    """One user's sockets: told when what they may see changes (`access_changed`)."""
    return f"user.{int(user_id)}"


def groups_of(account_id: int | None) -> list[str]:
    """Where an event about one account goes: its own group and ALL_ACCOUNTS (or DESK for None)."""
    return [DESK] if account_id is None else [account_group(account_id), ALL_ACCOUNTS]


def alert_changed(snapshot: dict) -> None:
    """An alert's change, committed: ``snapshot`` is ``Alert.snapshot()`` of the row as saved."""
    event = {"type": "alert.changed", "alert": snapshot}
    _send_all([(group, event) for group in groups_of(snapshot["account_id"])])


def risk_changed(accounts: list[dict]) -> None:
    """The live figures of the accounts that changed (each a dict with ``account_id``), in batches
    of RISK_BATCH to ALL_ACCOUNTS and to SOME_ACCOUNTS, whose sockets pass on only their own
    (`visible_part`). Every message has the shape ``{"type": "risk.changed", "accounts": [...]}``."""
    sends = []
    for start in range(0, len(accounts), RISK_BATCH):
        event = {"type": "risk.changed", "accounts": accounts[start : start + RISK_BATCH]}
        sends += [(ALL_ACCOUNTS, event), (SOME_ACCOUNTS, event)]
    _send_all(sends)


def access_changed(user_ids: set[int]) -> None:
    """Who these users may see changed (accounts assigned or removed, role, active flag): their open
    sockets re-read it at once, instead of streaming a revoked account until they reconnect."""
    _send_all([(user_group(i), {"type": "access.changed"}) for i in sorted(user_ids)])


def visible_part(event: dict, visible: set[int] | None) -> dict | None:
    """The part of a ``risk.changed`` event a socket may pass on: all of it for a user who sees
    every account (``visible`` None), else only the accounts in ``visible``; None when nothing is left."""
    if visible is None:
        return event
    mine = [a for a in event["accounts"] if a.get("account_id") in visible]
    return {**event, "accounts": mine} if mine else None


def set_home_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """The loop this process's consumers run on, for the in-memory layer (embedded mode: the
    stream engine shares the web process's loop). Set by the stream process (its alert writer
    and its sink), from that loop."""
    global _home
    _home = loop


def _send_all(sends: list[tuple[str, dict]]) -> None:
    """Group sends, concurrently, in the caller's thread; waits until all are sent (which keeps
    pushes in commit order and surfaces a failure to the caller, after the others went)."""
    layer = get_channel_layer()
    if layer is None or not sends:
        return

    async def all_of() -> None:
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(group: str, event: dict) -> None:
            async with gate:
                await _group_send(layer, group, event)

        results = await asyncio.gather(*(one(g, event) for g, event in sends), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    if not isinstance(layer, InMemoryChannelLayer):
        _thread_loop().run_until_complete(all_of())
    elif _home is not None and _home.is_running() and not _on(_home):
        asyncio.run_coroutine_threadsafe(all_of(), _home).result()
    else:  # no home loop known (tests, management commands): asgiref's way
        async_to_sync(all_of)()


async def _group_send(layer: Any, group: str, event: dict) -> None:
    await asyncio.wait_for(layer.group_send(group, event), SEND_TIMEOUT_S)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed() or _local.pid != os.getpid():
        loop = _local.loop = asyncio.new_event_loop()
        _local.pid = os.getpid()
    return loop
