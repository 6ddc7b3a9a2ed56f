"""What bench/streams.py and bench/alerts.py share: a seeded desk in the simulator's account
format, the simulator in its own process, the machine description, percentiles, a
progress bar and the writer of one section of docs/PERFORMANCE.md.

Nothing here imports Django: bench/streams.py runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PERFORMANCE.md"
# Bench-only secrets: the settings refuse to start without them when DEBUG is off (a fresh clone has no .env).
BENCH_SECRETS = {
    "SECRET_KEY": "bench-only-secret-key-not-for-production",
    "FIELD_ENCRYPTION_KEY": "YmVuY2gtb25seS1mZXJuZXQta2V5LTMyLWJ5dGVzISE=",
}
LEVERAGES = (2, 3, 5, 10, 20)


def progress(label: str, done: int, total: int) -> None:
    """A plain stderr bar; redraws in place, ends the line when done."""
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r{label:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (NumPy's default), without importing NumPy for it."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine() -> dict[str, str]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    model = re.search(r"Model name:\s*(.+)", lscpu)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
    }


def command_line(module: str, argv: Sequence[str] | None) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python -m", module, *args])


def write_doc(heading: str, section: str) -> None:
    """Replace this bench's own section of docs/PERFORMANCE.md (or append it); others stay as they are."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n")


# --------------------------------------------------------------------------- the desk


def api_key(index: int) -> str:
    return f"benchkey{index:05d}"


def api_secret(index: int) -> str:
    return f"benchsecret{index:05d}"


def synthetic_universe(symbols: int, seed: int) -> dict[str, Any]:
    """The simulator's own symbol table for ``--synthetic-symbols N --seed K``: the desk's
    entry prices sit near its typical prices, so the simulator's first marks (the first
    entry price seen) are close to where every other position of the symbol was opened."""
    from marketdata.simulator.symbols import load_universe

    universe = load_universe(synthetic_symbols=symbols, seed=seed)
    return {name: spec for name, spec in universe.items() if spec.synthetic}


def desk_accounts(
    *, seed: int, accounts: int, per_account: int, universe: Mapping[str, Any], isolated_share: float = 0.25
) -> list[dict]:
    """``accounts`` simulator accounts (the accounts-file format) of ``per_account`` positions each.

    60 % one-way, 40 % hedge (a third of a hedge account's symbols hold both legs); a
    quarter of the symbols isolated (``isolated_share``); notionals log-uniform 100 .. 200k USDT; the cross
    wallet three times the cross initial margin, so the random walk of a benchmark run
    never brings an account near a margin call (a liquidation would change the desk
    under the measurement)."""
    rng = random.Random(seed)
    symbols = sorted(universe)
    return [_account(rng, index, per_account, symbols, universe, isolated_share) for index in range(accounts)]


def _account(
    rng: random.Random, index: int, count: int, symbols: list[str], universe: Mapping[str, Any], isolated_share: float
) -> dict:
    hedge = rng.random() < 0.4
    rows: list[dict] = []
    cross_im = Decimal(0)
    for symbol in rng.sample(symbols, len(symbols)):
        if len(rows) >= count:
            break
        spec = universe[symbol]
        leverage = min(rng.choice(LEVERAGES), spec.max_leverage)
        margin_type = "isolated" if rng.random() < isolated_share else "cross"
        sides = ["BOTH"]
        if hedge:
            sides = ["LONG", "SHORT"] if rng.random() < 1 / 3 else [rng.choice(["LONG", "SHORT"])]
        for side in sides[: count - len(rows)]:
            row = _position(rng, symbol, side, spec.typical_price, leverage, margin_type)
            rows.append(row)
            if margin_type == "cross":
                cross_im += abs(Decimal(row["qty"])) * Decimal(row["entry_price"]) / leverage
    wallet = (cross_im * 3 + 1000).quantize(Decimal("0.01"))
    return {
        "api_key": api_key(index),
        "api_secret": api_secret(index),
        "name": f"bench {index}",
        "position_mode": "hedge" if hedge else "one-way",
        "wallet": {"USDT": str(wallet)},
        "positions": rows,
    }


def _position(rng: random.Random, symbol: str, side: str, typical: Decimal, leverage: int, margin_type: str) -> dict:
    # Within 0.5 % of the first mark: a desk opened near the market, far from any liquidation.
    entry = typical * Decimal(str(round(rng.uniform(0.995, 1.005), 4)))
    notional = 10 ** rng.uniform(2, math.log10(200_000))
    qty = max(Decimal(str(round(notional / float(entry), 3))), Decimal("0.001"))
    if side == "BOTH" and rng.random() < 0.5:
        qty = -qty
    row = {
        "symbol": symbol,
        "side": side,
        "qty": str(qty),
        "entry_price": str(entry.normalize()),
        "leverage": leverage,
        "margin_type": margin_type,
    }
    if margin_type == "isolated":  # twice the initial margin: a run's random walk cannot liquidate it
        row["isolated_wallet"] = str((abs(qty) * entry * 2 / leverage).quantize(Decimal("0.01")))
    return row


def book_rows(account_id: int, account: Mapping) -> tuple[list[tuple[int, Any]], Decimal]:
    """One generated account as the engine's REST sync would load it: (book items, cross wallet)."""
    from positions.book import BookPosition

    items = []
    for row in account["positions"]:
        qty, entry = Decimal(row["qty"]), Decimal(row["entry_price"])
        isolated = "isolated_wallet" in row
        items.append(
            (
                account_id,
                BookPosition(
                    symbol=row["symbol"],
                    side=row["side"],
                    qty=abs(qty) if row["side"] != "BOTH" else qty,
                    entry_price=entry,
                    leverage=row["leverage"],
                    margin_type=row["margin_type"],
                    isolated_wallet=Decimal(row["isolated_wallet"]) if isolated else Decimal(0),
                ),
            )
        )
    return items, Decimal(account["wallet"]["USDT"])


# Limits a generated desk never reaches, on the rules evaluated per position and per account:
# every frame is then evaluated in full and nothing but the bench's own crossing raises an alert.
GENEROUS_LIMITS: dict[str, Any] = {
    "max_position_notional_warning": Decimal("5000000"),
    "max_position_notional_critical": Decimal("10000000"),
    "liq_distance_warning": Decimal("0.05"),
    "liq_distance_critical": Decimal("0.02"),
    "margin_ratio_warning": Decimal("0.5"),
    "margin_ratio_critical": Decimal("0.8"),
    "max_leverage_warning": 50,
    "max_leverage_critical": 100,
    "breach_after_n": 1,
    "hysteresis": Decimal("0.02"),
}


# --------------------------------------------------------------------------- the simulator process


@dataclass
class SimOptions:
    accounts: list[dict]
    synthetic_symbols: int
    seed: int
    tick_interval_s: float
    marks: dict[str, str] | None = None


def _serve(options: SimOptions, conn: Any) -> None:
    """The child: ``Simulator`` on its own event loop, as ``manage.py simulate_exchange`` runs it
    (marketdata/simulator/cli.serve), reporting its port and, on SIGTERM, its counters."""
    from marketdata.simulator import Simulator, build_config

    config = build_config(
        accounts={"accounts": options.accounts},
        synthetic_symbols=options.synthetic_symbols,
        seed=options.seed,
        tick_interval_s=options.tick_interval_s,
        marks=options.marks,
    )

    async def run() -> None:
        sim = Simulator(config)
        port = await sim.start("127.0.0.1", 0)
        conn.send(port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(conn.fileno(), _stage_marks, sim, conn)
        started = time.monotonic()
        await stop.wait()
        elapsed = time.monotonic() - started
        subs = list(sim.hub.market_subs)
        conn.send(
            {
                "ticks": sim.hub.ticks,
                "frames_sent": sim.hub.frames_sent,
                "dropped": sum(s.dropped for s in subs),
                "elapsed_s": elapsed,
                "cpu_s": time.process_time(),
            }
        )
        await sim.stop()

    asyncio.run(run())


def _stage_marks(sim: Any, conn: Any) -> None:
    """Move marks without publishing: the next regular tick carries them, together with every
    other symbol's move (``POST /_sim/marks`` publishes a frame at once in which only they moved)."""
    while conn.poll():
        try:
            marks = conn.recv()
        except EOFError:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            return
        sim.exchange.apply_marks(sim.market.set_marks({s: Decimal(p) for s, p in marks.items()}))


class SimProcess:
    """The simulator in a separate process (multiprocessing, spawn), so that it and the
    process under measurement do not share a GIL."""

    def __init__(self, options: SimOptions) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(options, child), name="simulator", daemon=True)
        self.port = 0
        self.stats: dict[str, float] = {}

    def start(self, timeout_s: float = 600.0) -> SimProcess:
        self.process.start()
        if not self._conn.poll(timeout_s):
            self.process.kill()
            raise RuntimeError("the simulator did not start")
        self.port = self._conn.recv()
        return self

    def stage_marks(self, marks: Mapping[str, Decimal]) -> None:
        """Set marks that the simulator's next tick publishes (see ``_stage_marks``)."""
        self._conn.send({s: str(p) for s, p in marks.items()})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self) -> dict[str, float]:
        if self.process.is_alive() and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)
            if self._conn.poll(30):
                self.stats = self._conn.recv()
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
        return self.stats

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
