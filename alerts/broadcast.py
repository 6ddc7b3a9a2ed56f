"""Live push to the desk over the channel layer. Called on commit, with ids, so a
socket never shows a state that was rolled back.

Group names come from `account_group` alone: the consumer joins with it and every
sender (alerts here, risk and positions later) sends with it, so the two cannot drift.

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

from alerts.models import Alert

SEND_TIMEOUT_S = 5.0  # a send that takes longer raises (on_commit(robust=True) logs it); Redis answers in ms

_local = threading.local()  # .loop, .pid: a forked child (Celery prefork) makes its own
_home: asyncio.AbstractEventLoop | None = None


def account_group(account_id: int | None) -> str:
    """The group of one exchange account. Desk-wide events (no account, e.g. a silent
    market-data stream) go to "desk", which every desk member joins."""
    return "desk" if account_id is None else f"acct.{int(account_id)}"


def alert_changed(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:  # deleted since the commit that scheduled this
        return
    _send(alert.account_id, {"type": "alert.changed", "alert": alert.snapshot()})


def set_home_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """The loop this process's consumers run on, for the in-memory layer (embedded mode: the
    stream engine shares the web process's loop). Set by the stream process's alert writer."""
    global _home
    _home = loop


def _send(account_id: int | None, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    group = account_group(account_id)
    # Waiting keeps pushes in commit order and surfaces a failed send to the caller.
    if not isinstance(layer, InMemoryChannelLayer):
        _thread_loop().run_until_complete(_group_send(layer, group, event))
    elif _home is not None and _home.is_running() and not _on(_home):
        asyncio.run_coroutine_threadsafe(_group_send(layer, group, event), _home).result()
    else:  # no home loop known (tests, management commands): asgiref's way, as before
        async_to_sync(layer.group_send)(group, event)


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
