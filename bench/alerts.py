"""Tick → alert → browser benchmark (issue 5). Prints figures; never asserts a time.

    python -m bench.alerts                 # 10,000 positions (200 accounts x 50), 200 crossings
    python -m bench.alerts --write-doc     # also update docs/PERFORMANCE.md

Production shape on one machine, every piece a real process:

- the simulator (bench/_common.SimProcess, its own process) holds the desk and ticks once
  a second; the bench moves one symbol's mark across a limit through ``POST /_sim/marks``,
  which publishes a full-market frame at once;
- this process is the stream process: ``StreamEngine`` with the ``DjangoSink`` and
  ``rules.evaluator.attach(engine)``, on MariaDB (``DATABASE_URL``) and Redis
  (``REDIS_URL``: channel layer and cache);
- a real uvicorn (subprocess, same database and Redis) serves ``/ws/desk/``;
- a WebSocket client (``websockets``, its own process) holds a risk manager's session
  cookie and timestamps every message it receives.

One account's profile caps position notional (critical only, ``breach_after_n=1``) at the
notional its largest position has at the start mark; the bench alternates that symbol's
mark between 1.1x and 0.9x the start mark, so each move opens or resolves one alert. Every
other account has a default profile with limits the run never reaches, so every frame is
evaluated in full for all accounts, as in production. The desk is all cross: with isolated
positions the simulator's liquidation screen fails on every tick (docs/PERFORMANCE.md,
issue 4) and the simulator would eat a core.

Timestamps (one wall clock, ``time.time()``): the frame's ``E``; the ``on_market_frame``
hook (book updated); the target account's change leaving ``evaluate`` and the end of the
evaluator's pass over all accounts; the alert writer starting the write; the commit (the
first ``on_commit`` callback: ``broadcast.alert_changed``) and the end of its
``group_send``; the client receiving the message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

from bench._common import (
    BENCH_SECRETS,
    GENEROUS_LIMITS,
    ROOT,
    SimOptions,
    SimProcess,
    api_key,
    api_secret,
    book_rows,
    command_line,
    desk_accounts,
    machine,
    percentile,
    progress,
    synthetic_universe,
    write_doc,
)

HEADING = "## Tick to alert to browser (issue 5)"
# Its own database, dropped and re-created every run: bench/gate.py uses riskdesk_bench at the same time.
DATABASE_URL = "mysql://root@127.0.0.1:3306/riskdesk_bench_alerts"
# Its own Redis database (no other desk's groups or cache keys).
REDIS_URL = "redis://127.0.0.1:6379/9"
HIGH, LOW = Decimal("1.1"), Decimal("0.9")
BENCH_ENV = {
    **BENCH_SECRETS,
    "DEBUG": "false",  # DEBUG keeps every query in memory: not the production path
    "STREAMS_IN_PROCESS": "false",
    "LOG_LEVEL": "WARNING",
}


# --------------------------------------------------------------------------- environment


def bench_env(args: argparse.Namespace, var_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        **BENCH_ENV,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "RISKDESK_VAR_DIR": var_dir,
    }


def recreate_database(url: str) -> None:
    """A fresh schema every run: alert ids, sessions and snapshots start from nothing."""
    import MySQLdb

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        passwd=parts.password or "",
    )
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        conn.close()


def migrate(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    import django

    django.setup()


# --------------------------------------------------------------------------- the desk in the database


@dataclass(frozen=True)
class Target:
    index: int  # desk account index; its ExchangeAccount id is index + 1
    symbol: str
    side: str
    qty: Decimal
    start_mark: Decimal  # the simulator's first mark: the first entry price any account holds

    @property
    def account_id(self) -> int:
        return self.index + 1

    @property
    def subject(self) -> str:
        return f"{self.symbol}:{self.side}"

    @property
    def limit(self) -> Decimal:
        return abs(self.qty) * self.start_mark


def pick_target(desk: list[dict]) -> Target:
    """The first account whose largest position is well clear of its second largest, so only
    that position crosses the limit set at its notional."""
    first_entry: dict[str, Decimal] = {}
    for account in desk:
        for row in account["positions"]:
            first_entry.setdefault(row["symbol"], Decimal(row["entry_price"]).quantize(Decimal("1e-8")))
    for index, account in enumerate(desk):
        rows = sorted(
            account["positions"], key=lambda r: abs(Decimal(r["qty"])) * first_entry[r["symbol"]], reverse=True
        )
        top, second = (abs(Decimal(r["qty"])) * first_entry[r["symbol"]] for r in rows[:2])
        if second < top * Decimal("0.8"):
            row = rows[0]
            return Target(index, row["symbol"], row["side"], Decimal(row["qty"]), first_entry[row["symbol"]])
    raise RuntimeError("no account has a position clear of its others")


def seed_database(desk: list[dict], target: Target, base_url: str) -> str:
    """Symbols, two profiles, one ExchangeAccount per desk account and a risk manager;
    returns the risk manager's session id (a real session row, as after the admin login)."""
    from django.conf import settings
    from django.test import Client

    from accounts.models import ExchangeAccount, Role, User
    from marketdata import services
    from rules.models import RiskProfile

    settings.BINANCE_FUTURES_REST_URL = base_url
    services.symbols_sync()  # the DjangoSink writes positions and marks against Symbol rows
    generous = GENEROUS_LIMITS
    RiskProfile.objects.create(name="bench default", is_default=True, **generous)
    tight = RiskProfile.objects.create(
        name="bench target",
        **{**generous, "max_position_notional_warning": None, "max_position_notional_critical": target.limit},
    )
    ExchangeAccount.objects.bulk_create(
        [
            ExchangeAccount(id=i + 1, name=f"bench {i}", risk_profile=tight if i == target.index else None)
            for i in range(len(desk))
        ],
        batch_size=500,
    )
    user = User.objects.create_user(username="bench-rm", password="unused-bench-password", role=Role.RISK_MANAGER)
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


# --------------------------------------------------------------------------- uvicorn and the client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "riskdesk.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("uvicorn exited at start")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not come up") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _client(port: int, session_id: str, conn: Any) -> None:
    """The browser stand-in, in its own process: timestamps each message as it arrives."""
    from websockets.asyncio.client import connect

    async def run() -> None:
        url = f"ws://127.0.0.1:{port}/ws/desk/"
        headers = {"Cookie": f"sessionid={session_id}"}
        async with connect(url, origin=f"http://127.0.0.1:{port}", additional_headers=headers) as ws:
            conn.send(("ready", time.time()))
            async for message in ws:
                conn.send((time.time(), message))
            conn.send(("closed", f"code {ws.close_code} {ws.close_reason!r}"))

    asyncio.run(run())


class ClientProcess:
    def __init__(self, port: int, session_id: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_client, args=(port, session_id, child), daemon=True)
        self.seen: dict[tuple[int, str], float] = {}  # (alert id, status) -> receive time
        self.closed = ""

    def start(self) -> ClientProcess:
        self.process.start()
        if not self.conn.poll(30):
            raise RuntimeError("the WebSocket client did not connect")
        tag, _ = self.conn.recv()
        assert tag == "ready"
        return self

    def read(self) -> None:
        """Drain the pipe; called by the event loop when it is readable."""
        while self.conn.poll():
            try:
                at, text = self.conn.recv()
            except EOFError:  # the client died (its traceback is on stderr); stop listening
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
                return
            if at == "closed":
                print(f"\nthe WebSocket client was disconnected: {text}", file=sys.stderr)
                self.closed = text
                continue
            event = json.loads(text)
            if event.get("type") == "alert.changed":
                alert = event["alert"]
                self.seen.setdefault((alert["id"], alert["status"]), at)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --------------------------------------------------------------------------- instrumentation


@dataclass
class Transition:
    level: int  # 30 critical (opens) or 0 (resolves)
    event_ms: int  # the crossing frame's E
    t_book: float  # on_market_frame hook
    t_change: float  # the target's change left evaluate()
    t_recv: float = 0.0  # the frame handed to the engine's handler (python-binance read and parsed the JSON)
    t_eval_end: float = 0.0  # the evaluator's pass over every account ended
    eval_us: float = 0.0  # Evaluator.last_eval_us of that pass
    eval_accounts: int = 0
    t_write: float = 0.0  # write_alerts started (in the sync thread)
    t_commit: float = 0.0  # first on_commit callback
    t_sent: float = 0.0  # group_send returned
    alert_id: int | None = None
    t_client: float = 0.0
    from_frame: bool = True  # False: first seen by a REST re-sync, whose E would mean nothing

    @property
    def status(self) -> str:
        return "open" if self.level else "resolved"


@dataclass
class Probe:
    """Wraps the hooks the bench reads; none of them changes what the code does."""

    target: Target
    transitions: list[Transition] = field(default_factory=list)
    by_job: dict[int, Transition] = field(default_factory=dict)
    jobs: list[Any] = field(default_factory=list)  # keeps jobs alive so their ids stay unique
    flush_ms: list[float] = field(default_factory=list)
    gc_ms: dict[int, list[float]] = field(default_factory=dict)  # collector pauses by generation, while measuring
    recording: bool = False
    frame: tuple[int, float] = (0, 0.0)
    frame_fresh: bool = False  # a frame was applied and its listeners have not run yet
    received: float = 0.0  # when the last market message reached the engine's handler
    local: threading.local = field(default_factory=threading.local)

    def attach(self, engine: Any, evaluator: Any) -> None:
        import alerts.broadcast
        import rules.evaluator

        engine.on_market_frame = self.on_frame
        handle = engine._on_market_message

        def received(message: Any) -> None:
            self.received = time.time()
            handle(message)

        engine._on_market_message = received
        job = evaluator._job
        on_change = evaluator.on_change

        def job_hook(account_id: int, change: Any, at_ms: int, limits: Any, risk: Any) -> Any:
            made = job(account_id, change, at_ms, limits, risk)
            wanted = account_id == self.target.account_id and change.subject == self.target.subject
            if wanted and change.rule == "position_notional":
                transition = Transition(change.level, self.frame[0], self.frame[1], time.time(), self.received)
                self.transitions.append(transition)
                self.by_job[id(made)] = transition
                self.jobs.append(made)
            return made

        def change_hook(account_ids: set[int]) -> None:
            before = len(self.transitions)
            from_frame, self.frame_fresh = self.frame_fresh, False
            on_change(account_ids)
            for transition in self.transitions[before:]:
                transition.from_frame = from_frame
                transition.t_eval_end = time.time()
                transition.eval_us = evaluator.last_eval_us
                transition.eval_accounts = len(account_ids)

        evaluator._job = job_hook
        engine.listeners[engine.listeners.index(on_change)] = change_hook
        rules.evaluator.write_alerts = self.wrap_write(rules.evaluator.write_alerts)
        alerts.broadcast.alert_changed = self.wrap_broadcast(alerts.broadcast.alert_changed)
        flush = engine._flush

        async def timed_flush() -> None:
            started = time.perf_counter()
            await flush()
            self.flush_ms.append((time.perf_counter() - started) * 1000)

        engine._flush = timed_flush
        started: dict[str, float] = {}

        def gc_pause(phase: str, info: dict) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
            elif self.recording and "t" in started:
                self.gc_ms.setdefault(info["generation"], []).append((time.perf_counter() - started["t"]) * 1000)

        gc.callbacks.append(gc_pause)

    def on_frame(self, event_ms: int) -> None:
        now = time.time()
        if os.environ.get("BENCH_DEBUG") and self.frame[1] and now - self.frame[1] > 2:
            print(f"\nframe gap {now - self.frame[1]:.1f} s; E lag {now * 1000 - event_ms:.0f} ms", file=sys.stderr)
        self.frame = (event_ms, now)
        self.frame_fresh = True

    def wrap_write(self, write: Any) -> Any:
        def timed(jobs: list) -> None:
            for job in jobs:
                transition = self.by_job.get(id(job))
                if transition is not None:
                    transition.t_write = time.time()
                self.local.current = transition
            try:
                write(jobs)
            finally:
                self.local.current = None

        return timed

    def wrap_broadcast(self, broadcast: Any) -> Any:
        def timed(snapshot: dict) -> None:
            transition = getattr(self.local, "current", None)
            if transition is None:
                broadcast(snapshot)
                return
            transition.t_commit, transition.alert_id = time.time(), snapshot["id"]
            broadcast(snapshot)
            transition.t_sent = time.time()

        return timed


# --------------------------------------------------------------------------- the run


async def post_mark(http: Any, base_url: str, symbol: str, price: Decimal) -> None:
    async with http.post(f"{base_url}/_sim/marks", json={symbol: str(price)}) as response:
        response.raise_for_status()


async def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.005)
    return False


MODES = {
    "tick": "in a regular 1 s tick (every mark moved)",
    "control": "`POST /_sim/marks` (a frame of its own, only that mark moved)",
}


async def cross(
    args: argparse.Namespace, mode: str, sim: SimProcess, http: Any, target: Target, probe: Probe, client: ClientProcess
) -> int:
    """``args.crossings`` moves across the limit and back; returns how many timed out."""
    rng = random.Random(args.seed)
    timeouts = 0
    for i in range(args.crossings):
        price = target.start_mark * (HIGH if i % 2 == 0 else LOW)
        if mode == "tick":
            sim.stage_marks({target.symbol: price})
        else:
            await post_mark(http, sim.base_url, target.symbol, price)

        def delivered(i: int = i) -> bool:
            if len(probe.transitions) <= i or probe.transitions[i].alert_id is None:
                return False
            t = probe.transitions[i]
            t.t_client = client.seen.get((t.alert_id, t.status), 0.0)
            return t.t_client > 0

        if not await wait_for(delivered, args.timeout_s):
            timeouts += 1
        progress(f"crossings ({mode})", i + 1, args.crossings)
        # A random gap: crossings land anywhere in the 1 s tick and in the sink's flush cycle.
        await asyncio.sleep(rng.uniform(args.gap_s * 0.5, args.gap_s * 1.5))
    return timeouts


class StallProbe:
    """Diagnostics (``--stalls``): when the stream loop misses a 2 ms beat by STALL_MS, the stacks of
    every thread of this process, counted by their innermost frames and printed at the end."""

    STALL_MS = 15.0

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.last = time.perf_counter()
        self.stalls: dict[str, int] = {}
        self.count = 0
        self._stop = threading.Event()

    async def beat(self) -> None:
        while not self._stop.is_set():
            self.last = time.perf_counter()
            await asyncio.sleep(0.002)

    def watch(self) -> None:
        import traceback

        names = {t.ident: t.name for t in threading.enumerate()}
        sampled = False
        while not self._stop.wait(0.003):
            late_ms = (time.perf_counter() - self.last) * 1000
            if late_ms < self.STALL_MS:
                sampled = False
                continue
            if sampled:
                continue
            sampled = True
            self.count += 1
            names.update({t.ident: t.name for t in threading.enumerate()})
            for ident, frame in sys._current_frames().items():
                stack = traceback.extract_stack(frame)[-5:]
                where = " < ".join(f"{f.name}@{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(stack))
                key = f"{'LOOP' if ident == self.loop_thread else names.get(ident, ident)}: {where}"
                self.stalls[key] = self.stalls.get(key, 0) + 1

    def report(self) -> None:
        self._stop.set()
        print(f"\nstalls of the stream loop over {self.STALL_MS} ms: {self.count}", file=sys.stderr)
        for key, n in sorted(self.stalls.items(), key=lambda kv: -kv[1])[:40]:
            print(f"{n:5d} {key}", file=sys.stderr)


async def measure(
    args: argparse.Namespace, desk: list[dict], target: Target, sim: SimProcess, client: ClientProcess
) -> dict[str, Any]:
    import aiohttp
    from django.conf import settings

    from marketdata.sink import DjangoSink
    from marketdata.streams import AccountSpec, StreamEngine, settle_gc
    from rules.evaluator import attach

    specs = [AccountSpec(i + 1, f"bench {i}", api_key(i), api_secret(i)) for i in range(len(desk))]
    sink = DjangoSink(process=settings.STREAM_SINK_PROCESS)  # as run_streams builds it
    engine = StreamEngine(accounts=specs, rest_url=sim.base_url, ws_url=sim.ws_url, sink=sink)
    evaluator = attach(engine)
    probe = Probe(target)
    probe.attach(engine, evaluator)
    loop = asyncio.get_running_loop()
    loop.add_reader(client.conn.fileno(), client.read)
    out: dict[str, Any] = {
        "probe": probe,
        "modes": {},
        "timeouts": {},
        "sink": sink,
        "sink_process": settings.STREAM_SINK_PROCESS,
    }
    started = time.perf_counter()
    await engine.start()
    settle_gc()  # as run_streams does
    out["start_s"] = time.perf_counter() - started
    # Steady state: every account's user-data socket open and its account re-synced through it
    # (start() returns once the book is loaded; the sockets open 16 at a time behind it).
    await wait_for(lambda: all(f.connected for f in engine.user_feeds.values()), 300)
    out["connected_s"] = time.perf_counter() - started
    async with aiohttp.ClientSession() as http:
        await post_mark(http, sim.base_url, target.symbol, target.start_mark * LOW)
        await asyncio.sleep(args.warmup_s)
        probe.recording = True
        stalls = StallProbe() if args.stalls else None
        if stalls is not None:
            beat = asyncio.ensure_future(stalls.beat())
            threading.Thread(target=stalls.watch, daemon=True).start()
        for mode in args.modes.split(","):
            probe.transitions.clear()
            out["timeouts"][mode] = await cross(args, mode, sim, http, target, probe, client)
            out["modes"][mode] = list(probe.transitions)
        if stalls is not None:
            stalls.report()
            beat.cancel()
    loop.remove_reader(client.conn.fileno())
    await engine.stop()
    await asyncio.to_thread(sink.drain, 60.0)  # the sink process's batch timings come back with it
    return out


# --------------------------------------------------------------------------- the evaluator's pass alone


def pass_figures(accounts: int, per_account: int, symbols: int, seed: int, frames: int) -> dict[str, list[float]]:
    """The evaluator's pass per full-market frame, in this process with no services: the code
    ``Evaluator.on_change`` runs (``rules.quiet_screen.evaluate_accounts``) over a desk loaded straight
    into a ``RiskBook``, every account on the bench's default profile. Thread CPU time per frame
    (the figure two busy cores do not distort), with the screen and without it (the exact
    Decimal path on every account, as before the screen)."""
    from positions.book import RiskBook
    from rules.levels import Limits
    from rules.quiet_screen import Screen, evaluate_accounts

    universe = synthetic_universe(symbols, seed)
    desk = desk_accounts(seed=seed, accounts=accounts, per_account=per_account, universe=universe, isolated_share=0.25)
    book = RiskBook(capacity=accounts * per_account + 16)
    for symbol, spec in universe.items():
        book.set_brackets(symbol, spec.brackets)
    for index, account in enumerate(desk):
        rows, wallet = book_rows(index + 1, account)
        book.upsert_positions(rows)
        book.set_wallet(index + 1, wallet)
    limits_each = Limits.from_values(GENEROUS_LIMITS)
    limits = {i + 1: limits_each for i in range(accounts)}
    rng = random.Random(seed)
    marks = {name: spec.typical_price for name, spec in universe.items()}
    out: dict[str, list[float]] = {"screened": [], "exact": []}
    ts = 1_700_000_000_000
    for mode, screen in (("screened", Screen(limits)), ("exact", None)):
        latches: dict = {}
        days: dict = {}
        hot: set = set()
        for _ in range(frames if mode == "screened" else max(2, frames // 10)):
            marks = {
                s: (p * Decimal(str(round(rng.uniform(0.999, 1.001), 6)))).quantize(Decimal("1e-8"))
                for s, p in marks.items()
            }
            ts += 1000
            touched = book.apply_marks(marks, ts=ts)
            started = time.thread_time()
            for _ in evaluate_accounts(
                book=book,
                account_ids=touched,
                limits=limits,
                latches=latches,
                days=days,
                day="d",
                hot=hot,
                screen=screen,
            ):
                pass
            out[mode].append((time.thread_time() - started) * 1000)
    return out


def pass_lines(passes: dict[int, dict[str, list[float]]]) -> list[str]:
    if not passes:
        return []
    lines = [
        "The evaluator's pass alone (`--pass-accounts`: in process, no services, a full-market frame with every "
        "mark moved ±0.1 %, every account on the default profile, a quarter of the symbols isolated; thread CPU "
        "time per frame, p50 / p99):",
        "",
        "| accounts | screen + exact path | exact path on every account (before) |",
        "|---|---|---|",
    ]
    for accounts, figures in passes.items():
        cells = [
            f"{percentile(figures[k], 50):.1f} / {percentile(figures[k], 99):.1f} ms" for k in ("screened", "exact")
        ]
        lines.append(f"| {accounts:,} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


# --------------------------------------------------------------------------- figures


def ms(seconds: float) -> float:
    return seconds * 1000


LEG_COMMIT = "E → alert row committed"
LEG_CLIENT = "E → message at the WebSocket client"
LEG_BOOK = "E → book (frame sent, received, parsed, applied)"
LEG_RECV = "E → the engine's handler (simulator's send, loopback, python-binance's read and JSON)"
LEG_APPLY = "handler → book (marks parsed, `apply_mark_array`)"
LEG_CHANGE = "book → the target's change out of `evaluate`"
LEG_REST = "rest of the evaluator's pass (the writer's thread runs meanwhile)"
LEG_EVAL = "evaluator's pass, whole (`last_eval_us`)"
LEG_QUEUE = "change out of `evaluate` → writer thread starts the write"
LEG_WRITE = "write + commit (`alert_raise`/`alert_clear` in `transaction.atomic`)"
LEG_BROADCAST = "on_commit broadcast (the alert as saved, `group_send` to Redis on the writer thread's loop)"
LEG_HOP = "Redis → uvicorn consumer → socket → client"


def legs(transitions: list[Transition]) -> dict[str, list[float]]:
    done = [t for t in transitions if t.t_client and t.t_commit]
    return {
        LEG_COMMIT: [ms(t.t_commit) - t.event_ms for t in done],
        LEG_CLIENT: [ms(t.t_client) - t.event_ms for t in done],
        LEG_BOOK: [ms(t.t_book) - t.event_ms for t in done],
        LEG_RECV: [ms(t.t_recv) - t.event_ms for t in done],
        LEG_APPLY: [ms(t.t_book - t.t_recv) for t in done],
        LEG_CHANGE: [ms(t.t_change - t.t_book) for t in done],
        LEG_REST: [ms(t.t_eval_end - t.t_change) for t in done],
        LEG_EVAL: [t.eval_us / 1000 for t in done],
        LEG_QUEUE: [ms(t.t_write - t.t_change) for t in done],
        LEG_WRITE: [ms(t.t_commit - t.t_write) for t in done],
        LEG_BROADCAST: [ms(t.t_sent - t.t_commit) for t in done],
        LEG_HOP: [ms(t.t_client - t.t_sent) for t in done],
    }


def stats(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} | {percentile(values, 99):.1f} | {max(values, default=float('nan')):.1f}"


def where_the_time_goes(tables: dict[str, dict[str, list[float]]], done: dict[str, list[Transition]]) -> list[str]:
    if "tick" not in tables or not done["tick"]:
        return []
    t = {name: percentile(values, 50) for name, values in tables["tick"].items()}
    t99 = {name: percentile(values, 99) for name, values in tables["tick"].items()}
    accounts = max(x.eval_accounts for x in done["tick"])
    return [
        f"Where the time goes (tick, p50 / p99): the frame reaches the book in {t[LEG_BOOK]:.1f} / "
        f"{t99[LEG_BOOK]:.1f} ms; the evaluator's pass over {accounts} accounts takes {t[LEG_EVAL]:.1f} / "
        f"{t99[LEG_EVAL]:.1f} ms (the screen, then the exact path for the target's account only); its change "
        f"reaches the writer's thread {t[LEG_QUEUE]:.1f} / {t99[LEG_QUEUE]:.1f} ms after it leaves `evaluate`; "
        f"write and commit {t[LEG_WRITE]:.1f} / {t99[LEG_WRITE]:.1f} ms; the broadcast {t[LEG_BROADCAST]:.1f} / "
        f"{t99[LEG_BROADCAST]:.1f} ms; Redis → uvicorn → client {t[LEG_HOP]:.1f} / {t99[LEG_HOP]:.1f} ms. "
        "What is left on the stream process's event loop besides frames: the engine's flush every 0.5 s "
        "(`account_plain()` and `positions_plain()` for every account that changed, pickled for the sink "
        "process, yielding between accounts), which a frame may wait behind for one account's step.",
        "",
        *KNOWN,
    ]


# Facts from earlier runs that the figures above no longer show.
KNOWN = [
    "2026-12-06, on an Intel Xeon machine of 2 cores (slower than the AMD EPYC of 2026-12-05: the "
    "evaluator's pass alone at 200 accounts 1.3 / 4.4 ms against 1.1 / 2.7 ms), commit 0361c2c gave tick "
    "p50 22.6 / p99 109.5 ms to the client and control 24.4 / 97.5 ms (60 crossings). The loop-stall probe "
    "(`--stalls`: the stacks of every thread whenever the stream loop misses a 2 ms beat by 15 ms) counted "
    "61 stalls in a 40-crossing run, most with the sink's publishing thread pickling the live state for the "
    "cache or sending it, or its persistence thread in the driver. Changed, run by run (40 crossings, "
    "tick/control p99 to the client, stalls): (8) `risk.changed` once per flush to two groups, traders' "
    "sockets keeping their own accounts, instead of one send per account; `account_plain()`; the alert "
    "written without a savepoint and pushed as saved, without a re-read: 96/92, 61 stalls; with the "
    "sink's two threads doing nothing at all (an experiment, not a design): 70/67, 7 stalls; (9) the "
    "live state and persistence in a child process (`SinkProcess`): 90/74, 18 stalls; (10) the flush "
    "waiting between accounts while an alert is being written and pushed, the child niced, persistence "
    "made from the plain forms the live state was built from (no Decimals on the loop): 68/102, 9 stalls, "
    "the control tail now in the evaluator's pass (52 ms at p99); (11) profiles reloaded every 30 s kept "
    "the screen when unchanged (a new one rebuilt its bounds on the next frame's path): 40/89; (12) the "
    "reloader no longer re-reads the day states (a query per account on a thread of the stream process, "
    "and it lost the peaks seen between snapshots): 52/97, 6 stalls; (13) the marks' Symbol rows written "
    "by the sink's work, not by the ORM on a thread of the stream process every 5 s, and the default "
    "profile read once per reload, not once per account: 30/52, 2 stalls. Runs vary: the same code gave "
    "p99 40–52 ms in tick mode between (11) and (12).",
    "",
    "On an AMD EPYC machine of 2 cores, 2026-12-05, the code of commit 43d851e (the engine flushing "
    "every 1 s, not every 0.5 s as `run_streams` does) gave tick p50 26.2 / p99 252.3 ms to the client "
    "and control 22.1 / 155.2 ms (`python -m bench.alerts --crossings 60`). A thread watching the "
    "stream loop (a sample of the loop thread's stack whenever the loop missed a 2 ms beat by 20 ms) "
    "found what held frames back, and each was changed: (1) the re-sync each user-data socket makes on "
    "(re)connecting rebuilt the book's index even when it repeated the rows the book held (30+ ms an "
    "account at 10,000 positions; sockets open 16 at a time, so this ran through the first minute): an "
    "unchanged row or wallet is now a no-op; (2) the flush built Decimals for every position of every "
    "account and wrote the cache and pushed `risk.changed` on the loop, one account at a time: the live "
    "state is now built from the book's floats as strings (`RiskBook.positions_plain`, tested equal to "
    "`str(Decimal)`) and handed to the sink's publishing thread, which writes the cache in one round "
    "trip; (3) a risk manager's socket got one `risk.changed` per account per flush, 200 messages "
    "queued ahead of an alert, and past channels_redis's default capacity of 100 per process inbox "
    "messages were dropped: those who see every account now join `acct.all` and get one message per "
    "flush (capacity raised to 2,000); (4) `Symbol` mark rows were bulk-updated every flush (a tenth of "
    "the process's CPU): now every 5 s; (5) the collector ran ~20 times a second with a full collection "
    "every few seconds (up to 64 ms): `settle_gc()`; (6) the GIL hand-over interval is 0.5 ms in the "
    "stream process, so the alert writer's ~10 round trips do not wait 5 ms each behind the loop (write "
    "+ commit p99 72.7 → 19.2 ms in a 30-crossing A/B). Tick/control p99 to the client, run by run on "
    "the way (30–50 crossings a run): 252/155 at 43d851e → 101/— after (1) (tick only) → 249/232 after "
    "(3), the flush now every 0.5 s → 151/173 after (2) and (4) → 102/93 with `gc.freeze()` after the "
    "start → 47/113 after (5) → 70/100 (100 crossings) → 60/88 after (7) → the table above (100 "
    "crossings). (7): Position rows were rewritten for every account every 5 s, 10,000 rows whose marks "
    "and figures the cache already held; MariaDB's commits, the alerts' included, waited behind them. "
    "They are now written when a position's inputs change, else every 60 s, spread over the minute by "
    "account (persistence batch p50 222 → 19 ms). What is left in the control run's tail: the alert's "
    "write and commit (p99 43.6 ms: ~10 round trips, each waiting for the GIL the loop, the publishing "
    "thread and the persistence thread share, and MariaDB's commit on the same two cores) and its "
    "broadcast (p99 58.6 ms: the publishing thread's 200 `risk.changed` sends a flush, most of them to "
    "groups nobody has joined, hold Redis and the GIL). Tried after the table's run and reverted "
    "(commits 6058f5d, b4dce50): skipping the `risk.changed` sends to groups nobody has joined (one "
    "ZCARD pipeline per flush). The publishing thread's batch went from p50 56 to 32 ms, but in two "
    "100-crossing runs the engine's flush on the loop went from p50 127 to 206 ms and the latency to "
    "the client got worse: p50 21–22 ms, p99 68–75 ms (tick) and 109 ms (control), the evaluator's pass "
    "alone (no services) unchanged. Probably the thread, with fewer Redis waits, held the GIL for "
    "longer stretches."
    "",
    "Before the screen (commit cb2ccff and the ones after it), at load average ~1: tick p50 265.1 ms, p99 411.7 "
    "ms to the client; control p50 57.2 ms, p99 310.1 ms. The evaluator's pass built Decimal figures for every "
    "account (237 ms a frame at 200 accounts), the writer could not start before it ended, `group_send` ran on "
    "the stream loop and waited for the pass, and the sink's flush took ~20 s (one `sync_to_async` call per "
    "account's positions and snapshot).",
    "",
    "Before commit f611996 the alert writer shared asgiref's one sync thread with the sink's persistence; "
    "queue → writer thread was then p99 174 ms (tick) and 272 ms (control) in a run of this bench at load "
    "average ~3, against 3.5 ms now.",
    "",
    "A bug this bench found is fixed (commit 987844b): redis-py 8 reads with a 5 s socket timeout by "
    "default and channels_redis blocks in `BZPOPMIN` for 5 s, so with a plain `hosts: [REDIS_URL]` every "
    "`/ws/desk/` consumer idle for ~5 s died with `redis.exceptions.TimeoutError` (close code 1006 in the "
    "browser; django/channels_redis#422). The settings now pass `socket_timeout: None` for the channel "
    "layer, and this bench runs on a plain `REDIS_URL`.",
    "",
]


def report(args: argparse.Namespace, results: dict) -> str:
    m = results["machine"]
    target: Target = results["target"]
    modes: dict[str, list[Transition]] = results["modes"]
    done = {mode: [t for t in ts if t.t_client and t.t_commit and t.from_frame] for mode, ts in modes.items()}
    by_rest = {mode: sum(1 for t in ts if not t.from_frame) for mode, ts in modes.items()}
    tables = {mode: legs(ts) for mode, ts in done.items()}
    flush = results["probe"].flush_ms
    lines = [
        HEADING,
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; MariaDB {results['mariadb']} and Redis "
        f"{results['redis']} on the same machine. Processes: the simulator (multiprocessing), this stream process "
        "(StreamEngine + DjangoSink + `rules.evaluator.attach`), "
        + (
            "the DjangoSink's sink process (`STREAM_SINK_PROCESS`, as `run_streams` runs with Redis), "
            if results.get("sink_process")
            else ""
        )
        + "uvicorn serving `/ws/desk/` (subprocess, "
        "channels_redis layer), the WebSocket client (`websockets`, multiprocessing, a risk manager's session "
        f"cookie). `DATABASE_URL={args.database_url}` (dropped, re-created and migrated by the bench; not "
        f"`riskdesk_bench`, which bench/gate.py uses at the same time), `REDIS_URL={args.redis_url}`. Load "
        f"average at the end: {results['load']}.",
        "",
        f"Desk (seed {args.seed}): {results['positions']:,} positions, {len(results['desk'])} accounts x "
        f"{args.per_account} over {args.symbols} synthetic symbols, all cross, synced over REST at start "
        f"({results['start_s']:.1f} s), every user-data socket open {results['connected_s']:.1f} s after the "
        f"start; measured from {args.warmup_s:g} s after that. Account {target.account_id}'s profile caps "
        "position notional at "
        f"{target.limit:.2f} (critical only, `breach_after_n=1`, hysteresis 0.02): its {target.subject} notional "
        f"at the start mark {target.start_mark.normalize()}. Every other account has a default profile it never "
        "breaches (position notional, liquidation distance, margin ratio, leverage), so each frame is evaluated "
        "for every account it touches. The simulator ticks once a second. A crossing moves "
        f"{target.symbol} to 1.1x the start mark (the alert opens) or back to 0.9x (it resolves), then waits "
        f"{args.gap_s * 0.5:g}-{args.gap_s * 1.5:g} s at random. Two ways to deliver the crossing mark:",
        "",
        *[
            f"- **{mode}**: {MODES[mode]}; N = {len(done[mode])} ({sum(1 for t in done[mode] if t.level)} opened, "
            f"{sum(1 for t in done[mode] if not t.level)} resolved), {results['timeouts'][mode]} timed out, "
            f"{by_rest[mode]} first seen by a REST re-sync instead of a frame (left out), "
            f"evaluator pass over {max((t.eval_accounts for t in done[mode]), default=0)} accounts."
            for mode in modes
        ],
        "",
        "| leg (ms) | " + " | ".join(f"{mode} p50 | p99 | max" for mode in modes) + " |",
        "|---|" + "---|---|---|" * len(modes),
    ]
    for name in next(iter(tables.values())):
        lines.append(f"| {name} | " + " | ".join(stats(tables[mode][name]) for mode in modes) + " |")
    for label, level in (("opened", True), ("resolved", False)):
        cells = []
        for mode in modes:
            sub = legs([t for t in done[mode] if bool(t.level) == level])
            a, b = sub[LEG_COMMIT], sub[LEG_CLIENT]
            cells.append(
                f"{percentile(a, 50):.1f} / {percentile(b, 50):.1f} | {percentile(a, 99):.1f} / "
                f"{percentile(b, 99):.1f} | "
            )
        lines.append(f"| E → committed / → client, {label} only | " + " | ".join(cells) + " |")
    from marketdata.sink import PERSIST_EVERY_S, POSITION_FIGURES_EVERY_S

    persist, publish = results["sink"].persist_ms, results["sink"].publish_ms
    sink_where = "sink process's" if results.get("sink_process") else "sink threads'"
    lines += [
        "",
        "The engine's flush on the event loop (every 0.5 s, as `run_streams` runs it: the book's figures for "
        "each account that changed, as strings, pickled and queued for the sink process, yielding between "
        "accounts and waiting while an alert is being written and pushed) took p50 "
        f"{percentile(flush, 50):.0f} ms, p99 {percentile(flush, 99):.0f} ms wall. The {sink_where} publishing "
        "(the live state of those accounts to the cache in one round trip, then `risk.changed` to the two "
        f"figure groups) took p50 {percentile(publish, 50):.0f} ms, p99 {percentile(publish, 99):.0f} ms per batch "
        f"({len(publish)} batches). Its persistence (a snapshot of each account at most every "
        f"{PERSIST_EVERY_S:g} s, its Position rows when an input changed or every {POSITION_FIGURES_EVERY_S:g} s, "
        f"in bulk statements) took p50 {percentile(persist, 50):.0f} ms, max "
        f"{max(persist, default=float('nan')):.0f} ms per batch ({len(persist)} batches). Garbage collector "
        "pauses in this process while measuring (`streams.settle_gc()` after the start, as `run_streams` runs): "
        + (
            ", ".join(
                f"generation {g}: {len(v)}, max {max(v):.1f} ms" for g, v in sorted(results["probe"].gc_ms.items())
            )
            or "none"
        )
        + ".",
        "",
    ]
    lines += pass_lines(results.get("passes", {}))
    lines += where_the_time_goes(tables, done)
    for mode in modes:
        p99 = percentile(tables[mode][LEG_CLIENT], 99)
        lines.append(f"- Target p99 ≤ 50 ms to the client, {mode}: {'met' if p99 <= 50 else 'missed'} ({p99:.1f} ms).")
    return "\n".join(lines) + "\n"


def server_versions() -> tuple[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        mariadb = cursor.fetchone()[0].split("-")[0]
    import redis

    info = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")
    return mariadb, str(info.get("redis_version", "?"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--per-account", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crossings", type=int, default=200, help="N per mode: mark moves across the limit")
    parser.add_argument("--stalls", action="store_true", help="diagnostics: print where the stream loop stalled")
    parser.add_argument("--modes", default="tick,control", help="how the crossing mark is delivered: tick, control")
    parser.add_argument("--gap-s", type=float, default=1.0, help="mean pause between crossings")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    parser.add_argument("--write-doc", action="store_true", help=f"update '{HEADING}' in docs/PERFORMANCE.md")
    parser.add_argument(
        "--pass-accounts", default="200,2000", help="desk sizes for the evaluator's pass alone ('' to skip)"
    )
    parser.add_argument("--pass-frames", type=int, default=30)
    parser.add_argument("--pass-only", action="store_true", help="only the evaluator's pass; no services needed")
    args = parser.parse_args(argv)
    args.crossings += args.crossings % 2  # even: each mode ends with the alert resolved
    command = command_line("bench.alerts", argv)

    sizes = [int(n) for n in args.pass_accounts.split(",") if n]
    passes = {n: pass_figures(n, args.per_account, args.symbols, args.seed, args.pass_frames) for n in sizes}
    if args.pass_only:
        print("\n".join(pass_lines(passes)))
        return
    from bench.streams import lift_weight_guard

    lift_weight_guard()  # 200 accounts x 2 syncs: Binance's weight limit would make start-up take minutes
    env = bench_env(args, tempfile.mkdtemp(prefix="riskdesk-bench-alerts-"))
    recreate_database(args.database_url)
    migrate_s = migrate(env)
    print(f"database migrated in {migrate_s:.0f} s", file=sys.stderr)
    setup_django(env)
    universe = synthetic_universe(args.symbols, args.seed)
    desk = desk_accounts(
        seed=args.seed, accounts=args.accounts, per_account=args.per_account, universe=universe, isolated_share=0.0
    )
    target = pick_target(desk)
    with SimProcess(SimOptions(desk, args.symbols, args.seed, 1.0)) as sim:
        session_id = seed_database(desk, target, sim.base_url)
        with uvicorn_server(env) as port:
            client = ClientProcess(port, session_id).start()
            try:
                measured = asyncio.run(measure(args, desk, target, sim, client))
            finally:
                client.stop()
    mariadb, redis_version = server_versions()
    results = {
        "command": command,
        "machine": machine(),
        "desk": desk,
        "positions": sum(len(a["positions"]) for a in desk),
        "target": target,
        **measured,
        "mariadb": mariadb,
        "redis": redis_version,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "passes": passes,
    }
    if os.environ.get("BENCH_DEBUG"):
        for mode, transitions in results["modes"].items():
            print(mode, transitions, file=sys.stderr)
        print("client saw", client.seen, file=sys.stderr)
    section = report(args, results)
    print(section)
    if args.write_doc:
        write_doc(HEADING, section)
        print("wrote docs/PERFORMANCE.md", file=sys.stderr)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
