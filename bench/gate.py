"""Order gate benchmark (issue 6). Prints figures; never asserts a time.

In process (the pure check, one core)::

    taskset -c 1 python -m bench.gate                      # 200k checks, all passing, then 10 % denied
    taskset -c 1 python -m bench.gate --profile            # plus a cProfile of the check

Over HTTP (uvicorn + JWT + MariaDB + Redis, a wrk load generator; `apt-get install wrk`)::

    DATABASE_URL=mysql://root@127.0.0.1:3306/riskdesk_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        DB_CONN_MAX_AGE=0 SERVE_STATIC=false python -m bench.gate http --workers 2 --connections 16 --duration 30

The fast path's CPU per check in process (``order_check_answer``, no framing; issue 19)::

    DATABASE_URL=... REDIS_URL=... python -m bench.gate fastpath --checks 3000 --rounds 5

Over the WebSocket lane (issue 19: ``/ws/orders/check``, the same uvicorn; the bots' client in a
process of its own, sending at a fixed rate per connection without waiting for the answers, and
timing each check from its send to its answer)::

    DATABASE_URL=... REDIS_URL=... DB_CONN_MAX_AGE=0 SERVE_STATIC=false \\
        python -m bench.gate ws --workers 1 --connections 1 --rate 1000 --duration 20

The database and Redis are whatever DATABASE_URL and REDIS_URL name (the bench migrates and
seeds the database). uvicorn runs as docker-compose.yml runs it (httptools, uvloop, no access
log, lifespan on); ``--app`` serves another ASGI application (for comparing variants). Besides
wrk's figures the run prints the server's CPU time per check (every uvicorn process, user +
system, over the measured run) and the load average, so runs on a busy machine still compare.

``--write-doc`` replaces the "## Order gate (issue 6)" section of docs/PERFORMANCE.md with what
the run measured (the in-process run keeps the HTTP table already there, and vice versa).

The in-process desk is seeded: 200 accounts (70 % one-way, 30 % hedge; 20 % of positions
isolated) over the 27 fixture symbols with Binance-like filters, 1–5 positions and 0–6
resting orders each, published as the stream process publishes them (RiskBook → the live
dict) and compiled once. The profile enables every check with limits the passing orders
stay inside. Orders are prepared before timing (``Order.make`` is measured separately);
latency is timed per call with perf_counter_ns (its own ~60 ns included).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import gc
import io
import json
import os
import pstats
import random
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench._common import BENCH_SECRETS, command_line, machine, percentile, write_doc
from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from rules import checks as c

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "marketdata" / "data" / "binance_um_leverageBracket_majors_2024-10-24.json"
HEADING = "## Order gate (issue 6)"
NOW = 1_800_000_000_000
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}
TYPICAL = {"BTCUSDT": "67000", "ETHUSDT": "2500", "BNBUSDT": "590", "SOLUSDT": "170"}

PROFILE = {  # every check on; limits the passing orders stay inside
    "max_order_qty": Decimal("1000000"),
    "max_order_notional": Decimal("2000000"),
    "max_price_deviation": Decimal("0.05"),
    "max_market_slippage": Decimal("0.02"),
    "order_rate_per_second": 50,
    "order_rate_per_minute": 1000,
    "max_open_orders": 200,
    "max_daily_orders": 100000,
    "max_daily_cancels": 100000,
    "max_daily_fills": 100000,
    "duplicate_window_s": 2,
    "symbol_allowlist": sorted(TABLES),
    "symbol_denylist": ["LUNAUSDT"],
    "max_position_notional_warning": Decimal("4000000"),
    "max_position_notional_critical": Decimal("5000000"),
    "max_account_notional_warning": Decimal("20000000"),
    "max_account_notional_critical": Decimal("30000000"),
    "max_leverage_warning": 20,
    "max_leverage_critical": 50,
    "margin_ratio_warning": Decimal("0.7"),
    "margin_ratio_critical": Decimal("0.9"),
    "liq_distance_warning": Decimal("0.01"),
    "liq_distance_critical": Decimal("0.001"),
}


# =========================================================================== the desk


def _price(symbol: str, rng: random.Random) -> Decimal:
    base = Decimal(TYPICAL.get(symbol) or str(round(rng.uniform(0.5, 300), 2)))
    return base


def _filters(symbol: str, mark: Decimal) -> dict[str, Any]:
    # Binance-like: tick ~ mark / 10^5, step so that one step is worth ~1–10 USDT.
    tick = Decimal(1).scaleb(min(-1, mark.adjusted() - 4))
    step = Decimal(1).scaleb(max(-3, -(mark.adjusted() + 1) + 1))
    return dict(
        tick_size=tick,
        step_size=step,
        min_qty=step,
        max_qty=step * 10**7,
        market_max_qty=step * 10**6,
        min_notional=Decimal("5"),
    )


def build_market(rng: random.Random) -> tuple[dict[str, c.SymbolView], dict[str, list], dict[str, dict]]:
    symbols, raw_marks, filters = {}, {}, {}
    for name, table in TABLES.items():
        mark = _price(name, rng)
        f = _filters(name, mark)
        filters[name] = {**f, "mark": mark}
        symbols[name] = c.symbol_view(name=name, status="TRADING", brackets=table, **f)
        raw_marks[name] = [str(mark), NOW]
    return symbols, raw_marks, filters


def _published(book: RiskBook, account_id: int, open_orders: list[dict]) -> dict:
    """What marketdata.sink.account_state publishes (without importing Django)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    risk = book.account(account_id)
    figures = {k: plain(v) for k, v in dataclasses.asdict(risk).items() if k != "per_asset"}
    positions = [{k: plain(v) for k, v in dataclasses.asdict(p).items()} for p in book.positions(account_id)]
    return {
        "account_id": account_id,
        "published_ms": NOW,
        "figures": figures,
        "positions": positions,
        "open_orders": open_orders,
    }


def _snap(value: Decimal, step: Decimal) -> Decimal:
    return max(step, (value / step).to_integral_value() * step)


def build_accounts(rng: random.Random, filters: dict[str, dict], n: int) -> list[tuple[c.AccountView, dict]]:
    names = sorted(TABLES)
    book = RiskBook(capacity=4096)
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    book.apply_marks({s: f["mark"] for s, f in filters.items()}, ts=NOW)
    accounts = []
    for account_id in range(1, n + 1):
        hedge = rng.random() < 0.3
        wallet = Decimal(rng.choice(["20000", "100000", "500000"]))
        book.set_wallet(account_id, wallet)
        held = {}
        for symbol in rng.sample(names, rng.randint(1, 5)):
            f = filters[symbol]
            notional = Decimal(str(round(rng.uniform(500, float(wallet) * 0.5), 2)))
            qty = _snap(notional / f["mark"], f["step_size"])
            isolated = not hedge and rng.random() < 0.2
            lev = rng.choice([5, 10, 20])
            sides = (
                (("LONG", "SHORT") if rng.random() < 0.4 else (rng.choice(["LONG", "SHORT"]),)) if hedge else ("BOTH",)
            )
            for side in sides:
                signed = -qty if side == "BOTH" and rng.random() < 0.4 else qty
                entry = _snap(f["mark"] * Decimal(str(rng.uniform(0.95, 1.05))), f["tick_size"])
                iso = (qty * entry / lev).quantize(Decimal("0.01")) if isolated else Decimal(0)
                book.upsert_position(
                    account_id,
                    BookPosition(
                        symbol,
                        side,
                        signed,
                        entry,
                        lev,
                        margin_type="isolated" if isolated else "cross",
                        isolated_wallet=iso,
                    ),
                )
                held[(symbol, side)] = signed
        resting = []
        for _ in range(rng.randint(0, 6)):
            symbol = rng.choice(names)
            f = filters[symbol]
            side = rng.choice(["BUY", "SELL"])
            far = Decimal("0.9") if side == "BUY" else Decimal("1.1")  # resting well away from the mark
            resting.append(
                {
                    "symbol": symbol,
                    "side": side,
                    "price": str(_snap(f["mark"] * far, f["tick_size"])),
                    "origQty": str(f["step_size"]),
                }
            )
        state = _published(book, account_id, resting)
        view = c.account_view(
            account_id=account_id, trading_state="ACTIVE", hedge=hedge, state=state, user_feed_connected=True
        )
        accounts.append((view, {"hedge": hedge, "held": held}))
    return accounts


def make_orders(rng: random.Random, accounts: list, filters: dict[str, dict], n: int, deny_share: float) -> list:
    names = sorted(TABLES)
    out = []
    for i in range(n):
        view, info = rng.choice(accounts)
        symbol = rng.choice(names)
        f = filters[symbol]
        side = rng.choice(["BUY", "SELL"])
        kind = "LIMIT" if rng.random() < 0.8 else "MARKET"
        qty = _snap(Decimal(str(rng.uniform(20, 5000))) / f["mark"], f["step_size"])
        if kind == "LIMIT":
            offset = Decimal(str(rng.uniform(-0.02, 0.02)))
            price = _snap(f["mark"] * (1 + offset), f["tick_size"])
            # passive side of the own resting orders (+/- 10 %): no self-trade
        else:
            price = _snap(f["mark"] * (Decimal("1.01") if side == "BUY" else Decimal("0.99")), f["tick_size"])
        position_side = "BOTH"
        if info["hedge"]:
            position_side = "LONG" if side == "BUY" else "SHORT"  # open or add
        deny = i < n * deny_share
        if deny:  # a fat finger: ten times the price band, and too many decimals on the step
            price = _snap(f["mark"] * Decimal("1.5"), f["tick_size"]) if kind == "LIMIT" else price
            qty = qty * 10**7 if kind == "MARKET" else qty
        order = c.Order.make(symbol=symbol, side=side, type=kind, qty=qty, price=price, position_side=position_side)
        out.append((order, view, deny))
    rng.shuffle(out)
    return out


# =========================================================================== in process


def run_inproc(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    symbols, raw_marks, filters = build_market(rng)
    market = c.market_state(
        symbols=symbols, marks=c.compile_marks(raw_marks), feed_last_ms=NOW, now_ms=NOW, stale_ms=5000
    )
    profile = c.compile_profile(PROFILE)
    counters = c.Counters(rate_1s=3, rate_1m=20, daily_orders=50, daily_cancels=10, daily_fills=20)
    accounts = build_accounts(rng, filters, args.accounts)
    results = {}
    for label, share in (("all passing", 0.0), ("10 % denied", 0.10)):
        orders = make_orders(random.Random(args.seed + 1), accounts, filters, args.checks, share)
        denied = sum(not c.check_order(o, v, market, profile, counters).allowed for o, v, _ in orders)
        results[label] = {
            **_time(orders, market, profile, counters, args.rounds),
            "denied": denied,
            "checks": len(orders),
        }
    results["make"] = _time_make(args.checks)
    results["module"] = _module_used()
    if args.profile:
        results["profile"] = _cprofile(
            make_orders(random.Random(1), accounts, filters, 50_000, 0.1), market, profile, counters
        )
    return results


def _time(
    orders: list, market: c.MarketState, profile: c.GateProfile, counters: c.Counters, rounds: int
) -> dict[str, float]:
    check = c.check_order
    pairs = [(o, v) for o, v, _ in orders]
    best = 0.0
    gc.disable()
    try:
        for _ in range(rounds):  # throughput: a tight loop, best of `rounds`
            start = time.perf_counter()
            for o, v in pairs:
                check(o, v, market, profile, counters)
            best = max(best, len(pairs) / (time.perf_counter() - start))
        samples = []
        clock = time.perf_counter_ns
        for o, v in pairs:
            t0 = clock()
            check(o, v, market, profile, counters)
            samples.append(clock() - t0)
    finally:
        gc.enable()
    return {
        "per_s": best,
        "p50_us": percentile(samples, 50) / 1000,
        "p99_us": percentile(samples, 99) / 1000,
        "p999_us": percentile(samples, 99.9) / 1000,
        "mean_us": 1e6 / best,
    }


def _module_used() -> str:
    # The Cython extension when setup built it (scripts/build_checks.py), else the .py.
    return "compiled (Cython)" if c.COMPILED else "pure Python (no extension built)"


def _time_make(n: int) -> dict[str, float]:
    raw = [("BTCUSDT", "BUY", "LIMIT", Decimal("0.015"), Decimal("66950.10"))] * n
    start = time.perf_counter()
    for symbol, side, kind, qty, price in raw:
        c.Order.make(symbol=symbol, side=side, type=kind, qty=qty, price=price)
    return {"per_s": n / (time.perf_counter() - start)}


def _cprofile(orders: list, market: c.MarketState, profile: c.GateProfile, counters: c.Counters) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for o, v, _ in orders:
        c.check_order(o, v, market, profile, counters)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
    return out.getvalue()


def print_inproc(r: dict[str, Any]) -> None:
    print(f"rules.checks: {r['module']} ({Path(c.__file__).name})")
    for label in ("all passing", "10 % denied"):
        x = r[label]
        print(
            f"{label:<12} {x['per_s']:>10,.0f} checks/s  mean {x['mean_us']:.2f} µs  p50 {x['p50_us']:.2f} µs  "
            f"p99 {x['p99_us']:.2f} µs  p99.9 {x['p999_us']:.2f} µs  (denied {x['denied']:,} of {x['checks']:,})"
        )
    print(f"Order.make   {r['make']['per_s']:>10,.0f} orders/s (parsing an order, outside the check)")
    if "profile" in r:
        print(r["profile"])


# =========================================================================== over HTTP


def http_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Bench data in the configured database (idempotent) and a token; Django only here."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    for name, value in BENCH_SECRETS.items():  # uvicorn inherits them
        os.environ.setdefault(name, value)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts import services as account_services
    from accounts.models import ExchangeAccount, Role, User
    from marketdata.exchange import SymbolFilters
    from marketdata.services import brackets_store, symbols_refresh
    from rules.models import RiskProfile

    rng = random.Random(args.seed)
    _symbols, raw_marks, filters = build_market(rng)
    symbols_refresh(
        filters=[
            SymbolFilters(
                symbol=s,
                status="TRADING",
                base_asset=s[:-4],
                quote_asset="USDT",
                margin_asset="USDT",
                tick_size=f["tick_size"],
                step_size=f["step_size"],
                min_qty=f["min_qty"],
                max_qty=f["max_qty"],
                market_max_qty=f["market_max_qty"],
                min_notional=f["min_notional"],
                price_precision=8,
                quantity_precision=8,
            )
            for s, f in filters.items()
        ]
    )
    brackets_store(tables=TABLES)
    values = {k: v for k, v in PROFILE.items()}
    values.update(
        order_rate_per_second=None, order_rate_per_minute=None, max_daily_orders=None, duplicate_window_s=None
    )  # a load test sends the same order: no throttles, no duplicates
    RiskProfile.objects.update_or_create(name="bench-gate", defaults={"is_default": True, **values})
    user = User.objects.filter(username="bench-trader").first() or account_services.user_create(
        username="bench-trader", password="bench-password-9", role=Role.TRADER
    )
    account = ExchangeAccount.objects.filter(name="bench-gate").first() or account_services.account_create(
        name="bench-gate", api_key="bench-key", api_secret="bench-secret", traders=[user]
    )
    token = str(AccessToken.for_user(user))
    mark = filters["BTCUSDT"]["mark"]
    body = {
        "account": account.id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.015",
        "price": str(_snap(mark * Decimal("0.999"), filters["BTCUSDT"]["tick_size"])),
    }
    return {"token": token, "body": body, "account_id": account.id, "raw_marks": raw_marks, "filters": filters}


def _publisher(setup: dict[str, Any], stop: threading.Event) -> None:
    """Stands in for the stream process: republish the account, marks and feeds every second."""
    from marketdata import live

    rng = random.Random(7)
    book = RiskBook()
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    account_id = setup["account_id"]
    book.set_wallet(account_id, Decimal("100000"))
    f = setup["filters"]["BTCUSDT"]
    book.upsert_position(account_id, BookPosition("BTCUSDT", "BOTH", Decimal("0.5"), f["mark"], 20))
    while not stop.is_set():
        now = live.now_ms()
        book.apply_marks({s: Decimal(p) for s, (p, _ts) in setup["raw_marks"].items()}, ts=now)
        state = _published(book, account_id, [])
        state["published_ms"] = now
        live.accounts_set({account_id: state})
        live.marks_merge({s: [p, now] for s, (p, _ts) in setup["raw_marks"].items()})
        live.feed_set("market", {"name": "market", "connected": True, "stale": False, "last_message_ms": now})
        live.feed_set(f"user:{account_id}", {"name": "user", "connected": True, "stale": False, "last_message_ms": now})
        stop.wait(1.0 + rng.random() * 0.01)


def uvicorn_command(args: argparse.Namespace) -> list[str]:
    """docker-compose.yml's web command, on loopback (keep the two in step)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        args.app,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--lifespan",
        "on",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _cpu_s(session: int) -> float:
    """User + system CPU seconds of every live process in the session (uvicorn and its workers)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields after the name: state ppid pgrp session ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_http(args: argparse.Namespace) -> dict[str, Any]:
    setup = http_setup(args)
    env = {**os.environ, "WRK_TOKEN": setup["token"], "WRK_BODY": json.dumps(setup["body"])}
    stop = threading.Event()
    publisher = threading.Thread(target=_publisher, args=(setup, stop), daemon=True)
    publisher.start()
    server = subprocess.Popen(uvicorn_command(args), cwd=ROOT, env=env, start_new_session=True)
    try:
        _wait_http(args.port, setup)
        url = f"http://127.0.0.1:{args.port}/api/v1/orders/check"
        wrk = [
            "wrk",
            "-t",
            str(args.threads),
            "-c",
            str(args.connections),
            "-d",
            f"{args.warmup}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "wrk_check.lua"),
            url,
        ]
        subprocess.run(wrk, env=env, capture_output=True, check=True)  # warm-up: catalogue, connections
        wrk[wrk.index("-d") + 1] = f"{args.duration}s"
        load_before, cpu_before = os.getloadavg(), _cpu_s(server.pid)
        output = subprocess.run(wrk, env=env, capture_output=True, text=True, check=True).stdout
        cpu_s, load_after = _cpu_s(server.pid) - cpu_before, os.getloadavg()
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)  # uvicorn's workers are in its session
        server.wait(timeout=20)
    print(output)
    figures = _parse_wrk(output)
    return {
        **figures,
        "server_cpu_ms": 1000 * cpu_s / max(figures["requests"], 1),
        "load": f"{load_before[0]:.2f} → {load_after[0]:.2f}",
        "raw": output,
        "workers": args.workers,
        "connections": args.connections,
        "threads": args.threads,
        "duration_s": args.duration,
    }


def _wait_http(port: int, setup: dict[str, Any], timeout_s: float = 60) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/orders/check",
        data=json.dumps(setup["body"]).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {setup['token']}", "Content-Type": "application/json"},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.loads(response.read())
                if not answer["allowed"]:
                    raise SystemExit(f"the bench order is denied: {answer['failures']}")
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise SystemExit("uvicorn did not answer")


def _parse_wrk(output: str) -> dict[str, Any]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "per_s": rate,
        "p50_ms": ms(lat["50"]),
        "p90_ms": ms(lat["90"]),
        "p99_ms": ms(lat["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


# =========================================================================== the fast path in process


def run_fastpath(args: argparse.Namespace) -> dict[str, Any]:
    """CPU per check of `order_check_answer` (the function both fast lanes call: token, permissions,
    validation, access, the gate's one Redis round trip, the check, the log row, rendering), in
    this process on uvloop, one check at a time; no HTTP or WebSocket framing. CPU is the
    process's (the order log writer's thread included), so it varies less with the machine's
    load than wall time does."""
    import uvloop

    setup = http_setup(args)
    if args.plain_redis:
        from django.conf import settings

        settings.GATE_LEAN_REDIS = False  # riskdesk.redis_clients.gate_async_client: redis.asyncio's client
    stop = threading.Event()
    threading.Thread(target=_publisher, args=(setup, stop), daemon=True).start()
    time.sleep(1.5)  # the first publication
    from rules.api_orders import order_check_fast as order_check_answer  # the HTTP lane's entry (older trees too)

    authorization = b"Bearer " + setup["token"].encode()
    body = json.dumps(setup["body"]).encode()

    async def main() -> dict[str, Any]:
        status, payload, _ = await order_check_answer(authorization, body)
        if status != 200 or not json.loads(payload)["allowed"]:
            raise SystemExit(f"the bench order is not allowed: {status} {payload[:300]!r}")
        for _ in range(1000):  # warm-up: caches, the connection, the compiled live state
            await order_check_answer(authorization, body)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.checks):
                await order_check_answer(authorization, body)
            cpu_us = 1e6 * (time.process_time() - cpu) / args.checks
            if not best or cpu_us < best["cpu_us"]:
                best = {"cpu_us": cpu_us, "wall_us": 1e6 * (time.perf_counter() - wall) / args.checks}
        return best

    try:
        result = uvloop.run(main())
    finally:
        stop.set()
    from django.conf import settings

    from rules import gate

    client = type(gate.store()._aredis).__name__ if hasattr(gate.store(), "_aredis") else "LocalStore"
    import redis.utils

    return {
        **result,
        "redis_client": client,
        "hiredis": redis.utils.HIREDIS_AVAILABLE,
        "lean": settings.GATE_LEAN_REDIS if hasattr(settings, "GATE_LEAN_REDIS") else True,
    }


# =========================================================================== over the WebSocket lane


def _ws_client(
    url: str, origin: str, token: str, body: dict, rate: float, warmup_s: float, duration_s: float, out
) -> None:
    """One process, `--connections` sockets (asyncio, uvloop); puts its latencies (ms) on `out`."""
    import asyncio

    import uvloop
    from websockets.asyncio.client import connect

    async def one(index: int) -> dict[str, Any]:
        sent: dict[int, float] = {}
        latencies: list[float] = []
        errors = {"non_200": 0, "denied": 0}
        clock = time.perf_counter
        async with connect(url, origin=origin, compression=None, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            ready = json.loads(await ws.recv())
            if ready.get("status") != 200:
                raise SystemExit(f"lane auth refused: {ready}")
            start = clock()
            measure_from, end = start + warmup_s, start + warmup_s + duration_s
            done = asyncio.Event()

            async def reader() -> None:
                while True:
                    frame = json.loads(await ws.recv())
                    now = clock()
                    t = sent.pop(frame["id"], None)
                    if t is not None and t >= measure_from:
                        latencies.append((now - t) * 1000)
                        if frame["status"] != 200:
                            errors["non_200"] += 1
                        elif not frame["body"]["allowed"]:
                            errors["denied"] += 1
                    if not sent and clock() >= end:
                        done.set()
                        return

            task = asyncio.ensure_future(reader())
            period, n, next_t = 1.0 / rate, 0, start
            template = '{"id": %d, "order": ' + json.dumps(body) + "}"
            while True:
                now = clock()
                if now >= end:
                    break
                while next_t <= now:  # open loop: what is due is sent, answered or not
                    sent[n] = clock()
                    await ws.send(template % n)
                    n += 1
                    next_t += period
                await asyncio.sleep(max(0.0, next_t - clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 10)
            task.cancel()
        return {"latencies": latencies, "sent": n, "unanswered": len(sent), **errors}

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*[one(i) for i in range(int(out.connections))])

    out.put(uvloop.run(main()))


class _Out:
    """A queue that also carries the connection count (spawned processes get it pickled)."""

    def __init__(self, queue: Any, connections: int) -> None:
        self.queue, self.connections = queue, connections

    def put(self, value: Any) -> None:
        self.queue.put(value)


def run_ws(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing

    setup = http_setup(args)
    env = {**os.environ}
    stop = threading.Event()
    publisher = threading.Thread(target=_publisher, args=(setup, stop), daemon=True)
    publisher.start()
    server = subprocess.Popen(uvicorn_command(args), cwd=ROOT, env=env, start_new_session=True)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    try:
        _wait_http(args.port, setup)
        url, origin = f"ws://127.0.0.1:{args.port}/ws/orders/check", f"http://127.0.0.1:{args.port}"
        client = ctx.Process(
            target=_ws_client,
            args=(
                url,
                origin,
                setup["token"],
                setup["body"],
                args.rate,
                args.warmup,
                args.duration,
                _Out(queue, args.connections),
            ),
        )
        client.start()
        time.sleep(args.warmup)  # measured from the end of the client's warm-up (approximately: CPU and load)
        load_before, cpu_before, wall_before = os.getloadavg(), _cpu_s(server.pid), time.monotonic()
        results = queue.get(timeout=args.warmup + args.duration + 60)
        cpu_s, wall_s, load_after = _cpu_s(server.pid) - cpu_before, time.monotonic() - wall_before, os.getloadavg()
        client.join(timeout=10)
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    latencies = sorted(x for r in results for x in r["latencies"])
    checks = len(latencies)
    return {
        "connections": args.connections,
        "rate": args.rate,
        "workers": args.workers,
        "duration_s": args.duration,
        "checks": checks,
        "per_s": checks / args.duration,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "p999_ms": percentile(latencies, 99.9),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "non_200": sum(r["non_200"] for r in results),
        "denied": sum(r["denied"] for r in results),
        "unanswered": sum(r["unanswered"] for r in results),
        "server_cpu_ms": 1000 * cpu_s / max(1, checks * wall_s / args.duration),
        "load": f"{load_before[0]:.2f} → {load_after[0]:.2f}",
    }


# =========================================================================== doc


def _doc(inproc: dict | None, http: dict | None, cmd: str) -> str:
    m = machine()
    old = _old_section()
    lines = [HEADING, "", f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}.", ""]
    lines += _inproc_lines(inproc, cmd) if inproc else old.get("inproc", [])
    lines += _http_lines(http, cmd) if http else old.get("http", [])
    lines += old.get("notes", [])  # hand-written analysis ("### Where the time goes") is kept
    return "\n".join(lines).rstrip("\n") + "\n"


def _inproc_lines(r: dict, cmd: str) -> list[str]:
    rows = [
        "### In process: `rules.checks.check_order`, one core",
        "",
        f"Command: `taskset -c 1 {cmd}`; `rules.checks`: {r['module']}; load average {_load_average()}",
        "",
        "| run | checks/s | mean | p50 | p99 | p99.9 | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in ("all passing", "10 % denied"):
        x = r[label]
        rows.append(
            f"| {label} | {x['per_s']:,.0f} | {x['mean_us']:.2f} µs | {x['p50_us']:.2f} µs | "
            f"{x['p99_us']:.2f} µs | {x['p999_us']:.2f} µs | ≥ 300,000/s, p99 ≤ 10 µs |"
        )
    rows += [
        "",
        f"`Order.make` (parsing an order's Decimals into units, outside the check): {r['make']['per_s']:,.0f}/s.",
        "",
    ]
    return rows


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _http_lines(r: dict, cmd: str) -> list[str]:
    return [
        "### Over HTTP: `POST /api/v1/orders/check`, uvicorn + JWT + MariaDB + Redis",
        "",
        f"Command: `{cmd}` (wrk {r['threads']} threads, {r['connections']} connections, {r['duration_s']} s, "
        f"uvicorn --workers {r['workers']} as docker-compose.yml runs it; wrk, MariaDB and Redis share the same "
        "2 cores; server CPU: every uvicorn process's user + system time over the run, per check)",
        "",
        "| checks/s | p50 | p90 | p99 | non-2xx | server CPU per check | load average (1 min) | target |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['per_s']:,.0f} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
        f"{r['non_2xx']} | {r['server_cpu_ms']:.3f} ms | {r['load']} | ≥ 5,000/s at p99 ≤ 10 ms (issue 19) |",
        "",
    ]


def _old_section() -> dict[str, list[str]]:
    from bench._common import DOC

    text = DOC.read_text() if DOC.exists() else ""
    match = re.search(rf"^{re.escape(HEADING)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    out: dict[str, list[str]] = {}
    if match:
        for part in re.split(r"(?=^### )", match.group(1), flags=re.M):
            if part.startswith("### In process"):
                out["inproc"] = part.rstrip("\n").split("\n") + [""]
            elif part.startswith("### Over HTTP"):
                out["http"] = part.rstrip("\n").split("\n") + [""]
            elif part.startswith("### "):
                out.setdefault("notes", []).extend(part.rstrip("\n").split("\n") + [""])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["inproc", "http", "ws", "fastpath"], default="inproc")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--plain-redis", action="store_true", help="fastpath: redis.asyncio's client, not the lean one")
    parser.add_argument("--rate", type=float, default=1000, help="ws: checks a second per connection")
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--app", default="riskdesk.asgi:application", help="the ASGI application uvicorn serves")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    cmd = command_line("bench.gate", argv)
    if args.mode == "inproc":
        result = run_inproc(args)
        print_inproc(result)
        if args.write_doc:
            write_doc(HEADING, _doc(result, None, cmd))
    elif args.mode == "fastpath":
        result = run_fastpath(args)
        print(
            f"order_check_answer in process: {result['cpu_us']:.0f} µs CPU per check (best of {args.rounds} x "
            f"{args.checks:,}; wall {result['wall_us']:.0f} µs), Redis client {result['redis_client']}, "
            f"hiredis {result['hiredis']}, load {_load_average()}"
        )
    elif args.mode == "ws":
        result = run_ws(args)
        print(
            f"ws lane: {result['connections']} connection(s) x {result['rate']:,.0f}/s, {result['workers']} worker(s): "
            f"{result['per_s']:,.0f} checks/s  p50 {result['p50_ms']:.2f} ms  p90 {result['p90_ms']:.2f} ms  "
            f"p99 {result['p99_ms']:.2f} ms  p99.9 {result['p999_ms']:.2f} ms  max {result['max_ms']:.2f} ms  "
            f"non-200 {result['non_200']}  denied {result['denied']}  unanswered {result['unanswered']}  "
            f"server CPU {result['server_cpu_ms']:.3f} ms/check  load {result['load']}"
        )
    else:
        result = run_http(args)
        print(
            f"{result['per_s']:,.0f} checks/s  p50 {result['p50_ms']:.2f} ms  p90 {result['p90_ms']:.2f} ms  "
            f"p99 {result['p99_ms']:.2f} ms  server CPU {result['server_cpu_ms']:.3f} ms/check  load {result['load']}"
        )
        if args.write_doc:
            write_doc(HEADING, _doc(None, result, cmd))


if __name__ == "__main__":
    main()
