"""The stream engine: exchange sockets → risk book → listeners and a sink.

Plain asyncio, no Django: `run_streams` wires it to the database and cache
through a `Sink` (marketdata/sink.py); tests and the benchmark wire it to
their own sinks. It owns the risk book (one writer).

Supervision, because python-binance does not (reference §3.6, §4):
- the market socket (`!markPrice@arr@1s`) is restarted on any `e == "error"`
  message and on silence longer than `stale_after_s`; while silent the feed is
  stale (the sink raises an alert and the gate fails closed);
- each account's user-data socket is restarted on an error message or on
  `listenKeyExpired` with a fresh listen key (python-binance reuses the cached
  key after a reconnect, so a dead key would linger for five minutes);
- every (re)connect is followed by a REST re-sync, since events missed in the
  gap are not replayed;
- restarts back off exponentially with jitter, capped, and start afresh after a healthy session
  (``Backoff``): a back-off that only grew turned 8 feed stalls into recoveries of 24 s;
- every socket has a watchdog at its own cadence: the market socket's 1 s frames
  (``MARKET_SILENCE_S``), a user socket's listen-key keep-alive (``keepalive_s``, which the
  engine runs itself: python-binance's own logs a -1125 and carries on with the dead key);
- liveness expires (issue 15): the process beats (``Sink.process_alive``) and every user feed's
  status is re-published (``Sink.feeds_alive``), both under a TTL of ``stale_after_s``, so a
  process that dies, SIGKILL included, leaves nothing that says "connected";
- malformed payloads are counted, logged once with a sample, and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import heapq
import itertools
import json
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from marketdata.collateral import Wallets
from marketdata.exchange import BinanceFutures, ExchangeError, bulk_weight, dec
from positions.book import BookPosition, RiskBook

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0  # the default cap (REST-side loops); each socket has its own below
# Recovery bounds (issue 15): the market stream resumes within 5 s of the exchange answering again,
# a user stream within 10 s. The wait before a reconnect is at most the cap; the rest of the bound
# is the handshake, the REST re-sync and (market) the next 1 s frame.
MARKET_BACKOFF_CAP_S = 2.0
USER_BACKOFF_CAP_S = 5.0
HEALTHY_AFTER_S = 10.0  # a session that lasted this long was healthy: the next failure backs off from the start
MARKET_SILENCE_S = 3.0  # the market socket sends a frame a second: three missed and it is restarted
MARKET_OPEN_TIMEOUT_S = 5.0  # handshake + REST gap fill; a hung open must not keep the marks frozen
USER_KEEPALIVE_S = 30 * 60.0  # Binance: keys live 60 min, keep them alive every 30 (PUT listenKey)
KEEPALIVE_RETRY_S = 30.0  # a keep-alive that failed for another reason than -1125 is tried again this soon
INVALID_LISTEN_KEY = -1125
HEARTBEAT_EVERY_S = 1.0  # the process's beat (a live key with a TTL of stale_after_s)
# Start-up with thousands of accounts. One request at a time leaves both processes idle
# for each round trip (2,000 accounts' brackets took ~100 s that way); everything at once
# queues more signed requests and WebSocket handshakes than the exchange answers within
# python-binance's handshake timeout and the 5 s recvWindow (-1021), so sockets restart
# until the herd thins (4,725 restarts for 2,000 sockets). A small bound keeps the
# pipe full without the herd; the exchange's weight limit is enforced by the adapter.
REST_CONCURRENCY = 8  # REST fetches (brackets, the first sync) in flight at start-up
SOCKET_OPEN_CONCURRENCY = 16  # user-data sockets opening (listen key, handshake, re-sync) at once
SOCKET_OPEN_TIMEOUT_S = 60.0  # for one of them; past it the session restarts with backoff
# After a fault that took every socket down, the market socket opens first: user sessions wait for it
# this long at most (they must recover without it too), so 2,000 handshakes do not queue ahead of the
# one socket every account's figures depend on (bench/recovery.py: 18 s for the market without this).
MARKET_FIRST_WAIT_S = 2.0
# REST re-syncs after a reconnect run apart from the socket opens, at most this many at once, in turn:
# accounts holding positions or open orders first. They spend IP weight only up to the adapter's bulk
# share (marketdata/exchange.py), so listen keys, the gap fill of the marks, the kill switch's reads
# and cancels always find weight left.
RESYNC_CONCURRENCY = 8
RESYNC_RETRY_S = 5.0  # a re-sync that failed (exchange away, rate limited) is tried again this soon
MALFORMED = "_malformed"
# The interpreter's GIL hand-over interval in a process that runs the engine (default 5 ms). The
# alert writer and the sink's threads wait for the GIL after every database or Redis reply while the
# loop evaluates frames; at 5 ms per hand-over an alert's ~10 round trips took up to 70 ms more
# (bench/alerts.py: write + commit p99 72.7 ms at 5 ms, 19.2 ms at 0.5 ms).
SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLDS = (50_000, 20, 1_000_000)  # see settle_gc
FLUSH_DEFER_MAX_S = 0.2  # longest a flush waits, in all, for alerts' writes and pushes (p99 ~30 ms each)
FLUSH_DEFER_POLL_S = 0.001
GC_FULL_EVERY_S = 600.0  # a full collection (cyclic garbage in the oldest generation) this often
# Binance's marks of a forced close (reference §2.4): type LIQUIDATION or a client id "autoclose-…"
# for a liquidation, the client id "adl_autoclose" for auto-deleveraging.
LIQUIDATION_CLIENT_PREFIX = "autoclose-"
ADL_CLIENT_ID = "adl_autoclose"
FILL_EXECUTIONS = ("TRADE", "CALCULATED")  # CALCULATED: Binance's execution type of a liquidation fill
LIQUIDATIONS_REMEMBERED = 10_000  # order ids the stream reported, so forceOrders does not report them twice
FORCE_ORDERS_OVERLAP_MS = 5_000  # each check re-reads this much of the last one's window (clock skew, late rows)
FORCE_ORDER_WINDOW_MS = 7 * 24 * 3600 * 1000 - 60_000  # Binance answers at most 7 days a call


@dataclass(frozen=True)
class AccountSpec:
    id: int
    name: str
    api_key: str
    api_secret: str


@dataclass
class FeedStatus:
    name: str
    connected: bool = False
    stale: bool = True  # nothing received yet is not fresh
    last_message_ms: int | None = None
    messages: int = 0
    malformed: int = 0
    reconnects: int = 0
    last_error: str = ""
    # A user feed whose socket is open again but whose REST re-sync has not landed yet: its events
    # flow, but what it missed while down is unknown, so it is still stale (the gate fails closed).
    resyncing: bool = False
    # When the feed last stopped being live (connected and not stale); None while live or never live.
    # Readers give a blip STREAM_STALE_AFTER_S of grace from here, no more (marketdata/live.py).
    down_since_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Sink(Protocol):
    """Where the engine's results go. Every method must be quick or hand off."""

    async def account_changed(self, account_id: int, book: RiskBook, open_orders: list[dict]) -> None:
        """Read what it needs of the account from ``book`` during the call: the book moves on after it."""

    async def marks_changed(self, marks: dict[str, tuple[Decimal, int]]) -> None: ...

    async def feed_changed(self, status: FeedStatus, *, became_stale: bool, recovered: bool) -> None: ...

    async def exchange_event(self, account_id: int, event: dict) -> None: ...

    async def drift_found(self, account_id: int, differences: list[dict]) -> None:
        """``differences``: one dict per difference, with ``kind`` qty, leverage, margin_type or wallet."""

    async def resync_requests(self) -> list[int]: ...

    # Liveness (optional, as the account events below): what says "alive" must expire by itself.

    async def process_alive(self, status: dict) -> None:
        """The process's beat, every HEARTBEAT_EVERY_S from the event loop: keep it for ``stale_after_s``."""

    async def feeds_alive(self, statuses: list[dict]) -> None:
        """Every user feed's status, every ``stale_after_s`` / 3: keep each for ``stale_after_s``."""

    async def stopped(self, statuses: list[dict]) -> None:
        """A clean stop: every feed (market included) as disconnected and stale, the beat withdrawn,
        and everything queued written before returning."""

    # The account events below are optional (``StreamEngine._tell``): sinks written before them
    # (the benches') need not implement them. Each must hand its work off in the order received.

    async def fill_seen(self, account_id: int, event: dict) -> None:
        """An ORDER_TRADE_UPDATE fill (x TRADE) that is not a liquidation."""

    async def liquidation_seen(self, account_id: int, event: dict, before: dict | None) -> None:
        """A liquidation or ADL fill: from the stream, or an ORDER_TRADE_UPDATE-shaped event built from a
        forceOrders row the stream missed (``"source": "forceOrders"``). ``before``: the book's
        ``positions_plain`` row of the position just before the event, or None."""

    async def funding_seen(self, account_id: int, event: dict) -> None:
        """An ACCOUNT_UPDATE with reason FUNDING_FEE."""

    async def position_closed(self, account_id: int, close: dict) -> None:
        """A position the exchange reported closed (pa=0, or gone in a REST sync) that was not liquidated:
        ``close`` has position_close_record's keywords (symbol, side, reason, time_ms, qty, entry_price,
        exit_price, before, order_id)."""

    async def config_changed(self, account_id: int, change: dict) -> None:
        """Leverage, multi-assets mode or margin type changed on the exchange: ``change`` has what,
        symbol ("account" for multi-assets), old (None when unknown), new, time_ms."""


Listener = Callable[[set[int]], Awaitable[None] | None]


@dataclass
class _Pending:
    accounts: set[int] = field(default_factory=set)
    marks: dict[str, tuple[Decimal, int]] = field(default_factory=dict)


class StreamEngine:
    """Feeds one RiskBook from the exchange for a set of accounts."""

    def __init__(
        self,
        *,
        accounts: Iterable[AccountSpec],
        rest_url: str,
        ws_url: str,
        sink: Sink,
        stale_after_s: float = 5.0,
        flush_interval_s: float = 0.5,  # live figures reach the pages twice a second
        book: RiskBook | None = None,
        market_key: AccountSpec | None = None,
        keepalive_s: float = USER_KEEPALIVE_S,
    ):
        self.accounts = {a.id: a for a in accounts}
        self.keepalive_s = keepalive_s
        self.listen_keys: dict[int, str] = {}  # account -> the listen key its connected socket uses
        self.started_ms = int(time.time() * 1000)
        self.rest_url, self.ws_url = rest_url, ws_url
        self.sink = sink
        self.stale_after_s = stale_after_s
        self.flush_interval_s = flush_interval_s
        self.book = book or RiskBook(capacity=1024)
        self.listeners: list[Listener] = []  # called with the account ids each update touched
        self.startup: list[Callable[[], Awaitable[None]]] = []  # run once before the sockets open
        self.workers: list[Callable[[], Awaitable[None]]] = []  # long-running companions (alert writer…)
        # While any says True (an alert on its way out) the flush waits between accounts, up to
        # FLUSH_DEFER_MAX_S: the alert's write and push then have the GIL and the cores to themselves.
        self.flush_defers_to: list[Callable[[], bool]] = []
        self.market = FeedStatus("market")
        self.user_feeds = {a: FeedStatus(f"user:{a}") for a in self.accounts}
        self._adapters: dict[int, BinanceFutures] = {}
        # Public market data needs no key; any account's client will do, or a keyless one.
        self._market_spec = market_key or next(iter(self.accounts.values()), AccountSpec(0, "market", "", ""))
        self._leverage: dict[tuple[int, str], int] = {}
        self.brackets: dict[str, list] = {}  # symbol -> default bracket table the book uses
        self.step_sizes: dict[str, Decimal] = {}  # symbol -> LOT_SIZE step, for planned orders
        self.open_orders: dict[int, dict[str, dict]] = {}  # account -> orderId -> resting order
        self.fills_seen: dict[int, int] = {}  # fills observed since start, per account
        # (account, "SYM:SIDE") -> when the exchange closed it (ms): the evaluator drops work measured
        # before that. A position that opens again loses its key.
        self.closed_positions: dict[tuple[int, str], int] = {}
        # account -> time (ms) of its last liquidation fill: account-level alerts that clear in its
        # aftermath (utilization, concentration...) end as `liquidated`, not "back within limit".
        self.liquidated_at: dict[int, int] = {}
        self.multi_assets: dict[int, bool] = {}  # as ACCOUNT_CONFIG_UPDATE last said; absent: not heard of
        self.wallets = Wallets(self)  # every wallet asset into the book (marketdata/collateral.py)
        self._margin_types: dict[tuple[int, str], str] = {}  # (account, symbol) -> cross / isolated
        self._wallets: dict[int, Decimal] = {}  # the USDT cross wallet last applied, for reconciliation
        self._liquidated: dict[tuple[int, str, str], str] = {}  # position -> its liquidation order, until closed
        self._liquidation_before: dict[str, dict | None] = {}  # order id -> the book's row before its first fill
        self._liquidations_seen: dict[str, None] = {}  # order ids reported (insertion-ordered, bounded)
        self._last_fill: dict[tuple[int, str, str], tuple[str, str]] = {}  # position -> (order id, price)
        self._force_checked_ms: dict[int, int] = {}  # account -> end of the last forceOrders window
        # account -> (the desk's rows when this process started, keyed (symbol, side), and the oldest
        # row's time in ms), set by a startup step; the first sync compares them with the exchange.
        self.held_at_start: dict[int, tuple[dict[tuple[str, str], dict], int]] = {}
        self._pending = _Pending()
        self._user_feed_published: dict[str, int] = {}  # feed name -> messages count last published
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._logged_malformed: set[str] = set()
        self._opening = asyncio.Semaphore(SOCKET_OPEN_CONCURRENCY)  # see SOCKET_OPEN_CONCURRENCY
        self._market_up = asyncio.Event()  # the market socket is open (MARKET_FIRST_WAIT_S)
        self._opens_waiting = 0  # user sockets waiting to open or opening: re-syncs wait for none
        self._opens_idle = asyncio.Event()
        self._opens_idle.set()
        self._resync_turns = _Turns(RESYNC_CONCURRENCY)
        self._sessions: dict[int, int] = {}  # account -> number of its current user session
        # account -> events its socket delivered while the account's REST re-sync was in flight:
        # applied after the exchange's state, in order, so the snapshot never overwrites a newer event.
        self._held: dict[int, list] = {}
        self.on_market_frame: Callable[[int], None] | None = None  # bench hook: frame's E in ms

    # --- lifecycle --------------------------------------------------------------------------

    def adapter(self, account_id: int) -> BinanceFutures:
        if account_id not in self._adapters:
            spec = self.accounts.get(account_id, self._market_spec)
            self._adapters[account_id] = BinanceFutures(
                api_key=spec.api_key, api_secret=spec.api_secret, rest_url=self.rest_url, ws_url=self.ws_url
            )
        return self._adapters[account_id]

    async def start(self) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        for step in self.startup:
            await step()
        await self._load_brackets()
        with contextlib.suppress(ExchangeError):
            filters = await self.adapter(self._market_spec.id).exchange_info()
            self.step_sizes = {f.symbol: f.step_size for f in filters}
        await _bounded(REST_CONCURRENCY, self._first_sync, self.accounts)
        self._tasks = [asyncio.create_task(self._market_loop(), name="market")]
        self._tasks += [asyncio.create_task(self._user_loop(a), name=f"user:{a}") for a in self.accounts]
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="flush"))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        self._tasks += [asyncio.create_task(worker(), name=worker.__qualname__) for worker in self.workers]

    async def run_forever(self) -> None:
        await self.start()
        await self._stopping.wait()

    async def stop(self) -> None:
        """Orderly: the sockets closed (their tasks' ``opened`` exits close them), a last flush, every
        feed published as disconnected and stale and the beat withdrawn (the gate fails closed at
        once, not STREAM_STALE_AFTER_S later), the sink drained, then the REST sessions closed."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._flush()
        for feed in (self.market, *self.user_feeds.values()):
            # No blip's grace: the process that would re-open the socket is going away.
            feed.connected, feed.stale, feed.resyncing, feed.down_since_ms = False, True, False, None
        self.listen_keys.clear()
        try:
            await self._tell("stopped", [f.as_dict() for f in (self.market, *self.user_feeds.values())])
        except Exception:
            log.warning("publishing the stopped state failed; it expires within %s s anyway", self.stale_after_s)
        for adapter in self._adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()

    # --- liveness --------------------------------------------------------------------------

    def process_status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_ms": self.started_ms,
            "heartbeat_ms": int(time.time() * 1000),
            "accounts": len(self.accounts),
            "market_stale": self.is_stale(),
            "user_connected": sum(1 for f in self.user_feeds.values() if f.connected),
            "user_live": sum(1 for f in self.user_feeds.values() if f.connected and not f.stale),
        }

    async def _heartbeat_loop(self) -> None:
        """The beat, from the event loop itself: a loop that hangs stops beating. Also the market
        feed's stale mark (the silence watchdog restarts the socket sooner than the feed is called
        stale, so the session no longer marks it), and every user feed re-published before its TTL
        runs out. A timestamp per frame is all the hot path pays for any of this."""
        refresh_every = max(HEARTBEAT_EVERY_S, self.stale_after_s / 3)
        feeds_due = 0.0
        while not self._stopping.is_set():
            try:
                await self._tell("process_alive", self.process_status())
                if not self.market.stale and self.is_stale():
                    await self._mark_stale()
                if time.monotonic() >= feeds_due:
                    feeds_due = time.monotonic() + refresh_every
                    await self._tell("feeds_alive", [f.as_dict() for f in self.user_feeds.values()])
            except Exception:
                log.warning("the stream heartbeat failed; retrying", exc_info=True)
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    # --- REST sync ----------------------------------------------------------------------

    async def _first_sync(self, account_id: int) -> None:
        with contextlib.suppress(ExchangeError):
            await self.sync_account(account_id)

    async def _load_brackets(self) -> None:
        """Default tables from the first account; another account's table only where it differs
        (Binance scales brackets per account with notionalCoef). The defaults come first, one
        account after another until one answers; the other accounts are fetched a few at a time
        and each is compared as soon as it arrives (holding them all would take gigabytes)."""
        accounts = iter(self.accounts)
        for account_id in accounts:
            tables = await self._brackets_of(account_id)
            if tables is not None:
                self.brackets = tables
                for symbol, table in tables.items():
                    self.book.set_brackets(symbol, table)
                break
        await _bounded(REST_CONCURRENCY, self._load_overrides, list(accounts))

    async def _brackets_of(self, account_id: int) -> dict[str, list] | None:
        try:
            return await self.adapter(account_id).brackets()
        except ExchangeError as exc:
            log.warning("brackets for account %s unavailable: %s", account_id, exc)
            return None

    async def _load_overrides(self, account_id: int) -> None:
        tables = await self._brackets_of(account_id)
        for symbol, table in (tables or {}).items():
            if self.brackets.get(symbol) != table:
                self.book.set_brackets(symbol, table, account_id=account_id)

    async def sync_account(self, account_id: int) -> list[dict]:
        """Make the book hold exactly what the exchange says; return the differences found (each
        with a ``kind``: qty, leverage, margin_type or wallet). A position the desk held that the
        exchange no longer has (or holds smaller) is asked about in ``forceOrders``: a liquidation
        the stream missed is reported then, before the position leaves the book."""
        adapter = self.adapter(account_id)
        positions = await adapter.positions()
        self.open_orders[account_id] = {_order_key(o): _open_order(o) for o in await adapter.open_orders()}
        state = await adapter.account()
        known = self.book.has_account(account_id)
        held = {(p["symbol"], p["side"]): p for p in self.book.positions_plain(account_id)} if known else {}
        exchange = {(p.symbol, p.side): p for p in positions}
        reports: list[tuple[str, tuple]] = []
        if not known:
            # What the desk's rows held when this process started and the exchange no longer has was
            # closed or liquidated while nobody watched: forceOrders from the rows' time tells which.
            # Older liquidations are history; from here on each check reads on from the last one.
            start_held, rows_ms = self.held_at_start.pop(account_id, ({}, None))
            gone = {k: row for k, row in start_held.items() if _smaller_or_gone(exchange.get(k), row)}
            if gone and rows_ms is not None:
                self._force_checked_ms[account_id] = rows_ms
                with contextlib.suppress(ExchangeError):
                    reports += await self._missed_liquidations(account_id, start_held)
            self._force_checked_ms.setdefault(account_id, int(time.time() * 1000))
            now_ms = int(time.time() * 1000)
            for key, row in gone.items():
                if key not in exchange:
                    reports += self._closed(account_id, key[0], key[1], row, now_ms)
        elif any(_smaller_or_gone(exchange.get(key), row) for key, row in held.items()):
            with contextlib.suppress(ExchangeError):
                reports += await self._missed_liquidations(account_id, held)
        # totalCrossWalletBalance is a USD sum in multi-assets mode: the USDT row's own, when listed
        usdt = state.cross_wallets.get("USDT", state.cross_wallet_balance)
        differences = self._wallet_difference(account_id, usdt, known)
        changed = self.wallets.apply(account_id, {"USDT": usdt, **state.cross_wallets}, replace=True)
        self._wallets[account_id] = usdt
        # One upsert_positions call per account: a call's structural work is per call, so one call
        # per position made a sync cost O(positions) calls; the book no longer re-indexes itself on
        # each (the next tick rebuilds its indexes once), which made the start-up O(N²).
        upserts: list[tuple[int, BookPosition]] = []
        for key, p in exchange.items():
            if p.leverage:
                self._leverage[(account_id, p.symbol)] = p.leverage
            self._margin_types[(account_id, p.symbol)] = p.margin_type
            leverage = p.leverage or self._leverage.get((account_id, p.symbol), 1)
            if known:
                differences += _position_differences(held.get(key), p)
            self._reopened(account_id, p.symbol, p.side)
            upserts.append(
                (
                    account_id,
                    BookPosition(
                        symbol=p.symbol,
                        side=p.side,
                        qty=_book_qty(p.side, p.qty),
                        entry_price=p.entry_price,
                        leverage=leverage,
                        margin_type=p.margin_type,
                        isolated_wallet=p.isolated_wallet,
                    ),
                )
            )
        if upserts:
            try:
                changed |= self.book.upsert_positions(upserts)
            except ValueError:
                self.book.resync()  # a batch refused part-way leaves the rows before it unrevalued
                raise
        now_ms = int(time.time() * 1000)
        for key, old in held.items():
            if key not in exchange:
                differences.append(
                    {"kind": "qty", "symbol": key[0], "side": key[1], "desk_qty": old["qty"], "exchange_qty": "0"}
                )
                changed |= self.book.remove_position(account_id, *key)
                reports += self._closed(account_id, key[0], key[1], old, now_ms)
        self._note_changed(changed | {account_id})
        # ORDER_BYPASSED_GATE's REST reconciliation: open orders the user stream never showed.
        reports.append(("open_orders_seen", (account_id, list(self.open_orders[account_id].values()))))
        for name, args in reports:
            await self._tell(name, *args)
        return differences

    def _wallet_difference(self, account_id: int, wallet: Decimal, known: bool) -> list[dict]:
        last = self._wallets.get(account_id)
        if not known or last is None or last == wallet:
            return []
        return [{"kind": "wallet", "asset": "USDT", "desk_wallet": str(last), "exchange_wallet": str(wallet)}]

    async def _missed_liquidations(self, account_id: int, held: dict[tuple[str, str], dict]) -> list[tuple[str, tuple]]:
        """forceOrders since the last check: each liquidation the stream did not report, with the
        book's row of its position as ``before`` (the book still holds it: the stream missed it)."""
        now_ms = int(time.time() * 1000)
        since = self._force_checked_ms.get(account_id)
        start = (
            now_ms - FORCE_ORDER_WINDOW_MS
            if since is None
            else max(since - FORCE_ORDERS_OVERLAP_MS, now_ms - FORCE_ORDER_WINDOW_MS)
        )
        rows = await self.adapter(account_id).force_orders(start_time_ms=start, end_time_ms=now_ms, limit=100)
        self._force_checked_ms[account_id] = now_ms
        reports = []
        for row in rows:
            order_id = str(row.get("orderId", ""))
            if not order_id or order_id in self._liquidations_seen or dec(row.get("executedQty", "0")) == 0:
                continue
            side = row.get("positionSide", "BOTH")
            before = held.get((row["symbol"], side))
            self._remember_liquidation(account_id, row["symbol"], side, order_id)
            reports.append(("liquidation_seen", (account_id, force_order_event(row, before), before)))
        return reports

    async def resync_marks(self) -> None:
        marks = await self.adapter(self._market_spec.id).mark_prices()
        if marks:
            ts = max(m.time_ms for m in marks.values()) or int(time.time() * 1000)
            changed = self.book.apply_marks({s: m.price for s, m in marks.items()}, ts=ts)
            self._pending.marks.update({s: (m.price, m.time_ms or ts) for s, m in marks.items()})
            self._note_changed(changed)

    # --- market stream ----------------------------------------------------------------

    async def _market_loop(self) -> None:
        backoff = Backoff(cap_s=MARKET_BACKOFF_CAP_S)
        while not self._stopping.is_set():
            try:
                await self._market_session(backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: restart the socket, never die
                self.market.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("market stream restarting after %s", self.market.last_error)
            if self._stopping.is_set():
                return
            await self._set_market_connected(False)
            self.market.reconnects += 1
            await asyncio.sleep(backoff.next_delay())

    async def _market_session(self, backoff: Backoff) -> None:
        socket = self.adapter(self._market_spec.id).socket_manager().all_mark_price_socket()
        _skip_bad_json(socket)
        silence_s = min(MARKET_SILENCE_S, self.stale_after_s)
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(MARKET_OPEN_TIMEOUT_S):
                await stack.enter_async_context(opened(socket))
                await self._set_market_connected(True)
                with contextlib.suppress(ExchangeError):
                    await self.resync_marks()  # fill the gap the reconnect left
            backoff.connected()
            while not self._stopping.is_set():
                try:
                    message = await asyncio.wait_for(socket.recv(), timeout=silence_s)
                except TimeoutError:
                    # The watchdog: the feed is called stale by the heartbeat at stale_after_s; the
                    # socket is restarted sooner, so a half-dead connection does not hold recovery.
                    raise ConnectionError(f"no market frame for {silence_s} s") from None
                self._on_market_message(message)
                if self.market.stale:
                    await self._mark_fresh()

    def _on_market_message(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("e") == "error":
            raise ConnectionError(f"socket error {message.get('type')}: {message.get('m')}")
        data = message.get("data") if isinstance(message, dict) else None
        rows = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
        parsed = _parse_marks(rows) if rows is not None else None
        if not parsed:
            self._malformed(self.market, message)
            return
        symbols, prices, ts = parsed
        self.market.messages += 1
        self.market.last_message_ms = int(time.time() * 1000)
        changed = self.book.apply_mark_array(symbols, prices, ts=ts)
        self._pending.marks.update(zip(symbols, [(price, ts) for price in prices], strict=True))
        if self.on_market_frame is not None:
            self.on_market_frame(ts)
        self._note_changed(changed)

    async def _set_market_connected(self, connected: bool) -> None:
        if connected:
            self._market_up.set()
        else:
            self._market_up.clear()
        if self.market.connected != connected:
            self.market.connected = connected
            await self.sink.feed_changed(self.market, became_stale=False, recovered=False)

    async def _mark_stale(self) -> None:
        if not self.market.stale:
            self.market.stale = True
            await self.sink.feed_changed(self.market, became_stale=True, recovered=False)

    async def _mark_fresh(self) -> None:
        self.market.stale = False
        await self.sink.feed_changed(self.market, became_stale=False, recovered=True)

    def is_stale(self) -> bool:
        last = self.market.last_message_ms
        return self.market.stale or last is None or time.time() * 1000 - last > self.stale_after_s * 1000

    # --- user data streams -------------------------------------------------------------

    async def _user_loop(self, account_id: int) -> None:
        feed = self.user_feeds[account_id]
        backoff = Backoff(cap_s=USER_BACKOFF_CAP_S)
        while not self._stopping.is_set():
            try:
                await self._user_session(account_id, feed, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                feed.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("user stream %s restarting after %s", account_id, feed.last_error)
            self.listen_keys.pop(account_id, None)
            if self._stopping.is_set():
                return
            if feed.down_since_ms is None and feed.connected and not feed.stale:
                feed.down_since_ms = int(time.time() * 1000)
            feed.connected, feed.stale, feed.resyncing = False, True, False
            feed.reconnects += 1
            await self.sink.feed_changed(feed, became_stale=False, recovered=False)
            await asyncio.sleep(backoff.next_delay())

    async def _user_session(self, account_id: int, feed: FeedStatus, backoff: Backoff) -> None:
        """One socket's life. It opens (a listen key, the handshake), then reads at once while the
        account's REST re-sync waits for its turn (``_resync_in_turn``): the stream is back as soon as
        its socket is, the account's state is live once the re-sync has landed. Opening did the
        re-sync inside the open before, so 2,000 sockets after a blip waited for 2,000 re-syncs
        (112,000 weight, ~52 minutes at Binance's 2,400 a minute) to be back at all."""
        # A fresh socket object asks for a listen key (POST: the live one, or a new one if it died).
        socket = self.adapter(account_id).socket_manager().futures_user_socket()
        # The keep-alive is ours (_keepalive): python-binance's logs a -1125 at ERROR and goes on
        # with the dead key, which is how accounts sat "connected" on dead keys (issue 15).
        socket._start_socket_timer = _no_timer
        _skip_bad_json(socket)
        session = self._sessions[account_id] = self._sessions.get(account_id, 0) + 1
        async with contextlib.AsyncExitStack() as stack:
            if feed.reconnects:
                await self._market_first()
            self._opens_waiting += 1
            self._opens_idle.clear()
            try:
                # Reconnects pass the same gate: after a network blip every socket restarts at once.
                # The time limit keeps one stuck handshake from holding a place forever.
                async with self._opening, asyncio.timeout(SOCKET_OPEN_TIMEOUT_S):
                    await stack.enter_async_context(opened(socket))
            finally:
                self._opens_waiting -= 1
                if not self._opens_waiting:
                    self._opens_idle.set()
            self.listen_keys[account_id] = str(socket._listen_key or "")
            # Connected, and still stale: the gate's "live" must not cover the window where the
            # re-sync has not landed yet (what the account did while the socket was down is unknown).
            feed.connected, feed.stale, feed.resyncing = True, True, True
            await self.sink.feed_changed(feed, became_stale=False, recovered=False)
            backoff.connected()
            keepalive = asyncio.create_task(self._keepalive(account_id, socket), name=f"keepalive:{account_id}")
            stack.callback(keepalive.cancel)
            resync = asyncio.create_task(self._resync_in_turn(account_id, feed, session), name=f"resync:{account_id}")
            stack.callback(resync.cancel)
            while not self._stopping.is_set():
                # The keep-alive is this socket's watchdog: a dead key ends the session through it.
                message = await _recv_or_fail(socket, keepalive)
                if isinstance(message, dict) and message.get("e") in ("error", "listenKeyExpired"):
                    raise ConnectionError(f"user stream: {message.get('e')} {message.get('m', '')}")
                feed.messages += 1
                feed.last_message_ms = int(time.time() * 1000)
                held = self._held.get(account_id)
                if held is not None:
                    held.append(message)
                    continue
                await self._on_user_event(account_id, feed, message)

    async def _market_first(self) -> None:
        """After a fault, let the market socket open first (it carries every account's marks), but
        never wait for it longer than MARKET_FIRST_WAIT_S: user streams recover without it too."""
        if not self._market_up.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MARKET_FIRST_WAIT_S):
                    await self._market_up.wait()

    async def _resync_in_turn(self, account_id: int, feed: FeedStatus, session: int) -> None:
        """The account's REST re-sync after its socket opened: when no socket is waiting to open, in
        turn (accounts holding positions or orders first), retried until it lands."""
        while not self._stopping.is_set():
            await self._opens_idle.wait()
            async with self._resync_turns.turn(self._resync_priority(account_id)):
                # Shielded: a session that ends mid-sync lets the sync finish, or a liquidation it
                # found in forceOrders would be lost with it.
                landed = await asyncio.shield(asyncio.ensure_future(self._resync(account_id, feed, session)))
            if landed:
                return
            await asyncio.sleep(_jitter(RESYNC_RETRY_S))

    def _resync_priority(self, account_id: int) -> int:
        holds = bool(self.open_orders.get(account_id)) or any(True for _ in self.book.positions_plain(account_id))
        return 0 if holds else 1

    async def _resync(self, account_id: int, feed: FeedStatus, session: int) -> bool:
        """One re-sync; True once it landed. The socket's events meanwhile wait in ``_held`` and are
        applied after the exchange's state, in order."""
        held = self._held.setdefault(account_id, [])
        differences: list[dict] | None = None
        try:
            with bulk_weight():
                differences = await self.sync_account(account_id)
        except ExchangeError as exc:
            feed.last_error = f"re-sync: {type(exc).__name__}: {exc}"[:300]
            log.warning("re-sync of account %s failed (%s); again in about %s s", account_id, exc, RESYNC_RETRY_S)
        finally:
            while held:
                await self._on_user_event(account_id, feed, held.pop(0))
            if self._held.get(account_id) is held:
                del self._held[account_id]
        if differences is None:
            return False
        if self._sessions.get(account_id) == session and feed.connected:
            feed.stale, feed.resyncing, feed.down_since_ms = False, False, None
            await self.sink.feed_changed(feed, became_stale=False, recovered=True)
        if differences and feed.reconnects:
            await self.sink.drift_found(account_id, differences)
        return True

    async def _keepalive(self, account_id: int, socket: Any) -> None:
        """PUT listenKey every ``keepalive_s``. -1125 (the key is gone) ends the session: the next one
        asks for a new key and re-syncs over REST. Other failures are retried sooner; the key lives
        60 min, so a few missed keep-alives are harmless."""
        adapter = self.adapter(account_id)
        wait_s = self.keepalive_s
        while True:
            await asyncio.sleep(wait_s)
            try:
                await adapter._call(adapter.client.futures_stream_keepalive, listenKey=socket._listen_key)
                wait_s = self.keepalive_s
            except ExchangeError as exc:
                if exc.code == INVALID_LISTEN_KEY:
                    raise ConnectionError(f"listen key rejected on keep-alive: {exc}") from None
                log.warning("keep-alive of account %s failed (%s); again in %s s", account_id, exc, KEEPALIVE_RETRY_S)
                wait_s = min(self.keepalive_s, KEEPALIVE_RETRY_S)

    async def _on_user_event(self, account_id: int, feed: FeedStatus, event: Any) -> None:
        kind = event.get("e") if isinstance(event, dict) else None
        try:
            if kind == "ACCOUNT_UPDATE":
                reports = self._apply_account_update(account_id, event)
            elif kind == "ORDER_TRADE_UPDATE":
                reports = self._apply_order_event(account_id, event)
                await self.sink.exchange_event(account_id, event)
            elif kind == "MARGIN_CALL":
                reports = []
                await self.sink.exchange_event(account_id, event)
            elif kind in ("TRADE_LITE", "ACCOUNT_CONFIG_UPDATE", "ALGO_UPDATE"):
                reports = self._apply_config(account_id, event)
            else:
                self._malformed(feed, event)
                return
        except (KeyError, TypeError, ValueError, ArithmeticError):
            self._malformed(feed, event)
            return
        for name, args in reports:
            await self._tell(name, *args)

    async def _tell(self, name: str, *args: Any) -> None:
        """The sink's optional account events (see Sink): a sink without one is not told."""
        method = getattr(self.sink, name, None)
        if method is not None:
            await method(*args)

    def _apply_order_event(self, account_id: int, event: dict) -> list[tuple[str, tuple]]:
        order = event["o"]
        if order.get("x") not in FILL_EXECUTIONS:
            self._apply_order_update(account_id, order)
            return []
        symbol, side, order_id = order["s"], order.get("ps", "BOTH"), str(order["i"])
        if not is_liquidation_order(order):
            self._apply_order_update(account_id, order)
            self._last_fill[(account_id, symbol, side)] = (order_id, str(order.get("L", "")))
            return [("fill_seen", (account_id, event))]
        # The exchange sends a liquidation's fills first and the ACCOUNT_UPDATE that closes the
        # position after them: the book still holds the position here, with the desk's last
        # liquidation price and distance, which the LIQUIDATED alert reports. One row per order,
        # taken at its first fill (later partial fills would see a position already smaller).
        if order_id not in self._liquidation_before:
            self._liquidation_before[order_id] = self._plain_row(account_id, symbol, side)
        before = self._liquidation_before[order_id]
        if order.get("X") != "PARTIALLY_FILLED":
            del self._liquidation_before[order_id]
        self._remember_liquidation(account_id, symbol, side, order_id)
        self.liquidated_at[account_id] = _event_ms(event, order)
        if order.get("X") == "FILLED" and before is not None and abs(dec(before["qty"])) <= dec(order.get("z", "0")):
            # Closed in full: the evaluator may drop work about it now, a few ms before the ACCOUNT_UPDATE.
            self.closed_positions[(account_id, f"{symbol}:{side}")] = _event_ms(event, order)
        self._apply_order_update(account_id, order)
        return [("liquidation_seen", (account_id, event, before))]

    def _remember_liquidation(self, account_id: int, symbol: str, side: str, order_id: str) -> None:
        self._liquidated[(account_id, symbol, side)] = order_id
        self._liquidations_seen[order_id] = None
        if len(self._liquidations_seen) > LIQUIDATIONS_REMEMBERED:
            del self._liquidations_seen[next(iter(self._liquidations_seen))]

    def _plain_row(self, account_id: int, symbol: str, side: str) -> dict | None:
        """The book's plain row of one position, or None. Builds the account's rows: only for a close,
        a liquidation or a re-levering, never per tick."""
        if not self.book.has_account(account_id):
            return None
        rows = self.book.positions_plain(account_id)
        return next((p for p in rows if p["symbol"] == symbol and p["side"] == side), None)

    def _apply_account_update(self, account_id: int, event: dict) -> list[tuple[str, tuple]]:
        body = event["a"]
        reason, time_ms = body.get("m", ""), _event_ms(event)
        changed: set[int] = set()
        reports: list[tuple[str, tuple]] = []
        if reason == "FUNDING_FEE":
            reports.append(("funding_seen", (account_id, event)))
        wallets = {balance["a"]: dec(balance["cw"]) for balance in body.get("B", [])}
        if "USDT" in wallets:
            self._wallets[account_id] = wallets["USDT"]
        if wallets:
            changed |= self.wallets.apply(account_id, wallets)
        for row in body.get("P", []):
            symbol, qty, side = row["s"], dec(row["pa"]), row.get("ps", "BOTH")
            margin_type = "isolated" if row.get("mt") == "isolated" else "cross"
            reports += self._margin_type_seen(account_id, symbol, margin_type, time_ms, reason)
            if qty == 0:
                before = self._plain_row(account_id, symbol, side)
                if before is not None:  # a flat row of a symbol the book did not hold closes nothing
                    changed |= self.book.remove_position(account_id, symbol, side)
                    reports += self._closed(account_id, symbol, side, before, time_ms)
                continue
            self._reopened(account_id, symbol, side)
            leverage = self._leverage.get((account_id, symbol), 1)
            changed |= self.book.upsert_position(
                account_id,
                BookPosition(
                    symbol=symbol,
                    side=side,
                    qty=_book_qty(side, qty),
                    entry_price=dec(row["ep"]),
                    leverage=leverage,
                    margin_type=margin_type,
                    isolated_wallet=dec(row.get("iw", "0")),
                    margin_asset=row.get("ma", "USDT"),
                ),
            )
        self._note_changed(changed | {account_id})
        return reports

    def _closed(self, account_id: int, symbol: str, side: str, before: dict, time_ms: int) -> list[tuple[str, tuple]]:
        """A position the exchange closed: the evaluator learns at once; the ledger records it, unless it
        was liquidated (the liquidation's own report records that close, with its order)."""
        # setdefault: a liquidation's fill marked it already, a few ms earlier than this ACCOUNT_UPDATE.
        self.closed_positions.setdefault((account_id, f"{symbol}:{side}"), time_ms)
        _, last_price = self._last_fill.pop((account_id, symbol, side), ("", ""))
        if self._liquidated.pop((account_id, symbol, side), None) is not None:
            return []
        close = {
            "symbol": symbol,
            "side": side,
            "reason": "closed",
            "time_ms": time_ms,
            "qty": dec(before["qty"]),
            "entry_price": dec(before["entry_price"]),
            "exit_price": dec(last_price) if last_price else None,
            "before": before,
            # No order id: the ledger sums the position's fills since its last close, partial
            # reductions by earlier orders included, not only the last order's.
            "order_id": "",
        }
        return [("position_closed", (account_id, close))]

    def _reopened(self, account_id: int, symbol: str, side: str) -> None:
        self.closed_positions.pop((account_id, f"{symbol}:{side}"), None)
        self._liquidated.pop((account_id, symbol, side), None)  # a partial liquidation: the position lives on

    def _margin_type_seen(
        self, account_id: int, symbol: str, margin_type: str, time_ms: int, reason: str
    ) -> list[tuple[str, tuple]]:
        old = self._margin_types.get((account_id, symbol))
        self._margin_types[(account_id, symbol)] = margin_type
        if old == margin_type or (old is None and reason != "MARGIN_TYPE_CHANGE"):
            return []
        change = {"what": "margin_type", "symbol": symbol, "old": old, "new": margin_type, "time_ms": time_ms}
        return [("config_changed", (account_id, change))]

    def _apply_order_update(self, account_id: int, order: dict) -> None:
        """Keep the account's resting orders current: the gate checks self-trades and open-order caps on them."""
        book = self.open_orders.setdefault(account_id, {})
        key = str(order["i"])
        if order.get("X") in ("NEW", "PARTIALLY_FILLED"):
            book[key] = {
                "orderId": order["i"],
                "clientOrderId": order.get("c", ""),
                "symbol": order["s"],
                "side": order["S"],
                "type": order.get("o", ""),
                "price": order.get("p", "0"),
                "origQty": order.get("q", "0"),
                "executedQty": order.get("z", "0"),
                "reduceOnly": bool(order.get("R")),
                "positionSide": order.get("ps", "BOTH"),
            }
        else:
            book.pop(key, None)
        if order.get("x") == "TRADE":
            self.fills_seen[account_id] = self.fills_seen.get(account_id, 0) + 1
        self._note_changed({account_id})

    def _apply_config(self, account_id: int, event: dict) -> list[tuple[str, tuple]]:
        """ACCOUNT_CONFIG_UPDATE: ``ac`` a symbol's leverage, ``ai`` the multi-assets mode. The new
        leverage goes into the book's positions of the symbol at once, so the live state and the order
        gate (POSITION_LEVERAGE_HIGH) see it at the next flush."""
        if event.get("e") != "ACCOUNT_CONFIG_UPDATE":
            return []
        reports: list[tuple[str, tuple]] = []
        time_ms = _event_ms(event)
        config = event.get("ac")
        if isinstance(config, dict) and "s" in config and "l" in config:
            symbol, leverage = config["s"], int(config["l"])
            old = self._leverage.get((account_id, symbol))
            self._leverage[(account_id, symbol)] = leverage
            self._relever(account_id, symbol, leverage)
            if old != leverage:
                change = {"what": "leverage", "symbol": symbol, "old": old, "new": leverage, "time_ms": time_ms}
                reports.append(("config_changed", (account_id, change)))
        multi = event.get("ai")
        if isinstance(multi, dict) and "j" in multi:
            enabled, old_mode = bool(multi["j"]), self.multi_assets.get(account_id)
            self.multi_assets[account_id] = enabled
            if old_mode != enabled:
                change = {"what": "multi_assets", "symbol": "account", "old": old_mode, "new": enabled}
                reports.append(("config_changed", (account_id, {**change, "time_ms": time_ms})))
        return reports

    def _relever(self, account_id: int, symbol: str, leverage: int) -> None:
        if not self.book.has_account(account_id):
            return
        upserts = [
            (account_id, dataclasses.replace(p, leverage=leverage))
            for p in self._book_inputs(account_id)
            if p.symbol == symbol and p.leverage != leverage
        ]
        if upserts:
            self._note_changed(self.book.upsert_positions(upserts) | {account_id})

    def _book_inputs(self, account_id: int) -> list[BookPosition]:
        return [
            BookPosition(
                symbol=p.symbol,
                side=p.side,
                qty=p.qty,
                entry_price=p.entry_price,
                leverage=p.leverage,
                margin_type=p.margin_type,
                isolated_wallet=p.isolated_wallet,
                margin_asset=p.margin_asset,
            )
            for p in self.book.positions(account_id)
        ]

    # --- output ------------------------------------------------------------------------

    def _note_changed(self, accounts: set[int]) -> None:
        if not accounts:
            return
        self._pending.accounts |= accounts
        for listener in self.listeners:
            result = listener(accounts)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)

    async def _flush_loop(self) -> None:
        # Persistence is off the tick path and rate-bounded: one write per account per interval.
        full_gc_at = time.monotonic() + GC_FULL_EVERY_S
        while not self._stopping.is_set():
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self._flush()
            except Exception:
                log.exception("flushing stream state failed; will retry")
            if time.monotonic() >= full_gc_at:  # right after a flush: the next is an interval away
                full_gc_at = time.monotonic() + GC_FULL_EVERY_S
                gc.collect()

    async def _flush(self) -> None:
        for account_id in await self.sink.resync_requests():
            if account_id in self.accounts:
                with contextlib.suppress(ExchangeError):
                    differences = await self.sync_account(account_id)
                    if differences:
                        await self.sink.drift_found(account_id, differences)
        pending, self._pending = self._pending, _Pending()
        if pending.marks:
            await self.sink.marks_changed(pending.marks)
        known = set(self.book.account_ids())
        defer_until = time.monotonic() + FLUSH_DEFER_MAX_S  # for the whole flush, not per account
        for account_id in sorted(pending.accounts):
            if account_id in self.accounts and account_id in known:
                await self.sink.account_changed(
                    account_id, self.book, list(self.open_orders.get(account_id, {}).values())
                )
                # ~1 ms of figures per account: without a yield here a flush of 2,000 accounts held
                # the loop for seconds, and market frames (and the silence watchdog) waited behind it.
                await asyncio.sleep(0)
                await self._defer(defer_until)
        await self.sink.feed_changed(self.market, became_stale=False, recovered=False)
        await self._publish_user_feeds()

    async def _publish_user_feeds(self) -> None:
        """User feeds that received events since they were last published: their count and time.
        Published only on connect and stale changes, a stream that had events still read "quiet (no
        account events yet)" on the pages. Once per flush, and only the feeds that moved."""
        for feed in self.user_feeds.values():
            if feed.messages != self._user_feed_published.get(feed.name):
                self._user_feed_published[feed.name] = feed.messages
                await self.sink.feed_changed(feed, became_stale=False, recovered=False)

    async def _defer(self, until: float) -> None:
        """Wait while an alert is on its way out (``flush_defers_to``), but not past ``until``.
        The flush's figures can be a few milliseconds late; the alert's write and push, sharing
        the GIL and two cores with it, were the tail of bench/alerts.py. The budget is the whole
        flush's: a writer stuck retrying (database away) must not hold every account back."""
        while any(busy() for busy in self.flush_defers_to) and time.monotonic() < until:
            await asyncio.sleep(FLUSH_DEFER_POLL_S)

    def _malformed(self, feed: FeedStatus, sample: Any) -> None:
        feed.malformed += 1
        if feed.name not in self._logged_malformed:
            self._logged_malformed.add(feed.name)  # once per feed: a flood must not flood the log
            log.warning("malformed payload on %s skipped (further ones only counted): %.300r", feed.name, sample)


class _Turns:
    """A semaphore that serves its waiters by priority (lower first), then in order of arrival."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def turn(self, priority: int):
        if self._free > 0 and not self._waiters:
            self._free -= 1
        else:
            granted = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()  # granted as it was cancelled: the turn passes on
                raise  # a cancelled waiter stays in the heap; _release skips it
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            granted = heapq.heappop(self._waiters)[2]
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1


def settle_gc() -> None:
    """The garbage collector as a process that runs a StreamEngine wants it; call once the engine
    has started. The start-up sync leaves ~100k long-lived objects (positions with their Decimals,
    brackets) that every full collection would walk on the tick path: frozen, collections skip
    them. Each flush makes ~10,000 short-lived dicts (freed by reference counting, not by the
    collector) that at the default thresholds (700, 10, 10) set off ~20 collections a second and a
    full one every few seconds (up to 64 ms at 10,000 positions, bench/alerts.py). Young
    collections every 50,000 net allocations; full ones from the flush loop every GC_FULL_EVERY_S.
    Not for a test process: frozen objects are never collected, cycles included."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _bounded(limit: int, job: Callable[[int], Awaitable[None]], account_ids: Iterable[int]) -> None:
    """Run ``job`` for every account, at most ``limit`` at a time. The first exception
    propagates and cancels the rest, as it ended the one-at-a-time loop this replaces."""
    gate = asyncio.Semaphore(limit)

    async def one(account_id: int) -> None:
        async with gate:
            await job(account_id)

    tasks = [asyncio.ensure_future(one(a)) for a in account_ids]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def is_liquidation_order(order: dict) -> bool:
    client_id = str(order.get("c") or "")
    return (
        order.get("o") == "LIQUIDATION" or client_id.startswith(LIQUIDATION_CLIENT_PREFIX) or client_id == ADL_CLIENT_ID
    )


def _event_ms(event: dict, order: dict | None = None) -> int:
    return int((order or {}).get("T") or event.get("T") or event.get("E") or time.time() * 1000)


def _position_differences(old: dict | None, new: Any) -> list[dict]:
    """What the desk's plain row ``old`` and the exchange's ExchangePosition ``new`` disagree on."""
    where = {"symbol": new.symbol, "side": new.side}
    if old is None:
        return [{"kind": "qty", **where, "desk_qty": "0", "exchange_qty": str(new.qty)}]
    differences = []
    if dec(old["qty"]) != _book_qty(new.side, new.qty) or dec(old["entry_price"]) != new.entry_price:
        differences.append(
            {
                "kind": "qty",
                **where,
                "desk_qty": old["qty"],
                "exchange_qty": str(new.qty),
                "desk_entry": old["entry_price"],
                "exchange_entry": str(new.entry_price),
            }
        )
    if new.leverage and old["leverage"] != new.leverage:
        differences.append(
            {"kind": "leverage", **where, "desk_leverage": old["leverage"], "exchange_leverage": new.leverage}
        )
    if old["margin_type"] != new.margin_type:
        differences.append(
            {
                "kind": "margin_type",
                **where,
                "desk_margin_type": old["margin_type"],
                "exchange_margin_type": new.margin_type,
            }
        )
    return differences


def force_order_event(row: dict, before: dict | None) -> dict:
    """A forceOrders row as the ORDER_TRADE_UPDATE the stream would have carried, for the ledger.
    The row has no realized PnL: it is estimated from the book's entry price (``before``), as the
    exchange computes it, and marked ``rp_estimated``; the exchange's liquidation fee is not in it."""
    qty, price = dec(row.get("executedQty", "0")), dec(row.get("avgPrice") or row.get("price") or "0")
    client_id = row.get("clientOrderId", "")
    order = {
        "s": row["symbol"],
        "c": client_id,
        "S": row.get("side", ""),
        "o": row.get("type", "") if client_id == ADL_CLIENT_ID else "LIQUIDATION",
        "f": row.get("timeInForce", "IOC"),
        "q": row.get("origQty", "0"),
        "p": row.get("price", "0"),
        "ap": row.get("avgPrice", "0"),
        "x": "TRADE",
        "X": row.get("status", "FILLED"),
        "i": row["orderId"],
        "l": row.get("executedQty", "0"),
        "z": row.get("executedQty", "0"),
        "L": row.get("avgPrice", "0"),
        "n": "0",
        "N": "USDT",
        "T": row.get("updateTime") or row.get("time") or int(time.time() * 1000),
        "t": 0,
        "R": row.get("reduceOnly", True),
        "ps": row.get("positionSide", "BOTH"),
    }
    if before is not None and before.get("entry_price") and qty:
        direction = 1 if row.get("side") == "SELL" else -1  # a SELL closes a long
        order["rp"] = str((price - dec(before["entry_price"])) * qty * direction)
        order["rp_estimated"] = True
    return {"e": "ORDER_TRADE_UPDATE", "E": order["T"], "T": order["T"], "o": order, "source": "forceOrders"}


def _order_key(order: dict) -> str:
    return str(order["orderId"])


def _open_order(order: dict) -> dict:
    keys = (
        "orderId",
        "clientOrderId",
        "symbol",
        "side",
        "type",
        "price",
        "origQty",
        "executedQty",
        "reduceOnly",
        "positionSide",
    )
    return {k: order.get(k) for k in keys}


def _smaller_or_gone(now: Any, row: dict) -> bool:
    """The exchange's position (None: none) is gone or smaller than the desk's row of it."""
    return now is None or abs(now.qty) < abs(dec(row["qty"]))


def _book_qty(side: str, qty: Decimal) -> Decimal:
    # The book holds hedge legs as absolute sizes and one-way positions signed, as Binance reports them.
    return abs(qty) if side in ("LONG", "SHORT") else qty


def _parse_marks(rows: list) -> tuple[list[str], list[Decimal], int] | None:
    # One comprehension per field rather than one loop over the rows: this runs on every
    # full-market frame (~330 rows), ahead of the book, and the comprehensions halve its cost.
    try:
        symbols = [row["s"] for row in rows]
        prices = [Decimal(row["p"]) for row in rows]
        ts = max(0, *[int(row["E"]) for row in rows])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    if not symbols or not all(price.is_finite() and price > 0 for price in prices):
        return None
    return symbols, prices, ts


@contextlib.asynccontextmanager
async def opened(socket: Any):
    """Open a python-binance socket and always get rid of it, even mid-reconnect.

    Its own __aexit__ waits for the read loop to end, but a read loop that is
    reconnecting (after a 1001 close, say) sets itself back to STREAMING and never
    ends, so the exit would hang forever. We cancel that loop's task ourselves and
    bound the library's exit with a timeout."""
    _track_read_loop(socket)
    _resolve_proxy_once(socket)
    try:
        await socket.__aenter__()
    except BaseException:  # a handshake cut short by a timeout may have left a connection half open
        await close_socket(socket)
        raise
    try:
        yield socket
    finally:
        await close_socket(socket)


_PROXIES: dict[tuple[bool, str, int], str | None] = {}


def _resolve_proxy_once(socket: Any) -> None:
    """The proxy for the exchange's WebSocket host, looked up once per host. websockets looks it up
    on every connect (urllib's getproxies walks and decodes the whole environment): a quarter of the
    event loop's time while 2,000 sockets re-opened (bench/recovery.py, cProfile). Passing the same
    answer explicitly keeps HTTPS_PROXY / NO_PROXY working as before."""
    if getattr(socket, "_https_proxy", None) or "proxy" in socket._ws_kwargs:
        return  # python-binance's own proxy path, or a caller's choice
    from websockets.proxy import get_proxy
    from websockets.uri import parse_uri

    try:
        uri = parse_uri(str(socket._url))
    except Exception:
        return  # let websockets report a bad URL at connect
    key = (uri.secure, uri.host, uri.port)
    if key not in _PROXIES:
        _PROXIES[key] = get_proxy(uri)
    socket._ws_kwargs["proxy"] = _PROXIES[key]


def _track_read_loop(socket: Any) -> None:
    """Remember the read loop's task(s) as python-binance starts them (it keeps only a call handle),
    so closing a socket cancels its own loop. Finding it by walking every task made each close
    O(tasks): 2,000 sockets dropped at once held the loop ~4 s per 1,000 (bench/recovery.py)."""
    tasks: set[asyncio.Task] = set()
    socket._riskdesk_read_tasks = tasks
    original = socket._read_loop

    async def read_loop() -> Any:
        task = asyncio.current_task()
        tasks.add(task)
        try:
            return await original()
        finally:
            tasks.discard(task)

    socket._read_loop = read_loop


async def close_socket(socket: Any) -> None:
    from binance.ws.reconnecting_websocket import WSListenerState

    socket.ws_state = WSListenerState.EXITING
    if hasattr(socket, "_riskdesk_read_tasks"):
        for task in socket._riskdesk_read_tasks:
            task.cancel()
    else:  # not opened by opened(): find its loop among every task (slow with thousands of sockets)
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            if frame is not None and coro.__qualname__.endswith("_read_loop") and frame.f_locals.get("self") is socket:
                task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(socket.__aexit__(None, None, None), timeout=2.0)


def _skip_bad_json(socket: Any) -> None:
    """python-binance ends its read loop on a frame that is not JSON; turn such a frame
    into a marker message instead, so one bad frame is counted and skipped, not fatal."""
    original = socket.json_loads

    def tolerant(raw: Any) -> Any:
        try:
            return original(raw)
        except (ValueError, TypeError):
            return {"e": MALFORMED, "raw": str(raw)[:300]}

    socket.json_loads = tolerant


def _jitter(seconds: float) -> float:
    return seconds * (0.5 + random.random() / 2)


class Backoff:
    """Reconnect waits: doubling from ``start_s`` up to ``cap_s``, each jittered to between half and
    all of it (thousands of sockets that failed together do not come back together), and from the
    start again once a session stayed up ``healthy_after_s``: one bad hour does not slow the
    recovery from the next blip."""

    def __init__(
        self,
        *,
        start_s: float = BACKOFF_START_S,
        cap_s: float = BACKOFF_CAP_S,
        healthy_after_s: float = HEALTHY_AFTER_S,
    ):
        self.start_s, self.cap_s, self.healthy_after_s = start_s, cap_s, healthy_after_s
        self._next_s = start_s
        self._connected_at: float | None = None

    def connected(self) -> None:
        """The session is up (the socket open, the state re-synced)."""
        self._connected_at = time.monotonic()

    def next_delay(self) -> float:
        """How long to wait before the next attempt, after a session (or an attempt) ended."""
        if self._connected_at is not None and time.monotonic() - self._connected_at >= self.healthy_after_s:
            self._next_s = self.start_s
        self._connected_at = None
        delay = _jitter(min(self._next_s, self.cap_s))
        self._next_s = min(self._next_s * 2, self.cap_s)
        return delay


def _no_timer() -> None:
    """Stands in for python-binance's keep-alive timer (the engine runs its own)."""


async def _recv_or_fail(socket: Any, watchdog: asyncio.Task) -> Any:
    """The socket's next message, unless ``watchdog`` ends first (its exception is raised)."""
    receive = asyncio.ensure_future(socket.recv())
    try:
        done, _ = await asyncio.wait({receive, watchdog}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not receive.done():
            receive.cancel()
        # Retrieved whatever happens (a stop cancels us mid-wait): no "exception never retrieved".
        receive.add_done_callback(_retrieve)
    if receive in done and not receive.cancelled():
        return receive.result()
    watchdog.result()  # raises what ended it
    raise ConnectionError("the keep-alive ended")


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
