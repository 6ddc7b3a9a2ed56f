"""Risk book revaluation benchmark (issue 3). Prints figures; never asserts a time.

    taskset -c 0 python -m bench.revalue                 # 100k positions, 2k accounts, 300 symbols
    taskset -c 0 python -m bench.revalue --write-doc     # also update docs/PERFORMANCE.md

The desk is random but seeded. Symbols are synthetic (``S000USDT`` … ``S299USDT``);
symbol i uses the bracket table of fixture symbol i mod 27 (the 2024-10-24
leverageBracket fixture) so every real tier structure appears ~11 times. 60 % of
accounts are one-way, 40 % hedge (a third of their symbols hold both legs); 75 %
of an account's symbols are cross, 25 % isolated; 10 % of accounts also have a
USDC pool. Notionals are log-uniform 100 .. 5M USDT.

Measured: one full-market update (``apply_mark_array`` with 300 decimal strings,
as ``!markPrice@arr`` delivers them), single-symbol updates (``apply_mark``),
peak resident memory, and the same revaluation done position by position with
the Decimal functions of positions.margin / positions.figures on a sample of
accounts, extrapolated to the whole desk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

# One core, as the targets say: keep any BLAS/OpenMP pool from spreading (NumPy's
# element-wise kernels are single-threaded anyway).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 - after the thread caps above

from positions import figures  # noqa: E402
from positions.book import BookPosition, RiskBook  # noqa: E402
from positions.margin import Bracket, brackets_from_binance, liquidation_point  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "marketdata" / "data" / "binance_um_leverageBracket_majors_2024-10-24.json"
DOC = ROOT / "docs" / "PERFORMANCE.md"
HEADING = "## Risk book revaluation (issue 3)"
T0 = 1_730_000_000_000


def progress(label: str, done: int, total: int) -> None:
    """A plain stderr bar; redraws in place, ends the line when done."""
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r{label:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --------------------------------------------------------------------------- the desk


def load_tables() -> list[tuple[Bracket, ...]]:
    rows = json.loads(FIXTURE.read_text())
    return [tuple(brackets_from_binance(row["brackets"])) for row in rows]


class Desk:
    def __init__(self, *, seed: int, positions: int, accounts: int, symbols: int) -> None:
        self.rng = random.Random(seed)
        tables = load_tables()
        self.symbols = [f"S{i:03d}USDT" for i in range(symbols)]
        self.tables = {s: tables[i % len(tables)] for i, s in enumerate(self.symbols)}
        self.marks = {s: self.log_uniform(0.01, 60_000, 4) for s in self.symbols}
        self.rows: dict[int, list[BookPosition]] = {a: [] for a in range(accounts)}
        self.wallets: dict[int, dict[str, Decimal]] = {}
        per_account = positions // accounts
        for account in range(accounts):
            self.fill_account(account, per_account + (account < positions % accounts))

    def log_uniform(self, low: float, high: float, places: int) -> Decimal:
        value = 10 ** self.rng.uniform(np.log10(low), np.log10(high))
        return Decimal(f"{value:.{places}f}")

    def fill_account(self, account: int, count: int) -> None:
        hedge = self.rng.random() < 0.4
        usdc = self.rng.random() < 0.1
        symbols = iter(self.rng.sample(self.symbols, len(self.symbols)))
        initial = {"USDT": Decimal(0), "USDC": Decimal(0)}
        while len(self.rows[account]) < count:
            symbol = next(symbols)
            margin_type = "isolated" if self.rng.random() < 0.25 else "cross"
            asset = "USDC" if usdc and self.rng.random() < 0.3 else "USDT"
            sides = ["BOTH"]
            if hedge:
                both = self.rng.random() < 1 / 3
                sides = ["LONG", "SHORT"] if both else [self.rng.choice(["LONG", "SHORT"])]
            for side in sides[: count - len(self.rows[account])]:
                position = self.position(symbol, side, margin_type, asset)
                self.rows[account].append(position)
                if margin_type == "cross":
                    initial[asset] += abs(position.qty) * position.entry_price / position.leverage
        self.wallets[account] = {
            asset: (im * Decimal(self.rng.uniform(1.2, 3.0)) + 100).quantize(Decimal("0.01"))
            for asset, im in initial.items()
            if asset == "USDT" or usdc
        }

    def position(self, symbol: str, side: str, margin_type: str, asset: str) -> BookPosition:
        mark = self.marks[symbol]
        entry = (mark * Decimal(self.rng.uniform(0.9, 1.1))).quantize(Decimal("0.0001"))
        notional = self.log_uniform(100, 5_000_000, 2)
        qty = max((notional / entry).quantize(Decimal("0.001")), Decimal("0.001"))
        if side == "BOTH" and self.rng.random() < 0.5:
            qty = -qty
        leverage = self.rng.choice([2, 3, 5, 10, 20])
        iso = Decimal(0)
        if margin_type == "isolated":
            margin = abs(qty) * entry / leverage * Decimal(self.rng.uniform(1.0, 1.5))
            iso = margin.quantize(Decimal("0.01"))
        return BookPosition(
            symbol=symbol,
            side=side,
            qty=qty,
            entry_price=entry,
            leverage=leverage,
            margin_type=margin_type,
            isolated_wallet=iso,
            margin_asset=asset,
        )

    def next_marks(self) -> list[str]:
        """Every mark moves by up to ±0.5 %: what one second of !markPrice@arr looks like."""
        for symbol, mark in self.marks.items():
            moved = mark * Decimal(1 + self.rng.uniform(-0.005, 0.005))
            self.marks[symbol] = moved.quantize(Decimal("0.0001"))
        return [str(self.marks[s]) for s in self.symbols]


def build_book(desk: Desk) -> RiskBook:
    total = sum(len(rows) for rows in desk.rows.values())
    book = RiskBook(capacity=total + 16)
    for symbol in desk.symbols:
        book.set_brackets(symbol, desk.tables[symbol])
    book.apply_mark_array(desk.symbols, [str(desk.marks[s]) for s in desk.symbols], ts=T0)
    items = [(account, p) for account, rows in desk.rows.items() for p in rows]
    chunk = 10_000
    for start in range(0, len(items), chunk):
        book.upsert_positions(items[start : start + chunk])
        progress("loading positions", min(start + chunk, len(items)), len(items))
    for account, wallets in desk.wallets.items():
        for asset, balance in wallets.items():
            book.set_wallet(account, balance, asset=asset)
    book.resync()
    return book


# --------------------------------------------------------------------------- Decimal baseline


def revalue_account_decimal(desk: Desk, account: int) -> dict[tuple[str, str], Decimal | None]:
    """What the desk would do without the book: Decimal figures position by position,
    the pool's TMM1/UPNL1 summed once per account (not once per position)."""
    inputs = [p.with_mark(desk.marks[p.symbol]) for p in desk.rows[account]]
    figures.account_figures(wallet_balances=desk.wallets[account], positions=inputs, brackets=desk.tables)
    mm = {id(p): figures.position_maint_margin(p, desk.tables[p.symbol]) for p in inputs}
    upnl = {id(p): figures.unrealized_pnl(p) for p in inputs}
    pool_mm: dict[str, Decimal] = {}
    pool_upnl: dict[str, Decimal] = {}
    for p in inputs:
        if p.margin_type == "cross":
            pool_mm[p.margin_asset] = pool_mm.get(p.margin_asset, Decimal(0)) + mm[id(p)]
            pool_upnl[p.margin_asset] = pool_upnl.get(p.margin_asset, Decimal(0)) + upnl[id(p)]
    return {(p.symbol, p.side): lp_decimal(desk, account, p, inputs, mm, upnl, pool_mm, pool_upnl) for p in inputs}


def lp_decimal(
    desk: Desk,
    account: int,
    p: figures.PositionInput,
    inputs: list,
    mm: dict,
    upnl: dict,
    pool_mm: dict,
    pool_upnl: dict,
) -> Decimal | None:
    legs = [p]
    wallet = p.isolated_wallet
    other_mm = other_upnl = Decimal(0)
    if p.margin_type == "cross":
        legs = [q for q in inputs if q.symbol == p.symbol]
        wallet = desk.wallets[account][p.margin_asset]
        other_mm = pool_mm[p.margin_asset] - sum(mm[id(q)] for q in legs)
        other_upnl = pool_upnl[p.margin_asset] - sum(upnl[id(q)] for q in legs)
    kwargs: dict[str, Decimal] = {}
    for leg in legs:
        kwargs[f"qty_{leg.side.lower()}"] = leg.qty
        kwargs[f"entry_{leg.side.lower()}"] = leg.entry_price
    point = liquidation_point(
        wallet_balance=wallet,
        brackets=desk.tables[p.symbol],
        **kwargs,
        other_maint_margin=max(other_mm, Decimal(0)),
        other_unrealized_pnl=other_upnl,
    )
    return None if point is None else point.price


# --------------------------------------------------------------------------- measurements


def time_full_updates(desk: Desk, book: RiskBook, count: int) -> tuple[list[float], list[float]]:
    """(wall, thread CPU) seconds per update; on a shared core the two differ by the time waited."""
    times, cpu = [], []
    for i in range(count):
        prices = desk.next_marks()
        start, cpu_start = time.perf_counter(), time.thread_time()
        book.apply_mark_array(desk.symbols, prices, ts=T0 + 1000 * (i + 1))
        times.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - cpu_start)
        progress("full-market updates", i + 1, count)
    return times, cpu


def time_single_updates(desk: Desk, book: RiskBook, count: int) -> list[float]:
    times, ts = [], T0 + 10_000_000
    for i in range(count):
        symbol = desk.rng.choice(desk.symbols)
        desk.marks[symbol] = (desk.marks[symbol] * Decimal(1 + desk.rng.uniform(-0.002, 0.002))).quantize(
            Decimal("0.0001")
        )
        price = str(desk.marks[symbol])
        start = time.perf_counter()
        book.apply_mark(symbol, price, ts=ts + i)
        times.append(time.perf_counter() - start)
        if (i + 1) % 50 == 0 or i + 1 == count:
            progress("single-symbol updates", i + 1, count)
    return times


def time_decimal(desk: Desk, book: RiskBook, sample_accounts: int) -> tuple[float, int, float]:
    """(seconds per position, positions sampled, max |LP diff| book vs Decimal on the sample)."""
    accounts = desk.rng.sample(sorted(desk.rows), min(sample_accounts, len(desk.rows)))
    elapsed, count, worst = 0.0, 0, 0.0
    for i, account in enumerate(accounts):
        start = time.perf_counter()
        lps = revalue_account_decimal(desk, account)
        elapsed += time.perf_counter() - start
        count += len(lps)
        for row in book.positions(account):
            expected = lps[(row.symbol, row.side)]
            if expected is not None and row.liquidation_price is not None:
                worst = max(worst, float(abs(row.liquidation_price - expected)))
            elif (expected is None) != (row.liquidation_price is None):
                worst = float("inf")
        progress("Decimal baseline (sample)", i + 1, len(accounts))
    return elapsed / max(count, 1), count, worst


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
        "numpy": np.__version__,
    }


def report(args: argparse.Namespace, results: dict) -> str:
    m = results["machine"]
    speedup = results["decimal_full"] / results["full_p50"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    lines = [
        HEADING,
        "",
        f"Command: `{results['command']}` (pinned to one core with `taskset -c 0`).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']}. Load average "
        f"at the end of the run: {results['load']} (other work on the machine inflates the wall-clock figures).",
        "",
        f"Desk (seed {args.seed}): {results['positions']:,} positions over {args.accounts:,} accounts and "
        f"{args.symbols} synthetic symbols (the 27 fixture symbols' bracket tables cycled), "
        f"{results['pairs']:,} cross hedge pairs, {results['isolated']:,} isolated positions.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| full-market update (`apply_mark_array`, {args.symbols} marks as strings), median | "
        f"{ms(results['full_p50'])} | ≤ 25 ms |",
        f"| full-market update, p99 over {args.full_updates} | {ms(results['full_p99'])} | ≤ 25 ms |",
        f"| full-market update, thread CPU time, median | {ms(results['full_cpu_p50'])} | |",
        f"| single-symbol update (`apply_mark`), p50 | {ms(results['single_p50'])} | |",
        f"| single-symbol update, p99 over {args.single_updates} | {ms(results['single_p99'])} | ≤ 2 ms |",
        f"| peak resident memory (ru_maxrss, whole process) | {results['rss']:.0f} MB | ≤ 300 MB |",
        f"| book build ({results['positions']:,} upserts in batches of 10k) | {results['build']:.1f} s | |",
        f"| Decimal functions, position by position (sampled {results['decimal_n']:,} positions, "
        f"extrapolated) | {results['decimal_full']:.1f} s per full revaluation | |",
        f"| book speed-up over the Decimal path (full update) | {speedup:,.0f}× | |",
        f"| max abs LP difference book vs Decimal on the sample | {results['worst']:.2e} | < 0.005 |",
        "",
        "The Decimal baseline computes each sampled account's figures with `figures.account_figures` "
        "and each position's liquidation price with `margin.liquidation_point` (pool TMM1/UPNL1 summed "
        "once per account); its time is the sample's per-position cost times the desk size. Timings "
        "include parsing the price strings. Peak memory is the whole bench process, including the "
        "`BookPosition` objects (with their Decimals) that the generated desk itself holds.",
        "",
        "A full-market update recomputes every figure from the frame; all it carries over is the tier each "
        "position and liquidation unit was found on last time, re-checked against the new values on every "
        "tick: one maintenance-margin tier line per position, pool sums over runs of neighbouring slots, "
        "one liquidation piece per one-leg unit, every hedge pair's pieces read in place "
        "(`positions/book.py`).",
    ]
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full-updates", type=int, default=50)
    parser.add_argument("--single-updates", type=int, default=2_000)
    parser.add_argument("--decimal-accounts", type=int, default=20, help="accounts sampled for the Decimal path")
    parser.add_argument("--write-doc", action="store_true", help=f"update '{HEADING}' in {DOC}")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    desk = Desk(seed=args.seed, positions=args.positions, accounts=args.accounts, symbols=args.symbols)
    print(f"desk generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    start = time.perf_counter()
    book = build_book(desk)
    build = time.perf_counter() - start
    full, full_cpu = time_full_updates(desk, book, args.full_updates)
    single = time_single_updates(desk, book, args.single_updates)
    per_position, decimal_n, worst = time_decimal(desk, book, args.decimal_accounts)
    positions = sum(len(rows) for rows in desk.rows.values())
    results = {
        "command": "taskset -c 0 python -m bench.revalue " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "positions": positions,
        "build": build,
        "pairs": sum(
            sum(
                1
                for p in rows
                if p.side == "LONG"
                and p.margin_type == "cross"
                and any(q.symbol == p.symbol and q.side == "SHORT" for q in rows)
            )
            for rows in desk.rows.values()
        ),
        "isolated": sum(p.margin_type == "isolated" for rows in desk.rows.values() for p in rows),
        "full_p50": percentile(full, 50),
        "full_p99": percentile(full, 99),
        "full_cpu_p50": percentile(full_cpu, 50),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "single_p50": percentile(single, 50),
        "single_p99": percentile(single, 99),
        "rss": rss_mb(),
        "decimal_n": decimal_n,
        "decimal_full": per_position * positions,
        "worst": worst,
    }
    section = report(args, results)
    print(section)
    if args.write_doc:
        write_doc(section)
        print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
