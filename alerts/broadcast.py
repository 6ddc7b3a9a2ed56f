"""Live push to the desk over the channel layer. Called on commit, with ids, so a
socket never shows a state that was rolled back.

Group names come from `account_group` alone: the consumer joins with it and every
sender (alerts here, risk and positions later) sends with it, so the two cannot drift.

Sends over Redis run on this module's own event loop, in a thread of its own. The alert
writer calls `alert_changed` from its thread; with `async_to_sync` the send ran on the stream
process's event loop and waited whenever that loop was busy evaluating a frame (up to ~0.25 s,
bench/alerts.py). channels_redis keeps a connection pool per event loop, so this loop's pool
lives as long as the process. The in-memory layer (embedded mode) cannot cross loops: its
queues belong to the loop its consumers read on, so its sends go to that loop.
"""

from __future__ import annotations

import asyncio
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from alerts.models import Alert

SEND_TIMEOUT_S = 5.0  # a send that takes longer raises (on_commit(robust=True) logs it); Redis answers in ms

_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked child starts its own
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
    group, loop = account_group(account_id), _loop_for(layer)
    if loop is None:
        async_to_sync(layer.group_send)(group, event)
        return
    # Waiting keeps pushes in commit order and surfaces a failed send to the caller.
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, event), loop)
    try:
        future.result(timeout=SEND_TIMEOUT_S)
    finally:
        future.cancel()  # no-op once done; a send that timed out must not go out later, out of order


def _loop_for(layer: object) -> asyncio.AbstractEventLoop | None:
    if not isinstance(layer, InMemoryChannelLayer):
        return _own_loop()
    if _home is not None and _home.is_running() and not _on(_home):
        return _home
    return None  # no home loop known (tests, management commands): asgiref's way, as before


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _own_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-broadcast", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]
