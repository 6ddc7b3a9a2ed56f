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
- restarts back off exponentially with jitter, capped;
- malformed payloads are counted, logged once with a sample, and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from marketdata.exchange import BinanceFutures, ExchangeError, dec
from positions.book import BookPosition, RiskBook

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
# Start-up with thousands of accounts. One request at a time leaves both processes idle
# for each round trip (2,000 accounts' brackets took ~100 s that way); everything at once
# queues more signed requests and WebSocket handshakes than the exchange answers within
# python-binance's handshake timeout and the 5 s recvWindow (-1021), so sockets restart
# until the herd thins (4,725 restarts for 2,000 sockets). A small bound keeps the
# pipe full without the herd; the exchange's weight limit is enforced by the adapter.
REST_CONCURRENCY = 8  # REST fetches (brackets, the first sync) in flight at start-up
SOCKET_OPEN_CONCURRENCY = 16  # user-data sockets opening (listen key, handshake, re-sync) at once
SOCKET_OPEN_TIMEOUT_S = 60.0  # for one of them; past it the session restarts with backoff
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Sink(Protocol):
    """Where the engine's results go. Every method must be quick or hand off."""

    async def account_changed(self, account_id: int, book: RiskBook, open_orders: list[dict]) -> None:
        """Read what it needs of the account from ``book`` during the call: the book moves on after it."""

    async def marks_changed(self, marks: dict[str, tuple[Decimal, int]]) -> None: ...

    async def feed_changed(self, status: FeedStatus, *, became_stale: bool, recovered: bool) -> None: ...

    async def exchange_event(self, account_id: int, event: dict) -> None: ...

    async def drift_found(self, account_id: int, differences: list[dict]) -> None: ...

    async def resync_requests(self) -> list[int]: ...


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
    ):
        self.accounts = {a.id: a for a in accounts}
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
        self._pending = _Pending()
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._logged_malformed: set[str] = set()
        self._opening = asyncio.Semaphore(SOCKET_OPEN_CONCURRENCY)  # see SOCKET_OPEN_CONCURRENCY
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
        self._tasks += [asyncio.create_task(worker(), name=worker.__qualname__) for worker in self.workers]

    async def run_forever(self) -> None:
        await self.start()
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._flush()
        for adapter in self._adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()

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
        """Make the book hold exactly what the exchange says; return the differences found."""
        adapter = self.adapter(account_id)
        positions = await adapter.positions()
        self.open_orders[account_id] = {_order_key(o): _open_order(o) for o in await adapter.open_orders()}
        state = await adapter.account()
        known = account_id in set(self.book.account_ids())
        held = {(p.symbol, p.side): p for p in self.book.positions(account_id)} if known else {}
        seen: set[tuple[str, str]] = set()
        differences: list[dict] = []
        changed = self.book.set_wallet(account_id, state.cross_wallet_balance)
        # One upsert_positions call per account: each call re-indexes the whole book, so one
        # call per position made a sync O(positions x book) and held the event loop (and the
        # market frames behind it) ~0.25 s per 50-position account on a 100k-position book.
        upserts: list[tuple[int, BookPosition]] = []
        for p in positions:
            key = (p.symbol, p.side)
            seen.add(key)
            if p.leverage:
                self._leverage[(account_id, p.symbol)] = p.leverage
            leverage = p.leverage or self._leverage.get((account_id, p.symbol), 1)
            old = held.get(key)
            if old is not None and (old.qty != _book_qty(p.side, p.qty) or old.entry_price != p.entry_price):
                differences.append(
                    {
                        "symbol": p.symbol,
                        "side": p.side,
                        "desk_qty": str(old.qty),
                        "exchange_qty": str(p.qty),
                        "desk_entry": str(old.entry_price),
                        "exchange_entry": str(p.entry_price),
                    }
                )
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
        for key, old in held.items():
            if key not in seen:
                differences.append({"symbol": key[0], "side": key[1], "desk_qty": str(old.qty), "exchange_qty": "0"})
                changed |= self.book.remove_position(account_id, *key)
        self._note_changed(changed | {account_id})
        return differences

    async def resync_marks(self) -> None:
        marks = await self.adapter(self._market_spec.id).mark_prices()
        if marks:
            ts = max(m.time_ms for m in marks.values()) or int(time.time() * 1000)
            changed = self.book.apply_marks({s: m.price for s, m in marks.items()}, ts=ts)
            self._pending.marks.update({s: (m.price, m.time_ms or ts) for s, m in marks.items()})
            self._note_changed(changed)

    # --- market stream ----------------------------------------------------------------

    async def _market_loop(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            try:
                await self._market_session()
                backoff = BACKOFF_START_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: restart the socket, never die
                self.market.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("market stream restarting after %s", self.market.last_error)
            await self._set_market_connected(False)
            self.market.reconnects += 1
            await asyncio.sleep(_jitter(backoff))
            backoff = min(backoff * 2, BACKOFF_CAP_S)

    async def _market_session(self) -> None:
        socket = self.adapter(self._market_spec.id).socket_manager().all_mark_price_socket()
        _skip_bad_json(socket)
        async with opened(socket):
            await self._set_market_connected(True)
            with contextlib.suppress(ExchangeError):
                await self.resync_marks()  # fill the gap the reconnect left
            while not self._stopping.is_set():
                try:
                    message = await asyncio.wait_for(socket.recv(), timeout=self.stale_after_s)
                except TimeoutError:
                    await self._mark_stale()
                    raise ConnectionError(f"no market data for {self.stale_after_s} s") from None
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
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            try:
                await self._user_session(account_id, feed)
                backoff = BACKOFF_START_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                feed.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("user stream %s restarting after %s", account_id, feed.last_error)
            feed.connected = False
            feed.reconnects += 1
            await self.sink.feed_changed(feed, became_stale=False, recovered=False)
            await asyncio.sleep(_jitter(backoff))
            backoff = min(backoff * 2, BACKOFF_CAP_S)

    async def _user_session(self, account_id: int, feed: FeedStatus) -> None:
        # A fresh socket object asks for a fresh listen key; keepalive every 30 min as Binance advises.
        socket = self.adapter(account_id).socket_manager().futures_user_socket()
        socket._user_timeout = 30 * 60
        _skip_bad_json(socket)
        async with contextlib.AsyncExitStack() as stack:
            # Reconnects pass the same gate: after a network blip every socket restarts at once.
            # The time limit keeps one stuck handshake or request from holding a place forever.
            async with self._opening, asyncio.timeout(SOCKET_OPEN_TIMEOUT_S):
                await stack.enter_async_context(opened(socket))
                feed.connected, feed.stale = True, False
                await self.sink.feed_changed(feed, became_stale=False, recovered=True)
                differences = await self.sync_account(account_id)
            if differences and feed.reconnects:
                await self.sink.drift_found(account_id, differences)
            while not self._stopping.is_set():
                message = await socket.recv()
                if isinstance(message, dict) and message.get("e") in ("error", "listenKeyExpired"):
                    raise ConnectionError(f"user stream: {message.get('e')} {message.get('m', '')}")
                feed.messages += 1
                feed.last_message_ms = int(time.time() * 1000)
                await self._on_user_event(account_id, feed, message)

    async def _on_user_event(self, account_id: int, feed: FeedStatus, event: Any) -> None:
        kind = event.get("e") if isinstance(event, dict) else None
        try:
            if kind == "ACCOUNT_UPDATE":
                self._apply_account_update(account_id, event["a"])
            elif kind == "ORDER_TRADE_UPDATE":
                self._apply_order_update(account_id, event["o"])
                await self.sink.exchange_event(account_id, event)
            elif kind == "MARGIN_CALL":
                await self.sink.exchange_event(account_id, event)
            elif kind in ("TRADE_LITE", "ACCOUNT_CONFIG_UPDATE", "ALGO_UPDATE"):
                self._apply_config(account_id, event)
            else:
                self._malformed(feed, event)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            self._malformed(feed, event)

    def _apply_account_update(self, account_id: int, body: dict) -> None:
        changed: set[int] = set()
        for balance in body.get("B", []):
            if balance["a"] == "USDT":
                changed |= self.book.set_wallet(account_id, dec(balance["cw"]))
        for row in body.get("P", []):
            qty, side = dec(row["pa"]), row.get("ps", "BOTH")
            if qty == 0:
                changed |= self.book.remove_position(account_id, row["s"], side)
                continue
            leverage = self._leverage.get((account_id, row["s"]), 1)
            changed |= self.book.upsert_position(
                account_id,
                BookPosition(
                    symbol=row["s"],
                    side=side,
                    qty=_book_qty(side, qty),
                    entry_price=dec(row["ep"]),
                    leverage=leverage,
                    margin_type="isolated" if row.get("mt") == "isolated" else "cross",
                    isolated_wallet=dec(row.get("iw", "0")),
                    margin_asset=row.get("ma", "USDT"),
                ),
            )
        self._note_changed(changed | {account_id})

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

    def _apply_config(self, account_id: int, event: dict) -> None:
        config = event.get("ac")
        if isinstance(config, dict) and "s" in config and "l" in config:
            self._leverage[(account_id, config["s"])] = int(config["l"])

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
    await socket.__aenter__()
    try:
        yield socket
    finally:
        await close_socket(socket)


async def close_socket(socket: Any) -> None:
    from binance.ws.reconnecting_websocket import WSListenerState

    socket.ws_state = WSListenerState.EXITING
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


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
