"""Live state the stream process publishes and the web processes read (cache: Redis in
production, a file cache embedded). Every entry carries the time it describes, so a
reader can judge its freshness and fail closed."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache

FEED_KEY = "live:feed:{name}"
ACCOUNT_KEY = "live:acct:{id}"
MARKS_KEY = "live:marks"
RESYNC_KEY = "live:resync"
TRADING_KEY = "live:trading:{id}"
FILLS_KEY = "live:fills:{id}:{day}"
TTL_S = 24 * 3600
FILLS_TTL_S = 2 * 24 * 3600  # a trading day's count outlives the day by one, then expires


def now_ms() -> int:
    return int(time.time() * 1000)


def feed_set(name: str, status: dict[str, Any], *, ttl_s: float | None = None) -> None:
    """``ttl_s``: the stream engine passes liveness_ttl_s() (issue 15: "connected" must expire with
    the process that said it); others (tests, benches) keep the day-long default."""
    timeout = TTL_S if ttl_s is None else max(1, math.ceil(ttl_s))
    cache.set(FEED_KEY.format(name=name), {**status, "published_ms": now_ms()}, timeout)


def feed_get(name: str = "market") -> dict[str, Any] | None:
    return cache.get(FEED_KEY.format(name=name))


def feed_is_stale(status: dict[str, Any] | None, *, at_ms: int | None = None) -> bool:
    """No status, a stale flag, or no message within STREAM_STALE_AFTER_S: stale."""
    if not status or status.get("stale") or not status.get("last_message_ms"):
        return True
    age_ms = (at_ms or now_ms()) - int(status["last_message_ms"])
    return age_ms > settings.STREAM_STALE_AFTER_S * 1000


def user_feed_is_live(status: dict[str, Any] | None, *, at_ms: int | None = None) -> bool:
    """The one judgement of an account's user stream, for the gate's ACCOUNT_STATE_STALE, the pages
    and the risk API: connected with its state re-synced since; or down (or re-syncing) for less
    than STREAM_STALE_AFTER_S, a blip's grace. No status (its TTL ran out with the process that
    said it, SIGKILL included) is not live. A user stream is quiet until the account changes, so
    silence is not judged; the process's own beat and the status's TTL are."""
    if not status:
        return False
    if status.get("connected") and not status.get("stale"):
        return True
    down = status.get("down_since_ms")
    return down is not None and (at_ms or now_ms()) - int(down) <= settings.STREAM_STALE_AFTER_S * 1000


def accounts_set(states: dict[int, dict[str, Any]]) -> None:
    cache.set_many({ACCOUNT_KEY.format(id=k): v for k, v in states.items()}, TTL_S)


def account_get(account_id: int) -> dict[str, Any] | None:
    return cache.get(ACCOUNT_KEY.format(id=account_id))


def marks_merge(marks: dict[str, list]) -> None:
    current = cache.get(MARKS_KEY) or {}
    current.update(marks)
    cache.set(MARKS_KEY, current, TTL_S)


def marks_get() -> dict[str, list]:
    return cache.get(MARKS_KEY) or {}


def resync_request(account_id: int) -> None:
    pending = set(cache.get(RESYNC_KEY) or [])
    pending.add(account_id)
    cache.set(RESYNC_KEY, sorted(pending), TTL_S)


def resync_take() -> list[int]:
    pending = cache.get(RESYNC_KEY) or []
    if pending:
        cache.delete(RESYNC_KEY)
    return list(pending)


def trading_day(at_ms: int | None = None) -> str:
    """The trading day (settings.TRADING_DAY_TZ) that daily order, cancel and fill caps count in."""
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    return datetime.fromtimestamp((at_ms or now_ms()) / 1000, tz=zone).date().isoformat()


def trading_state_set(account_id: int, state: str, changed_ms: int) -> None:
    """Published on every trading-state change so every web process's order gate sees a halt at
    once, without reading the database per order. No TTL: the newest of this and the database wins."""
    cache.set(TRADING_KEY.format(id=account_id), {"state": state, "changed_ms": changed_ms}, None)


def fills_add(account_id: int, count: int = 1) -> None:
    """Count fills per account and trading day (the gate's max_daily_fills reads it)."""
    key = FILLS_KEY.format(id=account_id, day=trading_day())
    cache.add(key, 0, FILLS_TTL_S)
    try:
        cache.incr(key, count)
    except ValueError:  # expired between add and incr: start again
        cache.set(key, count, FILLS_TTL_S)


# --- liveness (issue 15): what says "alive" expires by itself ----------------------------------

PROCESS_KEY = "live:stream:process"


def liveness_ttl_s() -> float:
    """How long a word of the stream process stays true without being said again. The same limit
    the gate and the pages call a feed stale at, so a dead process leaves every account stale
    within STREAM_STALE_AFTER_S, SIGKILL included."""
    return float(settings.STREAM_STALE_AFTER_S)


def feeds_set_live(statuses: list[dict[str, Any]]) -> None:
    """Every user feed's status again, under the liveness TTL (one round trip)."""
    stamp, timeout = now_ms(), max(1, math.ceil(liveness_ttl_s()))
    cache.set_many({FEED_KEY.format(name=s["name"]): {**s, "published_ms": stamp} for s in statuses}, timeout)


def process_beat(status: dict[str, Any]) -> None:
    """The stream process's heartbeat (written from its event loop every second)."""
    cache.set(PROCESS_KEY, {**status, "heartbeat_ms": now_ms()}, max(1, math.ceil(liveness_ttl_s())))


def process_get() -> dict[str, Any] | None:
    return cache.get(PROCESS_KEY)


def process_withdraw() -> None:
    """A clean stop: the process says at once that it no longer runs."""
    cache.delete(PROCESS_KEY)


def process_is_alive(status: dict[str, Any] | None, *, at_ms: int | None = None) -> bool:
    """The one judgement of the stream process's beat (health, the STREAM_DOWN job): present, and
    beaten within the liveness TTL (the key's own TTL says the same; a cache without expiry
    — the file cache after a clock jump — is judged by the time it carries)."""
    if not status or not status.get("heartbeat_ms"):
        return False
    return (at_ms or now_ms()) - int(status["heartbeat_ms"]) <= liveness_ttl_s() * 1000
