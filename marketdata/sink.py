"""The stream engine's Django side: persistence, live state and alerts for what the book reports."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import multiprocessing
import operator
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, transaction

from marketdata import bars as market_bars
from marketdata import live, sink_child
from marketdata.services import marks_write
from marketdata.streams import FeedStatus
from positions.book import (
    AccountRisk,
    PositionRisk,
    RiskBook,
    account_risk_from_plain,
    position_risk_from_plain,
)
from positions.services import order_event_record, positions_write_many, snapshots_write_many
from rules import anomalies as anomaly_detectors

log = logging.getLogger(__name__)

CRITICAL, WARNING = 30, 20


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_ACCOUNT_FIELDS = tuple(f.name for f in dataclasses.fields(AccountRisk) if f.name != "per_asset")
_POSITION_FIELDS = tuple(f.name for f in dataclasses.fields(PositionRisk))
# What a Position row stores of a position besides its figures: a change in any is written at once.
_ROW_INPUTS = ("symbol", "side", "qty", "entry_price", "leverage", "margin_type", "isolated_wallet")
_row_inputs = operator.itemgetter(*_ROW_INPUTS)  # of a positions_plain() row


def account_state(
    risk: AccountRisk | dict[str, Any], positions: list[PositionRisk] | list[dict[str, Any]], open_orders: list[dict]
) -> dict[str, Any]:
    """JSON-safe live figures for one account: Decimals as strings, with the time they describe.
    ``risk`` and ``positions``: the book's AccountRisk and PositionRisk rows, or
    ``RiskBook.account_plain()`` and ``positions_plain()`` (the same, already as strings: what the
    engine's flush uses, without building the Decimals).
    Fields are read directly, not through dataclasses.asdict: its deep copies cost ~3 ms an account
    (50 positions) for every account of every flush."""
    if isinstance(risk, dict):
        figures = {k: risk[k] for k in _ACCOUNT_FIELDS}
    else:
        figures = {k: _plain(getattr(risk, k)) for k in _ACCOUNT_FIELDS}
    return {
        "account_id": figures["account_id"],
        "published_ms": live.now_ms(),
        "figures": figures,
        "positions": [
            p if isinstance(p, dict) else {k: _plain(getattr(p, k)) for k in _POSITION_FIELDS} for p in positions
        ],
        "open_orders": _plain(open_orders),
    }


def risk_summary(state: dict[str, Any]) -> dict[str, Any]:
    """What ``risk.changed`` carries per account: its figures and their time. The positions and orders
    stay in the cache (pages and the order gate read them there): the desk page re-fetches what it
    shows on this event, and 50 positions per account per flush to every desk socket cost the web
    process more than everything else it did (bench/alerts.py)."""
    return {k: state[k] for k in ("account_id", "published_ms", "figures")}


def publish_states(states: dict[int, dict[str, Any]]) -> None:
    """Live state of every account in ``states`` to the cache in one round trip, then the pushes."""
    from alerts import broadcast

    live.accounts_set(states)
    broadcast.risk_changed([risk_summary(state) for state in states.values()])


def alert_raise(**kwargs: Any) -> None:
    from alerts import services as alert_services

    alert_services.alert_raise(**kwargs)


def alert_clear(**kwargs: Any) -> None:
    from alerts import services as alert_services

    alert_services.alert_clear(**kwargs)


PERSIST_EVERY_S = 5.0  # snapshots (and Position rows that are due) per account; the live state is per flush
PERSIST_GATHER_S = 0.05  # one engine flush hands over its accounts one by one: write them as one batch
PUBLISH_GATHER_S = 0.01  # the same for the live state: one cache round trip for the flush's accounts
POSITION_FIGURES_EVERY_S = 60.0  # Position rows whose inputs did not change: their figures this often
MARKS_WRITE_EVERY_S = 5.0  # Symbol.mark_price rows; the cache's live marks are written every flush
PERSIST_ATTEMPTS = 8  # about two minutes of back-off before a batch is given up (and logged)
PERSIST_CHUNK_ACCOUNTS = 100  # accounts per transaction (~5,000 position rows)
FEED_WRITE_ATTEMPTS = 8  # a feed alert that cannot be written is retried with back-off, then logged
TIMINGS_KEPT = 100_000  # batch timings kept for the benches
PUBLISH, PERSIST, MARKS, BARS = "publish", "persist", "marks", "bars"  # the kinds of sink work
BARS_ATTEMPTS = 5  # a minute's bars are retried with back-off (~30 s), then logged and dropped
OUTBOARD_QUEUE_MAX = 20_000  # values queued for the sink process (~50 flushes of 200 accounts x 2)
BATCH_IDLE_S = 2.0  # a batch thread ends after this long with nothing to do (and starts again on demand)
STOP_DRAIN_S = 20.0  # a clean stop waits this long for the sink's queued work
EVENT_WRITE_ATTEMPTS = 6  # an exchange event's record is retried with back-off (~30 s), then logged and dropped
ANOMALY_RELOAD_S = 60.0  # the detectors' levels and baselines (rules.baselines) are re-read this often


def persist_accounts(batch: dict[int, tuple[AccountRisk | dict, list[PositionRisk] | list[dict] | None]]) -> None:
    """Snapshots for every account of ``batch``; Position rows for those whose positions are given.
    Figures as the book's dataclasses or as its plain forms (``account_plain``, ``positions_plain``)."""
    batch = {a: _as_risks(risk, positions) for a, (risk, positions) in batch.items()}
    # One transaction per chunk, not per batch: on SQLite a transaction holds the only write lock,
    # and 2,000 accounts' rows in one kept every other writer (the feed alert, the alert writer)
    # waiting past the 20 s busy timeout ("database is locked", seen in bench/streams).
    ids = list(batch)
    for start in range(0, len(ids), PERSIST_CHUNK_ACCOUNTS):
        chunk = {a: batch[a] for a in ids[start : start + PERSIST_CHUNK_ACCOUNTS]}
        with transaction.atomic():
            rows = {a: positions for a, (_, positions) in chunk.items() if positions is not None}
            if rows:
                positions_write_many(rows)
            snapshots_write_many({a: risk for a, (risk, _) in chunk.items()})


def _as_risks(
    risk: AccountRisk | dict, positions: list[PositionRisk] | list[dict] | None
) -> tuple[AccountRisk, list[PositionRisk] | None]:
    if isinstance(risk, dict):
        risk = account_risk_from_plain(risk)
    if positions is not None:
        positions = [position_risk_from_plain(p) if isinstance(p, dict) else p for p in positions]
    return risk, positions


def _newer_marks(unwritten: dict, newer: dict) -> dict:
    """Marks not yet written, overwritten by newer ones of the same symbols."""
    return {**unwritten, **newer}


def rows_phase_s(account_id: int) -> float:
    """Where in the POSITION_FIGURES_EVERY_S period an account's Position rows fall due (golden-ratio
    spacing: consecutive ids land far apart, any run of ids covers the period evenly)."""
    return (account_id * 0.6180339887 % 1.0) * POSITION_FIGURES_EVERY_S


def _keep_rows(unwritten: tuple, newer: tuple) -> tuple:
    """A newer snapshot without Position rows must not drop rows still waiting to be written."""
    risk, positions = newer
    return newer if positions is not None else (risk, unwritten[1])


class Batches:
    """The latest value per account, handed to ``handle`` in batches on a thread of its own.

    The stream process's event loop only drops a value here: serialising, the cache and the
    database run on the thread (with its own connections), so a market frame never waits behind
    them. A newer value for an account replaces one not yet handled. ``handle`` may call
    ``put_back`` to have a failed batch retried behind anything newer."""

    def __init__(self, name: str, handle: Callable[[dict], None], gather_s: float) -> None:
        self.name, self._handle, self._gather_s = name, handle, gather_s
        self._due: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False  # a batch is being handled

    def put(self, key: int, value: Any, merge: Callable[[Any, Any], Any] | None = None) -> None:
        """``merge(unhandled, value)``, when given, decides what replaces a value not yet handled."""
        with self._lock:
            if merge is not None and key in self._due:
                value = merge(self._due[key], value)
            self._due[key] = value
            if self._thread is None or not self._thread.is_alive():
                # Not a daemon: at exit the interpreter waits until what is due is handled.
                self._thread = threading.Thread(target=self._run, name=self.name)
                self._thread.start()
        self._wake.set()

    def put_back(self, batch: dict[int, Any]) -> None:
        with self._lock:
            self._due = {**batch, **self._due}
        self._wake.set()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything due is handled (tests; an orderly shutdown). True when it was."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._due and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        try:
            while True:
                if not self._wake.wait(BATCH_IDLE_S):
                    with self._lock:
                        if not self._due:
                            self._thread = None
                            return
                    continue
                self._wake.clear()
                time.sleep(self._gather_s)
                with self._lock:
                    batch, self._due = self._due, {}
                    self._busy = bool(batch)
                try:
                    if batch:
                        self._handle(batch)
                finally:
                    self._busy = False
        finally:
            connection.close()


class SinkWork:
    """What the sink does off the event loop: the live state of the accounts that changed (to the
    cache, then the pushes) and their persistence, each on a Batches thread of its own. In the
    stream process itself, or in a child process of its own (``SinkProcess``)."""

    def __init__(self) -> None:
        # Live state and persistence each have a thread (and connections) of their own: on the
        # event loop the cache round trip per account and the pushes held market frames back, and on
        # the loop's executor persistence held asgiref's shared sync thread for seconds per flush.
        self._batches = {
            PUBLISH: Batches("sink-publish", self._publish_batch, PUBLISH_GATHER_S),
            PERSIST: Batches("sink-persist", self._persist_batch, PERSIST_GATHER_S),
            MARKS: Batches("sink-marks", self._marks_batch, 0.0),
            # The minutes' bars from marks (key: the minute's epoch ms): one bulk insert a minute.
            BARS: Batches("sink-bars", self._bars_batch, 0.0),
        }
        self._attempt = 0  # consecutive failed persistence batches
        # Per batch written / published, for bench/alerts.py; bounded, as the process runs for months.
        self.persist_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)
        self.publish_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)

    def put(self, kind: str, key: int, value: Any, merge: Callable[[Any, Any], Any] | None = None) -> None:
        self._batches[kind].put(key, value, merge)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything due is published and written (tests; an orderly shutdown)."""
        deadline = time.monotonic() + timeout_s
        return all(b.drain(max(0.0, deadline - time.monotonic())) for b in self._batches.values())

    def _publish_batch(self, batch: dict[int, dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            publish_states(batch)
        except Exception:
            # Not retried: the next flush publishes fresher figures. Readers judge freshness by
            # published_ms and fail closed on old ones, so a lost publish cannot pass as current.
            log.exception("publishing the live state of %d accounts failed", len(batch))
            return
        self.publish_ms.append((time.perf_counter() - started) * 1000)

    @staticmethod
    def _marks_batch(batch: dict[int, dict[str, tuple[Decimal, int]]]) -> None:
        """Symbol rows (one key, 0: the marks due, merged by ``_newer_marks``)."""
        for marks in batch.values():
            try:
                marks_write(marks=marks)
            except Exception:
                # Not retried: the rows are history and the fallback; the next write is 5 s away.
                log.exception("writing %d marks to Symbol rows failed", len(marks))
                connection.close()

    def _bars_batch(self, batch: dict[int, list[market_bars.MarkBar]]) -> None:
        """MinuteBar rows from marks, insert-if-absent (idempotent): a failed write is retried whole."""
        rows = [row for minute in sorted(batch) for row in batch[minute]]
        for attempt in range(BARS_ATTEMPTS):
            try:
                market_bars.write_mark_bars(rows)
                return
            except Exception:
                log.exception("writing %d minute bars failed (attempt %d)", len(rows), attempt + 1)
                connection.close()  # maybe dead (database restarted): the retry opens a fresh one
                time.sleep(min(10.0, 0.5 * 2**attempt))
        # History only: the exchange's klines fill the hole at the next daily refresh.
        log.error("gave up writing the minute bars of %s", [market_bars.to_utc(m).isoformat() for m in sorted(batch)])

    def _persist_batch(self, batch: dict[int, tuple[AccountRisk, list[PositionRisk] | None]]) -> None:
        """Writes ``batch``; on failure puts it back (behind anything newer) and backs off."""
        started = time.perf_counter()
        try:
            persist_accounts(batch)
        except Exception:
            log.exception("persisting %d accounts failed (attempt %d)", len(batch), self._attempt + 1)
            connection.close()  # maybe dead (database restarted): the retry opens a fresh one
            self._attempt += 1
            if self._attempt >= PERSIST_ATTEMPTS:
                log.error("gave up persisting accounts %s; the next flush writes them again", sorted(batch))
                self._attempt = 0
                return
            self._batches[PERSIST].put_back(batch)
            time.sleep(min(30.0, 0.5 * 2 ** (self._attempt - 1)))
            return
        self._attempt = 0
        self.persist_ms.append((time.perf_counter() - started) * 1000)


class EventWriter:
    """The database work of the exchange's account events (order log, fills, liquidations, funding,
    closes, configuration alerts), one job at a time, in the order the engine reported them, on a
    thread of its own with its own connection.

    Unlike ``Batches`` nothing is merged or replaced: every event is a record. And unlike awaiting
    ``sync_to_async`` per event, the user stream reading the events never waits for the database:
    a liquidation's ACCOUNT_UPDATE, right behind its fills, reaches the book without waiting for
    the LIQUIDATED alert's write. One queue for all accounts keeps each account's order."""

    def __init__(self, name: str = "sink-events") -> None:
        self.name = name
        self._queue: deque[tuple[str, Callable[..., Any], dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.dropped = 0  # jobs given up after EVENT_WRITE_ATTEMPTS (tests, logs)

    def put(self, label: str, job: Callable[..., Any], **kwargs: Any) -> None:
        with self._lock:
            self._queue.append((label, job, kwargs))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name)  # not a daemon: see Batches
                self._thread.start()
        self._wake.set()

    def drain(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        try:
            while True:
                self._wake.clear()  # before looking: a put after the look sets it again
                with self._lock:
                    item = self._queue.popleft() if self._queue else None
                    self._busy = item is not None
                if item is None:
                    if not self._wake.wait(BATCH_IDLE_S):
                        with self._lock:
                            if not self._queue:
                                self._thread = None
                                return
                    continue
                try:
                    self._attempt(*item)
                finally:
                    self._busy = False
        finally:
            connection.close()

    def _attempt(self, label: str, job: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        for attempt in range(EVENT_WRITE_ATTEMPTS):
            try:
                job(**kwargs)
                return
            except Exception:
                log.exception("recording %s failed (attempt %d)", label, attempt + 1)
                connection.close()  # maybe dead (database restarted): the retry opens a fresh one
                time.sleep(min(10.0, 0.25 * 2**attempt))
        self.dropped += 1
        log.error("gave up recording %s: %.300r", label, kwargs)


class _Drain:
    """A drain request on SinkProcess's queue: the sender thread asks the child and fills this in."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s, self.done, self.ok = timeout_s, threading.Event(), False


class SinkProcess:
    """``SinkWork`` in a child process of its own, behind the same ``put`` / ``drain``.

    The loop pickles each value at once (one small C call per account, not a batch: a single
    call for a whole flush held the GIL for ~20 ms) and queues the bytes; a sender thread writes
    them down a pipe (the write releases the GIL) and the child hands them to its own SinkWork.
    A child that dies is started again, and what is still queued goes to the new one; what the
    dead one held is lost, as after a crash of the stream process: the next flush publishes the
    live state again, the next persistence cycle (5 s) writes the snapshots, and Position rows are
    rewritten within POSITION_FIGURES_EVERY_S. When the child cannot keep up the queue is capped
    at OUTBOARD_QUEUE_MAX values: the oldest are dropped, counted and logged."""

    def __init__(self) -> None:
        self.publish_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)
        self.persist_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)
        self.restarts = 0  # children started after the first (bench figures, tests)
        self.dropped = 0
        self._queue: deque[bytes | _Drain | None] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._process: Any = None
        self._conn: Any = None
        self._started_at, self._quick_deaths = 0.0, 0
        self._drains = 0
        self._sender = threading.Thread(target=self._send_forever, name="sink-process-sender", daemon=True)
        self._sender.start()
        atexit.register(self.close)

    def put(self, kind: str, key: int, value: Any, merge: Callable[[Any, Any], Any] | None = None) -> None:
        data = pickle.dumps((kind, key, value, merge), pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._queue.append(data)
            if len(self._queue) > OUTBOARD_QUEUE_MAX:
                # The oldest value, never a drain or close request queued among them.
                oldest = next(i for i, queued in enumerate(self._queue) if isinstance(queued, bytes))
                del self._queue[oldest]
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.error("the sink process is behind: %d values dropped so far", self.dropped)
        self._wake.set()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until the child has published and written everything queued so far."""
        request = _Drain(timeout_s)
        with self._lock:
            self._queue.append(request)
        self._wake.set()
        request.done.wait(timeout_s + 5.0)
        return request.ok

    def close(self) -> None:
        """Hand over what is queued, then let the child finish its batches and end (at exit)."""
        with self._lock:
            self._queue.append(None)
        self._wake.set()
        self._sender.join(60.0)

    def kill_child(self) -> None:
        """Tests: the child dies as in a crash (SIGKILL)."""
        if self._process is not None:
            self._process.kill()
            self._process.join(10.0)

    def _send_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        break
                    item = self._queue.popleft()
                if item is None:
                    self._stop_child()
                    return
                self._deliver(item)

    def _deliver(self, item: bytes | _Drain) -> None:
        for attempt in range(2):
            try:
                conn = self._child()
                if isinstance(item, _Drain):
                    self._drains += 1  # numbered: an answer that came too late for an earlier drain is skipped
                    conn.send_bytes(pickle.dumps((sink_child.DRAIN, self._drains, item.timeout_s, None)))
                    deadline = time.monotonic() + item.timeout_s + 5.0
                    while conn.poll(max(0.0, deadline - time.monotonic())):
                        number, ok, publish_ms, persist_ms = conn.recv()
                        self.publish_ms.extend(publish_ms)
                        self.persist_ms.extend(persist_ms)
                        if number == self._drains:
                            item.ok = ok
                            break
                    item.done.set()
                else:
                    conn.send_bytes(item)
                return
            except (OSError, EOFError):
                log.exception("the sink process is gone (attempt %d); starting another", attempt + 1)
                self._process, self._conn = None, None
        if isinstance(item, _Drain):
            item.done.set()

    def _child(self) -> Any:
        if self._process is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            self.restarts += 1
            log.error("the sink process ended (exit code %s); starting another", self._process.exitcode)
            # A child that dies at once (a bad setting, the database away) is not restarted in a loop.
            lived_s = time.monotonic() - self._started_at
            self._quick_deaths = self._quick_deaths + 1 if lived_s < 10.0 else 0
            time.sleep(min(30.0, 0.5 * 2**self._quick_deaths) if self._quick_deaths else 0.0)
        self._started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")  # not fork: this process has threads and sockets
        parent, child = context.Pipe()
        self._process = context.Process(
            target=sink_child.main, args=(child, _database_settings()), name="riskdesk-sink", daemon=False
        )
        self._process.start()
        child.close()
        self._conn = parent
        return parent

    def _stop_child(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the child sees the end of the pipe, finishes its batches, ends
        if self._process is not None:
            self._process.join(60.0)


def _database_settings() -> dict[str, Any]:
    """The parent's databases as its connections use them (a test run's database name included)."""
    from django.db import connections

    return {alias: dict(connections[alias].settings_dict) for alias in connections}


class DjangoSink:
    """Implements streams.Sink against the database, the cache and the channel layer.

    ``process=True``: the live state and persistence run in a child process (``SinkProcess``), so
    their serialising and driver work does not share the stream process's GIL with market frames,
    the evaluator and the alert writer (run_streams, when the cache and the database are servers
    a child can reach: STREAM_SINK_PROCESS)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, process: bool = False) -> None:
        self._clock = clock  # what the persistence cadence counts in (tests step it)
        self._persisted_at: dict[int, float] = {}
        self._rows_at: dict[int, float] = {}  # Position rows of the account last handed to persistence
        self._rows_inputs: dict[int, tuple] = {}  # ... and the positions' inputs then
        self._work: SinkWork | SinkProcess = SinkProcess() if process else SinkWork()
        self._marks_due: dict[str, tuple[Decimal, int]] = {}  # newest mark per symbol not yet on its row
        self.minute_bars = market_bars.MarkBars()  # 1-minute OHLC from every flush's marks
        self._marks_written_at = -MARKS_WRITE_EVERY_S  # the first flush writes
        self._feed_writes: asyncio.Future | None = None  # the last feed alert write (they run in order)
        self._events = EventWriter()  # in this process even with process=True: events are few, and in order
        self._feeds_refresh: asyncio.Future | None = None
        # Abnormal-behaviour detectors (rules.anomalies): in memory on the loop; their alerts, and
        # ORDER_BYPASSED_GATE's look-up of the desk's client ids, on the event writer thread.
        self.anomalies = anomaly_detectors.AnomalyWatch()
        self._anomalies_loaded_at = -ANOMALY_RELOAD_S
        self._anomalies_loading: asyncio.Future | None = None
        self._loss_due: dict[int, float] = {}  # when each account's margin balance is sampled next

    @property
    def publish_ms(self) -> deque[float]:
        return self._work.publish_ms

    @property
    def persist_ms(self) -> deque[float]:
        return self._work.persist_ms

    async def account_changed(self, account_id: int, book: RiskBook, open_orders: list[dict]) -> None:
        from alerts import broadcast

        broadcast.set_home_loop(asyncio.get_running_loop())  # embedded mode's in-memory layer lives here
        plain, risk = book.positions_plain(account_id), book.account_plain(account_id)
        self._work.put(PUBLISH, account_id, account_state(risk, plain, open_orders))
        now = self._clock()
        due = self._loss_due.get(account_id)
        if due is None or now >= due:  # LOSS_VELOCITY: each account's margin balance every 5 s
            self._loss_sample(account_id, risk, now, first=due is None)
        # Position rows follow the exchange within a flush: a position opened, resized, re-levered or
        # closed is written at once, whatever the snapshot cadence. Throttled with the snapshots, a
        # change inside their window was dropped, and an account left flat (no mark moves it again)
        # kept its closed rows for good (issue 13). Comparing the inputs costs ~0.1 µs a position.
        inputs = tuple(map(_row_inputs, plain))
        changed = inputs != self._rows_inputs.get(account_id)
        snapshot_due = now - self._persisted_at.get(account_id, -PERSIST_EVERY_S) >= PERSIST_EVERY_S
        if not (changed or snapshot_due):
            return
        if snapshot_due:
            self._persisted_at[account_id] = now
        # Rows whose inputs did not change are rewritten only every POSITION_FIGURES_EVERY_S, for
        # their marks and figures: rewriting 10,000 rows every 5 s for the figures alone made
        # MariaDB's commits (alerts' too) wait behind them.
        rows_due = changed or now - self._rows_at.get(account_id, -POSITION_FIGURES_EVERY_S) >= POSITION_FIGURES_EVERY_S
        if rows_due:
            # The first write is counted as if made up to a period earlier, by account id: the
            # accounts of a desk that started together then come due spread over the period,
            # not all in one batch a minute later (10,000 rows, 352 ms, in bench/alerts.py).
            offset = rows_phase_s(account_id) if account_id not in self._rows_at else 0.0
            self._rows_inputs[account_id], self._rows_at[account_id] = inputs, now - offset
        # The plain forms the live state was built from: the Decimals are made back from them
        # where they are written (account_risk_from_plain), not on the event loop. Merged with a
        # value still queued (``_keep_rows``): a snapshot never drops rows waiting to be written.
        self._persist_later(account_id, risk, plain if rows_due else None)

    def _persist_later(
        self, account_id: int, risk: AccountRisk | dict, positions: list[PositionRisk] | list[dict] | None
    ) -> None:
        self._work.put(PERSIST, account_id, (risk, positions), merge=_keep_rows)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything due is published and written (tests; an orderly shutdown)."""
        deadline = time.monotonic() + timeout_s
        return self._events.drain(timeout_s) and self._work.drain(max(0.0, deadline - time.monotonic()))

    async def marks_changed(self, marks: dict[str, tuple[Decimal, int]]) -> None:
        self.anomalies.marks.update(marks)  # SIZE_OUTLIER prices market orders at the mark
        self._anomalies_reload()
        live.marks_merge({s: [str(p), ts] for s, (p, ts) in marks.items()})  # what readers use: every flush
        # Market history: every flush's marks into the minute's bars (a few dict operations a symbol);
        # when a minute closes its bars go to the sink's thread (or child) as one bulk insert.
        closed = self.minute_bars.add(marks)
        if closed:
            self._work.put(BARS, closed[0][1], closed, merge=operator.add)
        # Symbol rows (and the minute's TickerHistory row) at most every MARKS_WRITE_EVERY_S: a
        # bulk_update of 300 symbols twice a second was a tenth of the stream process's CPU.
        self._marks_due.update(marks)
        now = time.monotonic()
        if now - self._marks_written_at >= MARKS_WRITE_EVERY_S:
            due, self._marks_due, self._marks_written_at = self._marks_due, {}, now
            # With the sink's other work: the ORM's bulk update of 300 rows, on a thread of this
            # process, held the GIL from market frames for tens of milliseconds every 5 s.
            self._work.put(MARKS, 0, due, merge=_newer_marks)

    async def feed_changed(self, status: FeedStatus, *, became_stale: bool, recovered: bool) -> None:
        # What the order gate reads: fails closed at once. Under the liveness TTL: the market feed
        # is written every flush, user feeds again by feeds_alive, so only a dead writer lets it lapse.
        live.feed_set(status.name, status.as_dict(), ttl_s=live.liveness_ttl_s())
        if became_stale or recovered:
            # The alert row must not take the feed down with it: raised here, a database error
            # (SQLite busy, MariaDB away) restarted the market socket, which went stale again.
            # Written in order, after any earlier feed write, retried with back-off.
            write = self._feed_alert if became_stale else self._feed_clear
            self._feed_writes = asyncio.ensure_future(self._feed_write(self._feed_writes, write, status.as_dict()))

    @staticmethod
    async def _feed_write(previous: asyncio.Future | None, write: Any, status: dict) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        for attempt in range(FEED_WRITE_ATTEMPTS):
            try:
                await sync_to_async(write)(status)
                return
            except Exception:
                log.exception("writing the %s feed alert failed (attempt %d)", status["name"], attempt + 1)
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))

    @staticmethod
    def _feed_alert(status: dict) -> None:
        with transaction.atomic():
            alert_raise(
                account_id=None,
                rule="feed_stale",
                subject=status["name"],
                level=CRITICAL,
                reason_code="FEED_STALE",
                value=None,
                limit=None,
                mark_price=None,
                details=status,
                message=f"The {status['name']} feed is stale: no data since {status['last_message_ms']} (epoch ms). "
                "Orders are denied until it recovers.",
                message_code="feed_stale",
                message_params={"name": status["name"], "last_message_ms": status["last_message_ms"]},
            )

    @staticmethod
    def _feed_clear(status: dict) -> None:
        with transaction.atomic():
            alert_clear(account_id=None, rule="feed_stale", subject=status["name"], details=status)

    async def exchange_event(self, account_id: int, event: dict) -> None:
        if event.get("e") == "ORDER_TRADE_UPDATE":
            if (event.get("o") or {}).get("x") == "TRADE":
                live.fills_add(account_id)  # the order gate's daily fill cap
            self._events.put("an order event", order_event_record, account_id=account_id, event=event)
            self._anomalies_order(account_id, event)
        elif event.get("e") == "MARGIN_CALL":
            self._events.put("a margin call", self._margin_call, account_id=account_id, event=event)

    @staticmethod
    def _margin_call(*, account_id: int, event: dict) -> None:
        for row in event.get("p", []):
            with transaction.atomic():
                alert_raise(
                    account_id=account_id,
                    rule="margin_call",
                    subject=f"{row.get('s')}:{row.get('ps')}",
                    level=CRITICAL,
                    reason_code="EXCHANGE_MARGIN_CALL",
                    value=_dec(row.get("mm")),
                    limit=None,
                    mark_price=_dec(row.get("mp")),
                    details=_plain(row),
                    message="The exchange sent a margin call for this position.",
                    message_code="margin_call",
                    message_params={
                        "symbol": row.get("s"),
                        "side": row.get("ps"),
                        "maintenance_margin": row.get("mm"),
                        "mark_price": row.get("mp"),
                        "tick": _tick(row.get("s")),  # the mark in the message to the symbol's tick
                    },
                )

    async def fill_seen(self, account_id: int, event: dict) -> None:
        from positions.ledger import fill_record

        self._events.put("a fill", fill_record, account_id=account_id, event=event)

    async def liquidation_seen(self, account_id: int, event: dict, before: dict | None) -> None:
        from positions.ledger import liquidation_record

        self._events.put("a liquidation", liquidation_record, account_id=account_id, event=event, before=before)

    async def funding_seen(self, account_id: int, event: dict) -> None:
        from positions.ledger import funding_record

        self._events.put("a funding fee", funding_record, account_id=account_id, event=event)

    async def position_closed(self, account_id: int, close: dict) -> None:
        from positions.ledger import position_close_record

        self._events.put("a closed position", position_close_record, account_id=account_id, **close)

    async def config_changed(self, account_id: int, change: dict) -> None:
        self._events.put("an exchange configuration change", self._config_changed, account_id=account_id, change=change)
        if change.get("what") == "leverage":
            found = self.anomalies.leverage_changed(
                account_id, change.get("symbol"), change.get("old"), change.get("new")
            )
            if found:
                self._anomalies_raise(found)

    # --- abnormal behaviour (rules.anomalies) -----------------------------------------------

    def _anomalies_order(self, account_id: int, event: dict) -> None:
        from rules.anomaly_alerts import bypass_check

        self._anomalies_reload()
        order = event.get("o") or {}
        if self.anomalies.needs_bypass_check(account_id, order):
            self._events.put(
                "a bypass check", bypass_check, watch=self.anomalies, account_id=account_id, order=dict(order)
            )
        found = self.anomalies.order_event(account_id, event)
        if found:
            self._anomalies_raise(found)

    async def open_orders_seen(self, account_id: int, orders: list[dict]) -> None:
        """The exchange's open orders by REST (a sync): ORDER_BYPASSED_GATE for any the stream missed."""
        for row in orders:
            order = {
                "c": row.get("clientOrderId"),
                "i": row.get("orderId"),
                "s": row.get("symbol"),
                "S": row.get("side"),
                "o": row.get("type"),
                "q": row.get("origQty"),
                "p": row.get("price"),
                "X": "NEW",
                "x": "REST",
            }
            if self.anomalies.needs_bypass_check(account_id, order):
                from rules.anomaly_alerts import bypass_check

                self._events.put(
                    "a bypass check", bypass_check, watch=self.anomalies, account_id=account_id, order=order
                )

    def _loss_sample(self, account_id: int, risk: dict, now: float, *, first: bool) -> None:
        sample_s = anomaly_detectors.BALANCE_SAMPLE_S
        if first:
            # Spread over the period by account id (golden ratio): accounts that start together would
            # otherwise all be sampled in the same flush, 2,000 at once every 5 s, on the event loop.
            self._loss_due[account_id] = now + sample_s * ((account_id * 0.6180339887) % 1.0)
            return
        self._loss_due[account_id] = now + sample_s
        found = self.anomalies.balance(account_id, risk.get("margin_balance"))
        if found:
            self._anomalies_raise(found)

    def _anomalies_raise(self, found: list) -> None:
        from rules.anomaly_alerts import findings_raise

        self._events.put("an anomaly", findings_raise, findings=found)

    def _anomalies_reload(self) -> None:
        now = time.monotonic()
        if now - self._anomalies_loaded_at < ANOMALY_RELOAD_S:
            return
        if self._anomalies_loading is not None and not self._anomalies_loading.done():
            return
        self._anomalies_loaded_at = now
        self._anomalies_loading = asyncio.get_running_loop().run_in_executor(None, self._anomalies_load)

    def _anomalies_load(self) -> None:
        from rules.baselines import watch_load

        try:
            watch_load(self.anomalies)
        except Exception:
            log.exception("loading the anomaly detectors' levels and baselines failed; keeping the last ones")
            self._anomalies_loaded_at -= ANOMALY_RELOAD_S - 5.0  # tried again in 5 s, not in a minute
        finally:
            connection.close()

    @staticmethod
    def _config_changed(*, account_id: int, change: dict) -> None:
        params = {k: change.get(k) for k in ("what", "symbol", "old", "new")}
        with transaction.atomic():
            alert_raise(
                account_id=account_id,
                rule="exchange_config",
                subject=str(change.get("symbol") or "account"),
                level=WARNING,
                reason_code="EXCHANGE_CONFIG_CHANGED",
                value=None,
                limit=None,
                mark_price=None,
                details=_plain(change),
                message_code="exchange_config_changed",
                message_params=_plain(params),
            )

    async def deadman_fired(self, account_id: int, details: dict) -> None:
        from marketdata.deadman import record_fired

        self._events.put("a dead-man cancel", record_fired, account_id=account_id, details=details)

    async def drift_found(self, account_id: int, differences: list[dict]) -> None:
        self._events.put("a position drift", self._drift, account_id=account_id, differences=differences)

    @staticmethod
    def _drift(*, account_id: int, differences: list[dict]) -> None:
        with transaction.atomic():
            alert_raise(
                account_id=account_id,
                rule="position_drift",
                subject="positions",
                level=WARNING,
                reason_code="POSITION_DRIFT",
                value=Decimal(len(differences)),
                limit=Decimal(0),
                mark_price=None,
                details={"differences": differences, "kinds": sorted({d.get("kind", "qty") for d in differences})},
                message="The desk's positions differed from the exchange's; the desk re-synced to the exchange.",
                message_code="position_drift",
                message_params={"count": len(differences), "source": "stream"},
            )

    async def resync_requests(self) -> list[int]:
        return live.resync_take()

    async def process_alive(self, status: dict) -> None:
        # On the loop on purpose (one small write a second): a loop that hangs stops the beat.
        live.process_beat(status)

    async def feeds_alive(self, statuses: list[dict]) -> None:
        # Thousands of small values: pickled and sent off the loop. One at a time: a refresh still
        # running (the cache slow or away) is not stacked behind; the TTL then lapses, failing closed.
        if self._feeds_refresh is not None and not self._feeds_refresh.done():
            return
        self._feeds_refresh = asyncio.get_running_loop().run_in_executor(None, self._feeds_write, statuses)

    @staticmethod
    def _feeds_write(statuses: list[dict]) -> None:
        try:
            live.feeds_set_live(statuses)
        except Exception as exc:  # the cache away: the keys lapse and readers fail closed
            log.warning("refreshing %d user feeds failed: %s", len(statuses), exc)

    async def stopped(self, statuses: list[dict]) -> None:
        """A clean stop: the feeds as stale and disconnected and the beat withdrawn at once, then
        what is queued written (live state, rows, events) before the interpreter shuts down: work
        left to atexit met a closed executor ("cannot schedule new futures after interpreter shutdown")."""
        live.feeds_set_live(statuses)
        live.process_withdraw()
        if not await asyncio.to_thread(self.drain, STOP_DRAIN_S):
            log.warning(
                "the sink did not finish within %s s of the stop; the rest is rewritten at the next start", STOP_DRAIN_S
            )
        if isinstance(self._work, SinkProcess):
            await asyncio.to_thread(self._work.close)


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def _tick(symbol: str | None) -> str | None:
    from marketdata.models import Symbol

    tick = Symbol.objects.filter(name=symbol or "").values_list("tick_size", flat=True).first()
    return None if tick is None else str(tick)
