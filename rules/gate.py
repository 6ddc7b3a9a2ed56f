"""The order gate's services: gather the state, call rules.checks, log, forward, cancel, kill.

The check itself is ``rules.checks.check_order`` (pure). This module is the Django edge:

* the **catalogue** (symbols and filters, bracket tables, profiles, account mode and trading
  state) is loaded from the database into process memory and refreshed by a background
  thread every ``CATALOG_REFRESH_S``; the check path never queries the database;
* the **store** gathers everything else in one round trip: with Redis, one pipeline holding
  an MGET of the live keys (``live:acct:<id>``, ``live:marks``, ``live:feed:market``,
  ``live:feed:user:<id>``, ``live:trading:<id>``, the day's fill and cancel counts) and one
  EVALSHA of the rate-window script, which atomically counts the account's orders over the
  last second and minute, sets the duplicate fingerprint and reserves the day's order count.
  Without Redis (embedded mode) the live keys come from the Django cache and the windows
  and counters live in this process (embedded runs one web process; see docs/ORDER_GATE.md);
* the **order log**: every check and submission is an OrderLog row, appended to a bounded
  in-process batch that a background thread writes with one multi-row INSERT.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import hashlib
import itertools
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import ExchangeAccount, PositionMode, TradingState, User
from accounts.services import account_set_trading_state
from marketdata import live
from marketdata.exchange import (
    ExchangeAuthError,
    ExchangeError,
    ExchangeRejected,
    OutcomeUnknown,
    RateLimited,
)
from marketdata.models import LeverageBracket, Symbol
from marketdata.services import exchange_for
from positions.margin import Bracket
from positions.models import OrderDecision, OrderLog, OrderSource
from riskdesk.redis_clients import REDIS_DOWN, client_options, gate_async_client
from rules import checks
from rules.approved_orders import approved_add
from rules.checks import (
    AccountView,
    BracketTable,
    Counters,
    Decision,
    GateProfile,
    Order,
    SymbolView,
)
from rules.models import RiskProfile

log = logging.getLogger(__name__)

CATALOG_REFRESH_S = 2.0  # profiles, symbols and brackets change rarely; a halt goes through live:trading
CATALOG_MISS_RELOAD_S = 1.0  # an unknown account reloads the catalogue at most this often
BACKGROUND = True  # tests switch the background threads off and flush/reload explicitly
ORDER_LOG_FLUSH_S = 0.2
ORDER_LOG_BATCH = 500
ORDER_LOG_BOUND = 50_000  # past this many pending rows the request thread writes them itself
RECONCILE_WAITS_S = (0.25, 0.75, 1.5)  # an order in doubt may take a moment to show up on the exchange
DAY_TTL_S = 2 * 24 * 3600
RATE_WINDOW_MS = 60_000


# =========================================================================== catalogue


@dataclass(frozen=True)
class AccountMeta:
    id: int
    trading_state: str
    changed_ms: int
    hedge: bool
    profile_id: int | None


@dataclass
class Catalog:
    symbols: dict[str, SymbolView]
    accounts: dict[int, AccountMeta]
    profiles: dict[int, GateProfile]
    default_profile_id: int | None
    tables: dict[int, dict[str, BracketTable]]  # account -> symbol -> the account's own table
    loaded_at: float = field(default_factory=time.monotonic)

    def profile_for(self, meta: AccountMeta) -> GateProfile | None:
        profile_id = meta.profile_id if meta.profile_id is not None else self.default_profile_id
        return self.profiles.get(profile_id) if profile_id is not None else None


def _brackets(rows: Iterable[LeverageBracket]) -> dict[tuple[int, int | None], list[Bracket]]:
    tables: dict[tuple[int, int | None], list[Bracket]] = collections.defaultdict(list)
    for r in rows:
        tables[(r.symbol_id, r.account_id)].append(
            Bracket(
                floor=r.notional_floor,
                cap=r.notional_cap,
                mmr=r.maint_margin_ratio,
                cum=r.cum,
                max_leverage=r.initial_leverage,
            )
        )
    return tables


def catalog_load() -> Catalog:
    """Everything the gate needs from the database, in five queries."""
    tables = _brackets(LeverageBracket.objects.order_by("symbol_id", "account_id", "bracket"))
    symbols, names = {}, {}
    for s in Symbol.objects.all():
        names[s.id] = s.name
        symbols[s.name] = checks.symbol_view(
            name=s.name,
            status=s.status,
            tick_size=s.tick_size,
            step_size=s.step_size,
            min_qty=s.min_qty,
            max_qty=s.max_qty,
            market_max_qty=s.market_max_qty,
            min_notional=s.min_notional,
            brackets=tables.get((s.id, None)),
            margin_asset=s.margin_asset,
        )
    overrides: dict[int, dict[str, BracketTable]] = collections.defaultdict(dict)
    for (symbol_id, account_id), table in tables.items():
        if account_id is not None and symbol_id in names:
            overrides[account_id][names[symbol_id]] = BracketTable(table)
    accounts = {
        a.id: AccountMeta(
            a.id,
            a.trading_state,
            _ms(a.trading_state_changed_at),
            a.position_mode == PositionMode.HEDGE,
            a.risk_profile_id,
        )
        for a in ExchangeAccount.objects.only(
            "id", "trading_state", "trading_state_changed_at", "position_mode", "risk_profile_id"
        )
    }
    profiles, default = {}, None
    for p in RiskProfile.objects.prefetch_related("symbol_limits"):
        profiles[p.id] = checks.compile_profile(p.limit_values())
        default = p.id if p.is_default else default
    return Catalog(symbols, accounts, profiles, default, dict(overrides))


def _ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000) if moment is not None else 0


class _CatalogHolder:
    """The current catalogue; swapped whole, so readers never see a half-loaded one."""

    def __init__(self) -> None:
        self.current: Catalog | None = None
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.last_miss = 0.0

    def get(self) -> Catalog:
        current = self.current
        if current is None:
            current = self.reload()
        if BACKGROUND and self.thread is None:
            self._start()
        return current

    def reload(self) -> Catalog:
        with self.lock:
            self.current = catalog_load()
            return self.current

    def reload_on_miss(self) -> Catalog:
        """A new account or symbol: reload now, but not more often than CATALOG_MISS_RELOAD_S."""
        if time.monotonic() - self.last_miss < CATALOG_MISS_RELOAD_S and self.current is not None:
            return self.current
        current = self.reload()
        # Stamped after the load: a load refused on the event loop (SynchronousOnlyOperation, see
        # rules.api_orders' fast path) must not stop the retry in a thread from loading.
        self.last_miss = time.monotonic()
        return current

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="gate-catalog", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(CATALOG_REFRESH_S)
            if not BACKGROUND:  # switched off (tests): stop; the next get() starts a new thread
                self.thread = None
                return
            try:
                _thread_connection_check()
                self.reload()
            except Exception:  # a failed refresh keeps the previous catalogue; try again next time
                log.exception("order gate: catalogue refresh failed")


CATALOG = _CatalogHolder()


def catalog() -> Catalog:
    return CATALOG.get()


def catalog_reload() -> Catalog:
    return CATALOG.reload()


def account_meta(account_id: int) -> AccountMeta | None:
    meta = catalog().accounts.get(account_id)
    if meta is None:
        meta = CATALOG.reload_on_miss().accounts.get(account_id)
    return meta


def symbol_known(name: str) -> bool:
    return name in catalog().symbols or name in CATALOG.reload_on_miss().symbols


# =========================================================================== store


@dataclass
class Gathered:
    """What one round trip brought back, raw enough to cache the compiled forms by identity."""

    now_ms: int
    state_raw: Any
    marks_raw: Any
    feed: dict | None
    user_feed: dict | None
    trading: dict | None
    counters: Counters
    reservation: tuple | None = None


def _day_key(account_id: int, day: str, what: str) -> str:
    return f"gate:day:{account_id}:{day}:{what}"


# KEYS: rate zset, duplicate key (or ""), the day's order counter, then the live keys to read.
# ARGV: member, limit/s (-1 none), limit/min (-1 none), duplicate window ms (0 none), reserve 1/0, day ttl s.
# Redis runs a script alone, so count-then-add is atomic across every web process. An order over a
# rate limit is not added (a bot hammering at twice the rate is not locked out forever). The live
# keys ride along (MGET) so a check is one command, not a pipeline of two.
RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lim_s, lim_m = tonumber(ARGV[2]), tonumber(ARGV[3])
local dup_ms, reserve = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
local n_m = redis.call('ZCARD', KEYS[1]) + 1
local n_s = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 1000), '+inf') + 1
local dup = 0
if dup_ms > 0 then
  if reserve == 1 then
    if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', dup_ms) then dup = 1 end
  else
    dup = redis.call('EXISTS', KEYS[2])
  end
end
local daily
if reserve == 1 then
  if (lim_s < 0 or n_s <= lim_s) and (lim_m < 0 or n_m <= lim_m) then
    redis.call('ZADD', KEYS[1], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], 61000)
  end
  daily = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
else
  daily = tonumber(redis.call('GET', KEYS[3]) or '0') + 1
end
return {n_s, n_m, dup, daily, now, redis.call('MGET', unpack(KEYS, 4))}
"""

_member_seq = itertools.count()


def _limit_arg(value: Any) -> int:
    return -1 if value is None else int(value)


class RedisStore:
    """Live state and counters in Redis: one command per check (the rate script reads the live
    keys too), so neither client builds or parses a pipeline."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.redis = redis.Redis.from_url(url, **client_options(asyncio=False))
        self.serializer_loads = _cache_loads
        # EVALSHA names the script by its SHA1, computed here rather than by SCRIPT LOAD: a store
        # built while Redis is down still works (denying) and loads the script on its first NOSCRIPT.
        self.sha = hashlib.sha1(RATE_SCRIPT.encode()).hexdigest()
        self._aredis: Any = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._keys: dict[tuple[int, str], tuple[str, ...]] = {}

    def gather(self, *, account_id: int, order: Order | None, profile: GateProfile | None, reserve: bool) -> Gathered:
        script_args, command = self._command(account_id, order, profile, reserve)
        try:
            reply = self.redis.execute_command(*command)
        except Exception as exc:
            self._script_lost(exc)
            reply = self.redis.execute_command(*command)
        return self._parse(reply, script_args)

    async def agather(
        self, *, account_id: int, order: Order | None, profile: GateProfile | None, reserve: bool
    ) -> Gathered:
        """gather() on redis.asyncio: the same command and parsing, for the event loop (no thread)."""
        script_args, command = self._command(account_id, order, profile, reserve)
        try:
            reply = await self._async_redis().execute_command(*command)
        except Exception as exc:
            self._script_lost(exc)
            reply = await self._async_redis().execute_command(*command)
        return self._parse(reply, script_args)

    def _async_redis(self) -> Any:
        # An asyncio connection belongs to the loop that opened it: one client per loop (uvicorn
        # runs one; tests start a loop per test).
        loop = asyncio.get_running_loop()
        if self._aloop is not loop:
            # The lean pipelined client where it applies (riskdesk.redis_clients, issue 19), else
            # redis.asyncio's: either raises redis-py's exceptions, so REDIS_DOWN and NOSCRIPT hold.
            self._aredis = gate_async_client(self.url)
            self._aloop = loop
        return self._aredis

    async def aclose(self) -> None:
        if self._aredis is not None and self._aloop is asyncio.get_running_loop():
            await self._aredis.aclose()
        self._aredis = self._aloop = None

    def _command(
        self, account_id: int, order: Order | None, profile: GateProfile | None, reserve: bool
    ) -> tuple[list | None, tuple]:
        """(the script's arguments or None, the one command): MGET of the live keys, or with an
        order the rate script over its three keys followed by the live keys, which it MGETs."""
        day = live.trading_day()
        keys = self._keys.get((account_id, day))
        if keys is None:  # the same seven names for every check of an account on a day
            if len(self._keys) > 10_000:
                self._keys.clear()
            keys = self._keys[(account_id, day)] = (
                cache.make_key(live.ACCOUNT_KEY.format(id=account_id)),
                cache.make_key(live.MARKS_KEY),
                cache.make_key(live.FEED_KEY.format(name="market")),
                cache.make_key(live.FEED_KEY.format(name=f"user:{account_id}")),
                cache.make_key(live.TRADING_KEY.format(id=account_id)),
                cache.make_key(live.FILLS_KEY.format(id=account_id, day=day)),
                _day_key(account_id, day, "cancels"),
            )
        if order is None:
            return None, ("MGET", *keys)
        args = self._script_args(account_id, day, order, profile, reserve)
        return args, ("EVALSHA", self.sha, 3 + len(keys), *args[:3], *keys, *args[3:])

    def _script_args(self, account_id: int, day: str, order: Order, profile: GateProfile | None, reserve: bool) -> list:
        p = profile
        dup_ms = int(p.dup_window_s) * 1000 if p is not None and p.dup_window_s else 0
        dup_key = f"gate:dup:{account_id}:{order.fingerprint()}" if dup_ms else "gate:dup:none"
        member = f"{os.getpid()}:{next(_member_seq)}:{time.time_ns()}"
        return [
            f"gate:rate:{account_id}",
            dup_key,
            _day_key(account_id, day, "orders"),
            member,
            _limit_arg(p.rate_s if p else None),
            _limit_arg(p.rate_m if p else None),
            dup_ms,
            1 if reserve else 0,
            DAY_TTL_S,
        ]

    def _script_lost(self, error: Exception) -> None:
        """Reload the rate script if Redis lost it (restarted or flushed); any other error is raised."""
        import redis

        if not isinstance(error, redis.exceptions.NoScriptError):
            raise error
        self.sha = self.redis.script_load(RATE_SCRIPT)  # the same text: the same sha the command names

    def _parse(self, reply: list, args: list | None) -> Gathered:
        if args is None:
            values, counts = reply, None
        else:
            *counts, values = reply
        state, marks, feed, user_feed, trading, fills, cancels = values
        counters = Counters(daily_fills=_int(fills), daily_cancels=_int(cancels))
        reservation = None
        if counts is not None:
            n_s, n_m, dup, daily, _now = counts
            counters.rate_1s, counters.rate_1m, counters.duplicate, counters.daily_orders = n_s, n_m, dup == 1, daily
            if args[7]:  # reserved: what a denial gives back
                reservation = (args[1] if args[6] and dup != 1 else None, args[2])
        loads = self.serializer_loads
        return Gathered(
            now_ms=live.now_ms(),
            state_raw=state,
            marks_raw=marks,
            feed=loads(feed),
            user_feed=loads(user_feed),
            trading=loads(trading),
            counters=counters,
            reservation=reservation,
        )

    def release(self, reservation: tuple) -> None:
        """A denied order gives back its duplicate fingerprint and its place in the day's count."""
        dup_key, day_key = reservation
        pipe = self.redis.pipeline(transaction=False)
        if dup_key:
            pipe.delete(dup_key)
        pipe.decr(day_key)
        pipe.execute()

    def cancel_counted(self, account_id: int) -> int:
        key = _day_key(account_id, live.trading_day(), "cancels")
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, DAY_TTL_S)
        return int(pipe.execute()[0])

    def decode_state(self, raw: Any) -> Any:
        return self.serializer_loads(raw)


def _cache_loads(raw: bytes | None) -> Any:
    """A value the Django Redis cache wrote: ints raw, everything else pickled (RedisSerializer)."""
    if raw is None:
        return None
    if raw[:1] == b"\x80":  # a pickle (protocol 2 and later) begins so, a decimal integer never
        return pickle.loads(raw)
    try:
        return int(raw)
    except ValueError:
        return pickle.loads(raw)


def _int(raw: Any) -> int:
    return int(raw) if raw is not None else 0


class LocalStore:
    """Embedded mode (no Redis): live keys from the Django cache (a file cache the stream process
    also writes), rate windows, duplicates and day counters in this process. Correct for the one
    web process embedded mode runs; with several processes each would count alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self.duplicates: dict[tuple[int, str], float] = {}
        self.days: collections.Counter = collections.Counter()

    def gather(self, *, account_id: int, order: Order | None, profile: GateProfile | None, reserve: bool) -> Gathered:
        day = live.trading_day()
        names = {
            "state": live.ACCOUNT_KEY.format(id=account_id),
            "marks": live.MARKS_KEY,
            "feed": live.FEED_KEY.format(name="market"),
            "user_feed": live.FEED_KEY.format(name=f"user:{account_id}"),
            "trading": live.TRADING_KEY.format(id=account_id),
            "fills": live.FILLS_KEY.format(id=account_id, day=day),
        }
        found = cache.get_many(list(names.values()))
        got = {k: found.get(v) for k, v in names.items()}
        counters = Counters(daily_fills=int(got["fills"] or 0), daily_cancels=self.days[(account_id, day, "cancels")])
        reservation = None
        if order is not None:
            with self.lock:
                reservation = self._count(account_id, day, order, profile, reserve, counters)
        return Gathered(
            now_ms=live.now_ms(),
            state_raw=got["state"],
            marks_raw=got["marks"],
            feed=got["feed"],
            user_feed=got["user_feed"],
            trading=got["trading"],
            counters=counters,
            reservation=reservation,
        )

    def _count(
        self, account_id: int, day: str, order: Order, p: GateProfile | None, reserve: bool, counters: Counters
    ) -> tuple | None:
        now = time.monotonic() * 1000
        window = self.windows[account_id]
        while window and window[0] <= now - RATE_WINDOW_MS:
            window.popleft()
        counters.rate_1m = len(window) + 1
        counters.rate_1s = sum(1 for t in window if t > now - 1000) + 1
        dup_key = (account_id, order.fingerprint())
        expires = self.duplicates.get(dup_key, 0.0)
        counters.duplicate = expires > now
        day_key = (account_id, day, "orders")
        counters.daily_orders = self.days[day_key] + 1
        if not reserve:
            return None
        lim_s, lim_m = (p.rate_s, p.rate_m) if p is not None else (None, None)
        if (lim_s is None or counters.rate_1s <= lim_s) and (lim_m is None or counters.rate_1m <= lim_m):
            window.append(now)
        set_dup = p is not None and p.dup_window_s and not counters.duplicate
        if set_dup:
            self.duplicates[dup_key] = now + int(p.dup_window_s) * 1000
        self.days[day_key] += 1
        return (dup_key if set_dup else None, day_key)

    async def agather(
        self, *, account_id: int, order: Order | None, profile: GateProfile | None, reserve: bool
    ) -> Gathered:
        # Embedded mode: a file cache read and a few dict operations under a lock, as the sync view
        # does today; not worth a thread hop.
        return self.gather(account_id=account_id, order=order, profile=profile, reserve=reserve)

    async def aclose(self) -> None:
        return None

    def release(self, reservation: tuple) -> None:
        dup_key, day_key = reservation
        with self.lock:
            if dup_key is not None:
                self.duplicates.pop(dup_key, None)
            self.days[day_key] -= 1

    def cancel_counted(self, account_id: int) -> int:
        with self.lock:
            key = (account_id, live.trading_day(), "cancels")
            self.days[key] += 1
            return self.days[key]

    def decode_state(self, raw: Any) -> Any:
        return raw


_STORE: RedisStore | LocalStore | None = None
_STORE_LOCK = threading.Lock()


def store() -> RedisStore | LocalStore:
    global _STORE
    if _STORE is None:
        with _STORE_LOCK:
            if _STORE is None:
                _STORE = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else LocalStore()
    return _STORE


async def store_aclose() -> None:
    """Close the event loop's Redis connections (the ASGI lifespan's shutdown)."""
    if _STORE is not None:
        await _STORE.aclose()


def store_reset() -> None:
    """Forget the store (tests switch between Redis and embedded settings)."""
    global _STORE
    _STORE = None
    _COMPILED.clear()


# =========================================================================== compiled live state

# Compiled forms of the last raw values seen, so an unchanged blob is parsed once, not per order.
_COMPILED: dict[Any, tuple[Any, Any]] = {}


def _compiled(key: Any, raw: Any, build: Callable[[], Any]) -> Any:
    cached = _COMPILED.get(key)
    if cached is not None and cached[0] is not None and cached[0] == raw:
        return cached[1]
    value = build()
    _COMPILED[key] = (raw, value)
    return value


def _marks(s: RedisStore | LocalStore, raw: Any) -> dict:
    if raw is None:
        return {}
    return _compiled("marks", raw, lambda: checks.compile_marks(s.decode_state(raw) or {}))


def _trading_state(meta: AccountMeta, published: dict | None) -> str:
    """The newer of the catalogue's state and the one published at the change (live:trading)."""
    if published and int(published.get("changed_ms") or 0) >= meta.changed_ms:
        return str(published.get("state") or meta.trading_state)
    return meta.trading_state


def _account_view(s: RedisStore | LocalStore, cat: Catalog, meta: AccountMeta, g: Gathered) -> AccountView:
    state = _trading_state(meta, g.trading)
    connected = live.user_feed_is_live(g.user_feed, at_ms=g.now_ms)
    tables = cat.tables.get(meta.id)
    # One entry per account; the compared "raw" also holds what the view mixes in from elsewhere.
    raw = (g.state_raw, state, meta.hedge, connected, id(tables))

    def build() -> AccountView:
        return checks.account_view(
            account_id=meta.id,
            trading_state=state,
            hedge=meta.hedge,
            state=s.decode_state(g.state_raw),
            user_feed_connected=connected,
            tables=tables,
        )

    if g.state_raw is None:
        return build()
    return _compiled(("acct", meta.id), raw, build)


def _market(cat: Catalog, s: RedisStore | LocalStore, g: Gathered) -> checks.MarketState:
    feed = g.feed
    last = None
    if feed and not feed.get("stale") and feed.get("last_message_ms"):
        last = int(feed["last_message_ms"])
    return checks.market_state(
        symbols=cat.symbols,
        marks=_marks(s, g.marks_raw),
        feed_last_ms=last,
        now_ms=g.now_ms,
        stale_ms=int(settings.STREAM_STALE_AFTER_S * 1000),
    )


# =========================================================================== order log


class OrderLogBuffer:
    """Rows wait here for a background thread's INSERT (the check never waits on the
    database). Nothing is dropped: a failed write keeps its rows for the next attempt, and past
    ORDER_LOG_BOUND pending rows the caller writes them itself (back-pressure, not loss). A
    process killed with -9 loses at most the last ORDER_LOG_FLUSH_S of rows; exit flushes."""

    def __init__(self) -> None:
        self.rows: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.written = 0

    def add(self, row: dict[str, Any]) -> None:
        """``row``: OrderLog field values; the model instances are built by the writer, off the check path."""
        self.rows.append(row)
        if len(self.rows) > ORDER_LOG_BOUND:
            if not _on_event_loop():  # on the loop the ORM refuses; check_run_async waited for the write first
                self.flush()
        elif BACKGROUND:
            if self.thread is None:
                self._start()
            if len(self.rows) >= ORDER_LOG_BATCH:
                self.wake.set()

    def flush(self) -> int:
        """Write every pending row now; returns how many were written."""
        written = 0
        with self.lock:
            while self.rows:
                batch = [self.rows.popleft() for _ in range(min(ORDER_LOG_BATCH, len(self.rows)))]
                try:
                    _order_log_insert(batch)
                except Exception:
                    self.rows.extendleft(reversed(batch))  # keep them, in order, for the next attempt
                    raise
                written += len(batch)
        self.written += written
        return written

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="gate-order-log", daemon=True)
                self.thread.start()
                atexit.register(self._flush_quietly)

    def _run(self) -> None:
        while True:
            self.wake.wait(ORDER_LOG_FLUSH_S)
            self.wake.clear()
            if not BACKGROUND:  # switched off (tests flush by hand): stop; the next add() starts one
                self.thread = None
                return
            if self.rows:
                _thread_connection_check()
                self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("order gate: writing the order log failed; the rows are kept and retried")


ORDER_LOG = OrderLogBuffer()


def _thread_connection_check() -> None:
    """Before a background thread's round of database work (the order log writer, the catalogue).
    The thread keeps its connection across rounds whatever CONN_MAX_AGE says: that age is for
    requests, and a new MariaDB connection five times a second cost the web worker more CPU than
    the rows it wrote. One that failed and no longer answers (a restart, wait_timeout) is closed
    as Django closes it after a request, so the round opens a fresh one (the rows wait)."""
    connection.close_at = None  # this thread's connection: no age limit
    if connection.errors_occurred:  # otherwise not even a ping (CONN_HEALTH_CHECKS pings per round)
        connection.close_if_unusable_or_obsolete()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def off_loop(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` where the ORM may run: in asgiref's thread. Connections past CONN_MAX_AGE (or
    broken) are closed around it as Django closes them around a request, since no request ends
    there to do it; never inside a transaction (a test's), which closing would break."""

    def call() -> Any:
        hygiene = not connection.in_atomic_block
        if hygiene:
            close_old_connections()
        try:
            return fn(*args)
        finally:
            if hygiene:
                close_old_connections()

    return await sync_to_async(call)()


class _OrderLogInsert:
    """OrderLog rows as one multi-row INSERT: bulk_create built a model instance per row and ran
    each field's pre_save and SQL compilation (~195 µs a row in the web worker, plus the three
    round trips of its transaction). The columns, defaults and value conversions are the model's
    own (``_meta``: each field's ``get_default`` and ``get_db_prep_save``), so the row in the table
    is what bulk_create wrote; only the SQL is assembled here."""

    def __init__(self) -> None:
        self.fields = [f for f in OrderLog._meta.concrete_fields if not f.primary_key]
        auto = ("auto_now", "auto_now_add")  # DateTimeField's pre_save: the write time
        self.stamped = [f.attname for f in self.fields if any(getattr(f, a, False) for a in auto)]

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        # The wrapper, not the `connection` proxy each conversion would go through (the router, as bulk_create).
        db = connections[router.db_for_write(OrderLog)]
        fields, now = self.fields, timezone.now()  # created_at: the write time, as auto_now_add gives it
        stamp = {f.attname: f.get_db_prep_save(now, db) for f in fields if f.attname in self.stamped}  # once a batch
        params: list = []
        for row in rows:
            row = {**row, "details": plain(row.get("details", {}))}
            for f in fields:
                name = f.attname
                if name in stamp:
                    params.append(stamp[name])
                else:
                    params.append(f.get_db_prep_save(row[name] if name in row else f.get_default(), db))
        # Rows per statement as bulk_create batches them (SQLite caps the parameters); one statement
        # (MariaDB: the whole batch) needs no transaction of its own, several share one.
        size = max(1, db.ops.bulk_batch_size(fields, rows))
        if len(rows) <= size:
            self._insert(db, len(rows), params)
            return
        with transaction.atomic(using=db.alias, savepoint=False):
            width = len(fields)
            for start in range(0, len(rows), size):
                chunk = params[start * width : (start + size) * width]
                self._insert(db, len(chunk) // width, chunk)

    def _insert(self, db: Any, n: int, params: list) -> None:
        quote = db.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        one = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        sql = f"INSERT INTO {quote(OrderLog._meta.db_table)} ({columns}) VALUES {', '.join([one] * n)}"
        with db.cursor() as cursor:
            cursor.execute(sql, params)


_order_log_insert = _OrderLogInsert()


def order_log_flush() -> int:
    return ORDER_LOG.flush()


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Actor:
    """Who acts and how: the user, the JWT's jti and where the order came from."""

    user: User | None
    token_id: str = ""
    source: str = OrderSource.API

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


def _log_order(
    *,
    account_id: int,
    actor: Actor,
    order: Order,
    decision: str,
    details: dict,
    codes: list[str] | None = None,
    exchange: dict | None = None,
) -> None:
    exchange = exchange or {}
    ORDER_LOG.add(
        dict(
            account_id=account_id,
            source=actor.source,
            user_id=actor.user_id,
            token_id=actor.token_id[:64],
            symbol=order.symbol,
            side=order.side,
            position_side=order.position_side,
            order_type=order.type,
            quantity=order.qty,
            price=order.price,
            reduce_only=order.reduce_only,
            client_order_id=order.client_order_id[:64],
            decision=decision,
            reason_codes=codes or [],
            details=details,
            exchange_order_id=str(exchange.get("orderId") or ""),
            exchange_status=str(exchange.get("status") or "")[:24],
        )
    )


# =========================================================================== check


class GateError(Exception):
    """The request names something the gate does not know (the API answers 400)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


@dataclass
class CheckResult:
    account_id: int
    order: Order
    decision: Decision
    counters: Counters
    checked_at_ms: int
    reservation: tuple | None = None
    _body: dict | None = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        """The decision as the API renders it (built once: the response and the log share it)."""
        if self._body is None:
            self._body = self._render()
        return self._body

    def _render(self) -> dict[str, Any]:
        d = self.decision
        return {
            "account": self.account_id,
            "allowed": d.allowed,
            "decision": "allowed" if d.allowed else "denied",
            "exit": d.is_exit,
            "reduces": d.reduces,
            "failures": _failure_rows(d.failures),
            "warnings": checks.failure_rows(d.warnings),
            "projected": checks.projection_row(d.projection),
            "checked_at_ms": self.checked_at_ms,
        }

    def log_details(self) -> dict[str, Any]:
        c = self.counters
        return {
            **{k: v for k, v in self.body().items() if k not in ("account", "allowed", "decision")},
            "counters": {
                "rate_1s": c.rate_1s,
                "rate_1m": c.rate_1m,
                "duplicate": c.duplicate,
                "daily_orders": c.daily_orders,
                "daily_cancels": c.daily_cancels,
                "daily_fills": c.daily_fills,
            },
        }


# The gate's own reason code, beside rules.checks' codes: it decides before any check runs, so no
# profile can switch it off. Without Redis the gate has neither the live state nor the rate
# windows, duplicate fingerprints and day counts, so it refuses every new order, exits too: a bot
# looping on exits with no rate limit could get the key banned by Binance (HTTP 418), and the kill
# switch needs that key. Cancels and the kill switch (REST) remain the way out.
LIVE_STATE_UNAVAILABLE = "LIVE_STATE_UNAVAILABLE"


def _gate_message(code: str) -> str:
    # gettext at render time: the request's language (the API's LocaleMiddleware).
    return {
        LIVE_STATE_UNAVAILABLE: gettext(
            "The live state store (Redis) is unavailable: new orders are refused until it recovers. "
            "Cancels and the kill switch still work."
        ),
    }[code]


def _failure_rows(rows: Iterable[tuple]) -> list[dict[str, Any]]:
    rows = list(rows)
    if rows and rows[0][0] == LIVE_STATE_UNAVAILABLE:  # then the only one (_unavailable)
        message = _gate_message(LIVE_STATE_UNAVAILABLE)
        return [{"code": LIVE_STATE_UNAVAILABLE, "message": message, "value": None, "limit": None}]
    out = checks.failure_rows(rows)
    for row in out:
        if row["code"] == checks.ASSET_ABOVE_CAP:
            row["message"] = _asset_cap_message(row)
    return out


def _asset_cap_message(row: dict[str, Any]) -> str:
    # gettext at render time, naming the asset and the figures (rules.checks' MESSAGES are plain
    # English: that module has no Django).
    if row["value"] is None:
        return gettext(
            "The live state does not give the %(asset)s wallet balance, so the profile's cap for %(asset)s "
            "cannot be checked: orders adding exposure on it are refused."
        ) % {"asset": row.get("asset")}
    return gettext(
        "The %(asset)s wallet balance after the order (%(value)s) would be above the profile's cap for "
        "%(asset)s (%(limit)s): orders adding exposure on it are refused until it is back under the cap."
    ) % {"asset": row.get("asset"), "value": row["value"], "limit": row["limit"]}


def _unavailable(plan: CheckPlan, error: Exception) -> CheckResult:
    """The decision when Redis did not answer: denied, with nothing counted or reserved."""
    log.warning("order gate: Redis is unavailable, refusing account %s's order (%s)", plan.meta.id, error)
    decision = checks.Decision((False, [(LIVE_STATE_UNAVAILABLE, None, None)], (), None, False, False))
    return CheckResult(plan.meta.id, plan.order, decision, checks.Counters(), live.now_ms())


def meta_of(account: ExchangeAccount) -> AccountMeta:
    """The account row the caller just read (for access) says the mode, profile and state; the
    catalogue is not consulted for them, so they are never older than that read."""
    return AccountMeta(
        account.id,
        account.trading_state,
        _ms(account.trading_state_changed_at),
        account.position_mode == PositionMode.HEDGE,
        account.risk_profile_id,
    )


def _profile(cat: Catalog, meta: AccountMeta) -> tuple[Catalog, GateProfile | None]:
    if meta.profile_id is not None and meta.profile_id not in cat.profiles:
        cat = CATALOG.reload_on_miss()  # a profile created in the last seconds
    return cat, cat.profile_for(meta)


@dataclass(frozen=True)
class CheckPlan:
    """What a check knows before its one round trip. Building it may read the database (a
    catalogue reload on a miss); running it never does."""

    meta: AccountMeta
    catalog: Catalog
    profile: GateProfile | None
    order: Order
    reserve: bool

    def gather_args(self) -> dict[str, Any]:
        return {"account_id": self.meta.id, "order": self.order, "profile": self.profile, "reserve": self.reserve}


def check_plan(*, account: ExchangeAccount, order: Order, reserve: bool = False) -> CheckPlan:
    if not symbol_known(order.symbol):
        raise GateError("symbol", "Unknown symbol.")
    meta = meta_of(account)
    cat, profile = _profile(catalog(), meta)
    return CheckPlan(meta, cat, profile, order, reserve)


def _checked(plan: CheckPlan, s: RedisStore | LocalStore, g: Gathered) -> CheckResult:
    view = _account_view(s, plan.catalog, plan.meta, g)
    decision = checks.check_order(plan.order, view, _market(plan.catalog, s, g), plan.profile, g.counters)
    return CheckResult(plan.meta.id, plan.order, decision, g.counters, g.now_ms, g.reservation)


def _gathered_check(plan: CheckPlan) -> CheckResult:
    try:
        s = store()
        return _checked(plan, s, s.gather(**plan.gather_args()))
    except REDIS_DOWN as exc:
        return _unavailable(plan, exc)


def _run_check(*, account: ExchangeAccount, order: Order, reserve: bool) -> CheckResult:
    return _gathered_check(check_plan(account=account, order=order, reserve=reserve))


def order_check(*, account: ExchangeAccount, order: Order, actor: Actor) -> CheckResult:
    """The decision only: nothing is reserved or sent. Logged as allowed/denied."""
    return check_run(check_plan(account=account, order=order), actor=actor)


def check_run(plan: CheckPlan, *, actor: Actor) -> CheckResult:
    return _check_logged(_gathered_check(plan), actor)


async def check_run_async(plan: CheckPlan, *, actor: Actor) -> CheckResult:
    """check_run for the event loop: the one round trip on redis.asyncio, no thread hop."""
    try:
        s = store()
        result = _checked(plan, s, await s.agather(**plan.gather_args()))
    except REDIS_DOWN as exc:
        result = _unavailable(plan, exc)
    if len(ORDER_LOG.rows) >= ORDER_LOG_BOUND:
        await off_loop(ORDER_LOG.flush)  # back-pressure, as add() applies it to a sync caller
    return _check_logged(result, actor)


def _check_logged(result: CheckResult, actor: Actor) -> CheckResult:
    decision = OrderDecision.ALLOWED if result.decision.allowed else OrderDecision.DENIED
    _log_order(
        account_id=result.account_id,
        actor=actor,
        order=result.order,
        decision=decision,
        codes=result.decision.codes,
        details={"action": "check", **result.log_details()},
    )
    return result


# =========================================================================== submit


@dataclass
class SubmitResult:
    check: CheckResult
    outcome: str  # denied | submitted | rejected | unknown | not_sent
    exchange: dict | None = None
    error: dict | None = None
    reconciliation: dict | None = None

    def body(self) -> dict[str, Any]:
        return {
            **self.check.body(),
            "outcome": self.outcome,
            "exchange": self.exchange,
            "error": self.error,
            "reconciliation": self.reconciliation,
        }


def exchange_params(order: Order, *, hedge: bool) -> dict[str, Any]:
    """Binance's parameters for an order that passed. A market order with a protective price
    goes as LIMIT IOC at that price, so the bound the gate checked is the bound the exchange
    enforces (the gate cannot see the book)."""
    params: dict[str, Any] = {
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.qty,
        "newClientOrderId": order.client_order_id,
        "newOrderRespType": "RESULT",
    }
    if order.type == "LIMIT":
        params.update(type="LIMIT", price=order.price, timeInForce=order.time_in_force)
    elif order.price is not None:
        params.update(type="LIMIT", price=order.price, timeInForce="IOC")
    else:
        params["type"] = "MARKET"
    if hedge:
        params["positionSide"] = order.position_side
    elif order.reduce_only:
        params["reduceOnly"] = True
    return params


def new_client_order_id() -> str:
    return f"rd-{uuid.uuid4().hex[:28]}"  # Binance: ^[.A-Z:/a-z0-9_-]{1,36}$


def order_submit(*, account: ExchangeAccount, order: Order, actor: Actor) -> SubmitResult:
    """Check (reserving the rate slot, duplicate fingerprint and day count atomically), then
    forward to the exchange only if every check passed. An answer in doubt is reconciled by
    clientOrderId, never re-sent."""
    if not order.client_order_id:
        order.client_order_id = new_client_order_id()  # needed to reconcile an unknown outcome
    check = _run_check(account=account, order=order, reserve=True)
    if not check.decision.allowed:
        if check.reservation is not None:
            store().release(check.reservation)
        _log_order(
            account_id=account.id,
            actor=actor,
            order=order,
            decision=OrderDecision.DENIED,
            codes=check.decision.codes,
            details={"action": "submit", **check.log_details()},
        )
        return SubmitResult(check, "denied")
    result = _send(account, order, hedge=account.position_mode == PositionMode.HEDGE, check=check)
    decision = {
        "submitted": OrderDecision.SUBMITTED,
        "rejected": OrderDecision.REJECTED,
        "unknown": OrderDecision.UNKNOWN,
        "not_sent": OrderDecision.REJECTED,
    }[result.outcome]
    _log_order(
        account_id=account.id,
        actor=actor,
        order=order,
        decision=decision,
        exchange=result.exchange,
        details={
            "action": "submit",
            **check.log_details(),
            "outcome": result.outcome,
            "error": result.error,
            "reconciliation": result.reconciliation,
        },
    )
    return result


def _send(account: ExchangeAccount, order: Order, *, hedge: bool, check: CheckResult) -> SubmitResult:
    params = exchange_params(order, hedge=hedge)
    # Before it leaves: the user stream's NEW event must find the id (ORDER_BYPASSED_GATE).
    approved_add(account.id, order.client_order_id)

    async def place() -> dict:
        async with exchange_for(account) as exchange:
            return await exchange.place_order(**params)

    try:
        return SubmitResult(check, "submitted", exchange=async_to_sync(place)())
    except OutcomeUnknown as exc:
        reconciliation = order_reconcile(account=account, symbol=order.symbol, client_order_id=order.client_order_id)
        return SubmitResult(
            check, "unknown", exchange=reconciliation.get("order"), error=_error(exc), reconciliation=reconciliation
        )
    except ExchangeAuthError as exc:
        return SubmitResult(check, "rejected", error=_error(exc))
    except ExchangeRejected as exc:
        return SubmitResult(check, "rejected", error=_error(exc))
    except (RateLimited, ExchangeError) as exc:  # refused before it was taken: nothing happened
        return SubmitResult(check, "not_sent", error=_error(exc))


def _error(exc: ExchangeError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "status": exc.status, "kind": type(exc).__name__}


def order_reconcile(*, account: ExchangeAccount, symbol: str, client_order_id: str) -> dict[str, Any]:
    """Look an order in doubt up by clientOrderId. ``resolution``: placed (the exchange has it),
    not_placed (-2013 after waiting), or unresolved (the exchange did not answer; the stream is
    asked to re-sync the account and nobody re-sends)."""

    async def lookup() -> dict[str, Any]:
        last_error: dict[str, Any] | None = None
        async with exchange_for(account) as exchange:
            for wait_s in RECONCILE_WAITS_S:
                await _sleep(wait_s)
                try:
                    found = await exchange.query_order(symbol=symbol, client_order_id=client_order_id)
                    return {"resolution": "placed", "order": found, "attempts": RECONCILE_WAITS_S.index(wait_s) + 1}
                except ExchangeRejected as exc:
                    last_error = _error(exc)
                    if exc.code != -2013:
                        break
                except ExchangeError as exc:
                    last_error = _error(exc)
        if last_error and last_error["code"] == -2013:
            return {"resolution": "not_placed", "order": None, "error": last_error}
        return {"resolution": "unresolved", "order": None, "error": last_error}

    result = async_to_sync(lookup)()
    if result["resolution"] == "unresolved":
        _resync_request(account.id)
    return {"client_order_id": client_order_id, **result}


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


# =========================================================================== cancel


@dataclass
class CancelResult:
    outcome: str  # cancelled | rejected | unknown | not_sent
    exchange: Any = None
    error: dict | None = None

    def body(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exchange": self.exchange, "error": self.error}


def order_cancel(
    *, account: ExchangeAccount, symbol: str, order_id: int | None, client_order_id: str | None, actor: Actor
) -> CancelResult:
    """Cancel one order, or every open order of the symbol. Never checked (only access), never
    blocked: cancelling only ever reduces risk. Counts towards the day's cancels."""
    one = order_id is not None or bool(client_order_id)

    async def cancel() -> Any:
        async with exchange_for(account) as exchange:
            if one:
                return await exchange.cancel_order(symbol=symbol, order_id=order_id, client_order_id=client_order_id)
            return await exchange.cancel_all(symbol=symbol)

    try:
        result = CancelResult("cancelled", exchange=async_to_sync(cancel)())
    except OutcomeUnknown as exc:
        _resync_request(account.id)
        result = CancelResult("unknown", error=_error(exc))
    except ExchangeRejected as exc:
        result = CancelResult("rejected", error=_error(exc))
    except ExchangeError as exc:
        result = CancelResult("not_sent", error=_error(exc))
    counted = result.outcome != "not_sent" and _cancel_counted(account.id)
    _log_cancel(account.id, actor, symbol, order_id, client_order_id, result, one=one, counted=counted)
    return result


def _cancel_counted(account_id: int) -> bool:
    """Count the cancel towards the day's cap; False when Redis is down. The cancel happened at the
    exchange already, and a count must never turn it into an error (issue 14): it is lost, and the
    order log row says so. New orders are refused while Redis is down anyway."""
    try:
        store().cancel_counted(account_id)
    except REDIS_DOWN as exc:
        log.warning("order gate: Redis is unavailable, account %s's cancel was not counted (%s)", account_id, exc)
        return False
    return True


def _resync_request(account_id: int) -> None:
    """Ask the stream process to re-sync the account. With Redis down the request cannot reach it;
    beat's position sync (sync_positions_task, over REST) still finds what the exchange changed."""
    try:
        live.resync_request(account_id)
    except REDIS_DOWN as exc:
        log.warning("order gate: Redis is unavailable, account %s's re-sync request is lost (%s)", account_id, exc)


def _log_cancel(
    account_id: int,
    actor: Actor,
    symbol: str,
    order_id: int | None,
    client_order_id: str | None,
    result: CancelResult,
    *,
    one: bool,
    counted: bool = True,
) -> None:
    decision = {
        "cancelled": OrderDecision.SUBMITTED,
        "rejected": OrderDecision.REJECTED,
        "unknown": OrderDecision.UNKNOWN,
        "not_sent": OrderDecision.REJECTED,
    }[result.outcome]
    answer = result.exchange if isinstance(result.exchange, dict) else {}
    ORDER_LOG.add(
        dict(
            account_id=account_id,
            source=actor.source,
            user_id=actor.user_id,
            token_id=actor.token_id[:64],
            symbol=symbol,
            side="",
            order_type="CANCEL" if one else "CANCEL_ALL",
            client_order_id=(client_order_id or "")[:64],
            decision=decision,
            details={"action": "cancel", **result.body(), "cancel_counted": counted},
            exchange_order_id=str(order_id or answer.get("orderId") or ""),
            exchange_status=str(answer.get("status") or "")[:24],
        )
    )


# =========================================================================== risk


def account_risk(*, account: ExchangeAccount) -> dict[str, Any]:
    """The account's live figures and how fresh they are (one round trip, no order)."""
    meta = meta_of(account)
    try:
        s = store()
        g = s.gather(account_id=account.id, order=None, profile=None, reserve=False)
    except REDIS_DOWN as exc:
        return _risk_unavailable(account, meta, exc)
    state = s.decode_state(g.state_raw)
    feed_last = (g.feed or {}).get("last_message_ms")
    feed_stale = live.feed_is_stale(g.feed, at_ms=g.now_ms)
    connected = live.user_feed_is_live(g.user_feed, at_ms=g.now_ms)
    age_ms = g.now_ms - int(state["published_ms"]) if state else None
    account_stale = state is None or not connected  # the gate's judgement (checks.py, ACCOUNT_STATE_STALE)
    reasons = [
        r
        for r, on in (
            ("ACCOUNT_STATE_MISSING", state is None),
            ("FEED_STALE", feed_stale),
            ("ACCOUNT_STATE_STALE", state is not None and account_stale),
        )
        if on
    ]
    return {
        "account": account.id,
        "trading_state": _trading_state(meta, g.trading),
        "published_ms": state["published_ms"] if state else None,
        "age_s": None if age_ms is None else Decimal(age_ms).scaleb(-3),
        "stale_after_s": Decimal(str(settings.STREAM_STALE_AFTER_S)),
        "stale": bool(reasons),
        "stale_reasons": reasons,
        "feed": {
            "stale": feed_stale,
            "last_message_ms": feed_last,
            "age_s": None if not feed_last else Decimal(g.now_ms - int(feed_last)).scaleb(-3),
        },
        "user_stream_connected": connected,
        "figures": (state or {}).get("figures"),
        "positions": (state or {}).get("positions", []),
        "open_orders": len((state or {}).get("open_orders", [])),
        "daily": {"cancels": g.counters.daily_cancels, "fills": g.counters.daily_fills},
    }


def _risk_unavailable(account: ExchangeAccount, meta: AccountMeta, error: Exception) -> dict[str, Any]:
    """account_risk's answer without Redis: no live figures, stale for LIVE_STATE_UNAVAILABLE (the
    desk pages then show the last Position rows and snapshot, positions/selectors.py)."""
    log.warning("order gate: Redis is unavailable, no live state for account %s (%s)", account.id, error)
    return {
        "account": account.id,
        "trading_state": meta.trading_state,
        "published_ms": None,
        "age_s": None,
        "stale_after_s": Decimal(str(settings.STREAM_STALE_AFTER_S)),
        "stale": True,
        "stale_reasons": [LIVE_STATE_UNAVAILABLE],
        "feed": {"stale": True, "last_message_ms": None, "age_s": None},
        "user_stream_connected": False,
        "figures": None,
        "positions": [],
        "open_orders": 0,
        "daily": {"cancels": 0, "fills": 0},
    }


# =========================================================================== trading state, kill


def account_trading_state_set(*, account: ExchangeAccount, state: str, reason: str, by: User | None) -> ExchangeAccount:
    """Through accounts.services (which publishes the change to every gate once committed)."""
    with transaction.atomic():
        account = account_set_trading_state(account=account, state=state, reason=reason, by=by)
    return account


@dataclass
class KillPlan:
    cancel: list[dict]  # {symbol, open_orders}
    close: list[dict]  # {symbol, side, position_side, quantity, reduce_only}


def _close_orders(positions: Iterable[Any], symbols: dict[str, SymbolView]) -> list[dict]:
    """Reduce-only MARKET orders that close every position, split at the market lot maximum."""
    orders = []
    for p in positions:
        size = abs(p.qty)
        long = p.side == "LONG" or (p.side == "BOTH" and p.qty > 0)
        view = symbols.get(p.symbol)
        chunk = view.market_max_qty if view is not None and view.market_max_qty else size
        while size > 0:
            qty = min(size, chunk)
            orders.append(
                {
                    "symbol": p.symbol,
                    "side": "SELL" if long else "BUY",
                    "position_side": p.side,
                    "quantity": qty,
                    "reduce_only": p.side == "BOTH",
                }
            )
            size -= qty
    return orders


def account_kill(
    *, account: ExchangeAccount, by: User | None, flatten: bool, dry_run: bool, reason: str, token_id: str = ""
) -> dict[str, Any]:
    """HALTED first (so nothing new gets in), then cancel every open order and, with ``flatten``,
    close every position with reduce-only MARKET orders. The plan comes from the exchange's own
    answer (REST), not the live state, which may be what failed. ``dry_run`` returns the plan only."""
    if not dry_run:
        account_trading_state_set(account=account, state=TradingState.HALTED, reason=reason or "kill switch", by=by)
    symbols = catalog().symbols
    actor = Actor(user=by, token_id=token_id, source=OrderSource.KILL_SWITCH)

    async def run() -> dict[str, Any]:
        body: dict[str, Any] = {"plan": {"cancel": [], "close": []}}
        try:
            async with exchange_for(account) as exchange:
                body["plan"] = plan = await _kill_plan(exchange, symbols, flatten)
                if dry_run:
                    return body
                body["cancelled"] = [await _kill_cancel(exchange, row) for row in plan["cancel"]]
                for row in plan["close"]:  # the desk's own orders: not ORDER_BYPASSED_GATE
                    row["client_order_id"] = new_client_order_id()
                    approved_add(account.id, row["client_order_id"])
                body["orders"] = [await _kill_close(exchange, row) for row in plan["close"]]
                body["remaining"] = await _kill_remaining(exchange)
        except ExchangeError as exc:
            # The account stays HALTED; say how far the kill got and why it stopped.
            body["error"] = _error(exc)
        return body

    body = async_to_sync(run)()
    for row in body.get("orders", []):
        _log_kill_order(account.id, actor, row)
    for row in body.get("cancelled", []):
        ORDER_LOG.add(
            dict(
                account_id=account.id,
                source=actor.source,
                user_id=actor.user_id,
                token_id=token_id[:64],
                symbol=row["symbol"],
                side="",
                order_type="CANCEL_ALL",
                decision=OrderDecision.SUBMITTED if row["ok"] else OrderDecision.REJECTED,
                details={"action": "kill_cancel", **row},
            )
        )
    if not dry_run:
        _resync_request(account.id)
    return {
        "account": account.id,
        "halted": not dry_run or account.trading_state == TradingState.HALTED,
        "dry_run": dry_run,
        "flatten": flatten,
        **body,
    }


async def _kill_plan(exchange: Any, symbols: dict[str, SymbolView], flatten: bool) -> dict[str, list[dict]]:
    # Conditional orders (stops, take-profits) sit in Binance's algo service, not in /openOrders:
    # a stop that opens a position would survive a kill switch that only asked /openOrders.
    plain = collections.Counter(o["symbol"] for o in await exchange.open_orders())
    conditional = collections.Counter(o["symbol"] for o in await exchange.open_conditional_orders())
    cancel = [
        {"symbol": s, "open_orders": plain[s], "open_conditional_orders": conditional[s]}
        for s in sorted(set(plain) | set(conditional))
    ]
    close = _close_orders(await exchange.positions(), symbols) if flatten else []
    return {"cancel": cancel, "close": close}


async def _kill_remaining(exchange: Any) -> dict[str, Any]:
    positions = await exchange.positions()
    return {
        "open_orders": len(await exchange.open_orders()),
        "open_conditional_orders": len(await exchange.open_conditional_orders()),
        "positions": [{"symbol": p.symbol, "side": p.side, "qty": p.qty} for p in positions],
    }


async def _kill_cancel(exchange: Any, row: dict) -> dict[str, Any]:
    symbol, answer = row["symbol"], {}
    try:
        if row["open_orders"]:
            answer["orders"] = await exchange.cancel_all(symbol=symbol)
        if row["open_conditional_orders"]:
            answer["conditional_orders"] = await exchange.cancel_all_conditional(symbol=symbol)
        return {"symbol": symbol, "ok": True, "answer": answer}
    except ExchangeError as exc:
        return {"symbol": symbol, "ok": False, "answer": answer, "error": _error(exc)}


async def _kill_close(exchange: Any, row: dict) -> dict[str, Any]:
    params: dict[str, Any] = {
        "symbol": row["symbol"],
        "side": row["side"],
        "type": "MARKET",
        "quantity": row["quantity"],
        "newClientOrderId": row.get("client_order_id") or new_client_order_id(),
        "newOrderRespType": "RESULT",
    }
    if row["reduce_only"]:
        params["reduceOnly"] = True
    else:
        params["positionSide"] = row["position_side"]  # a hedge leg closes by its side; reduceOnly is refused
    try:
        answer = await exchange.place_order(**params)
        return {**row, "outcome": "submitted", "client_order_id": params["newClientOrderId"], "exchange": answer}
    except OutcomeUnknown as exc:
        return {**row, "outcome": "unknown", "client_order_id": params["newClientOrderId"], "error": _error(exc)}
    except ExchangeError as exc:
        return {**row, "outcome": "rejected", "client_order_id": params["newClientOrderId"], "error": _error(exc)}


def _log_kill_order(account_id: int, actor: Actor, row: dict) -> None:
    decision = {"submitted": OrderDecision.SUBMITTED, "unknown": OrderDecision.UNKNOWN}.get(
        row["outcome"], OrderDecision.REJECTED
    )
    answer = row.get("exchange") or {}
    ORDER_LOG.add(
        dict(
            account_id=account_id,
            source=actor.source,
            user_id=actor.user_id,
            token_id=actor.token_id[:64],
            symbol=row["symbol"],
            side=row["side"],
            position_side=row["position_side"],
            order_type="MARKET",
            quantity=row["quantity"],
            reduce_only=row["reduce_only"],
            client_order_id=row["client_order_id"],
            decision=decision,
            details={"action": "kill_close", **row},
            exchange_order_id=str(answer.get("orderId") or ""),
            exchange_status=str(answer.get("status") or "")[:24],
        )
    )
