"""Risk book load benchmark (issue 19 item 3). Prints figures; never asserts a time.

    python -m bench.book_load                                 # 2,000/100k, 5,000/250k, 20,000/1M (one process each)
    python -m bench.book_load --accounts 2000 --positions 100000
    python -m bench.book_load --accounts 2000 --positions 100000 --trace   # tracemalloc: what holds the memory

Loads a synthetic desk (bench.revalue's generator: 300 symbols with the fixture's bracket
tables, 40 % hedge accounts, a quarter of the positions isolated, 10 % of accounts with a USDC
pool) the way the stream engine does at start-up (marketdata/streams.py ``start``): every
symbol's default brackets first, then one ``sync_account`` per account, which does to the book
exactly this, in this order:

1. ``account_id in set(book.account_ids())`` (is the account known?; ``--known-check has``
   asks ``book.has_account`` instead, the change requested for the engine);
2. ``Wallets.apply``: one ``set_wallet`` per wallet asset, USDT first, ``counted`` = a
   stablecoin margin asset;
3. one ``upsert_positions`` call with the account's rows.

Then the first full-market frame (``apply_mark_array``, every symbol as a decimal string), as the
market socket delivers it once the syncs are done. An account's rows are generated just before
its sync and dropped by the generator after it, so the book holds the only references to them,
as in the engine.

Reported: wall and CPU time of the load, the time per account by tenth of the load (a load in
O(N) keeps it flat; O(N²) makes it grow with the book), the first frame, and the peak resident
set size (``getrusage``: the process's high-water mark, so each configuration runs in its own
process) with the interpreter's and NumPy's baseline before the load. ``--budget-s`` stops a
slow load part-way and says so (the before figures at 20,000 accounts would take an hour).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from bench.revalue import T0, Desk  # noqa: E402 - after the thread caps
from positions.book import RiskBook  # noqa: E402
from positions.collateral import PAR_ASSETS  # noqa: E402

CONFIGS = ((2_000, 100_000), (5_000, 250_000), (20_000, 1_000_000))
SYMBOLS = 300


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sync(book: RiskBook, account: int, wallets: dict, rows: list, known_check: str) -> set:
    """What ``StreamEngine.sync_account`` does to the book for an account it does not hold yet."""
    known = account in set(book.account_ids()) if known_check == "set" else book.has_account(account)
    assert not known
    changed: set = set()
    held = {"USDT": wallets.get("USDT"), **wallets}  # Wallets.apply: {"USDT": usdt, **cross_wallets}
    for asset, balance in held.items():
        changed |= book.set_wallet(account, balance, asset=asset, counted=asset in PAR_ASSETS)
    if rows:
        changed |= book.upsert_positions([(account, p) for p in rows])
    return changed


def run_one(args: argparse.Namespace) -> None:
    if args.trace:
        import tracemalloc

        tracemalloc.start(12)
    per_account = args.positions // args.accounts
    # The generator's tables and marks only; each account's rows are made just before its sync.
    desk = Desk(seed=1, positions=0, accounts=1, symbols=SYMBOLS)
    baseline = current_rss_mb()
    book = RiskBook(capacity=1024)  # as StreamEngine builds it
    started, cpu0 = time.perf_counter(), time.process_time()
    for symbol in desk.symbols:
        book.set_brackets(symbol, desk.tables[symbol])
    brackets_s = time.perf_counter() - started
    tenths: list[float] = []
    in_book = in_book_cpu = window = 0.0
    tenth = max(args.accounts // 10, 1)
    loaded = positions = 0
    for account in range(args.accounts):
        desk.rows[account] = []
        desk.fill_account(account, per_account + (account < args.positions % args.accounts))
        rows, wallets = desk.rows.pop(account), desk.wallets.pop(account)
        t, c = time.perf_counter(), time.process_time()
        sync(book, account, wallets, rows, args.known_check)
        spent = time.perf_counter() - t
        in_book, in_book_cpu, window = in_book + spent, in_book_cpu + time.process_time() - c, window + spent
        loaded, positions = loaded + 1, positions + len(rows)
        if loaded % tenth == 0:
            tenths.append(window / tenth * 1000)
            window = 0.0
        if time.perf_counter() - started > args.budget_s:
            break
    load_s, load_cpu = time.perf_counter() - started, time.process_time() - cpu0
    t = time.perf_counter()
    book.apply_mark_array(desk.symbols, [str(desk.marks[s]) for s in desk.symbols], ts=T0)
    frame_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    book.apply_mark_array(desk.symbols, desk.next_marks(), ts=T0 + 1000)
    frame2_ms = (time.perf_counter() - t) * 1000
    peak = rss_mb()
    print(
        f"desk: {args.accounts:,} accounts, {args.positions:,} positions, {SYMBOLS} symbols; "
        f"known check: {args.known_check}"
    )
    if loaded < args.accounts:
        print(f"STOPPED at the {args.budget_s:.0f} s budget: {loaded:,} accounts, {positions:,} positions loaded")
    print(
        f"load in the book (brackets {brackets_s * 1000:.0f} ms + {loaded:,} syncs): "
        f"wall {brackets_s + in_book:.2f} s, "
        f"CPU {in_book_cpu:.2f} s (the syncs); with generating the rows: wall {load_s:.2f} s, CPU {load_cpu:.2f} s"
    )
    print("book ms per account sync, by tenth of the load: " + " ".join(f"{x:.2f}" for x in tenths))
    print(f"first full-market frame {frame_ms:.1f} ms, the next {frame2_ms:.1f} ms")
    per100k = (peak - baseline) / max(positions, 1) * 100_000
    print(
        f"peak RSS {peak:.0f} MB (baseline before the load {baseline:.0f} MB): "
        f"{per100k:.0f} MB above the baseline per 100,000 positions, {peak / max(positions, 1) * 100_000:.0f} MB in all"
    )
    if args.trace:
        import tracemalloc

        snap = tracemalloc.take_snapshot()
        print("tracemalloc, top allocations still held (by line):")
        for stat in snap.statistics("lineno")[:15]:
            print(f"  {stat.size / 2**20:8.1f} MB  {stat.count:>9,} blocks  {stat.traceback[0]}")
        cur, top = tracemalloc.get_traced_memory()
        print(f"  traced now {cur / 2**20:.0f} MB, traced peak {top / 2**20:.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int)
    parser.add_argument("--positions", type=int)
    parser.add_argument("--known-check", choices=("set", "has"), default="set")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.accounts and args.positions:
        run_one(args)
        return
    for accounts, positions in CONFIGS:
        cmd = [sys.executable, "-m", "bench.book_load", "--accounts", str(accounts), "--positions", str(positions)]
        cmd += ["--known-check", args.known_check, "--budget-s", str(args.budget_s)]
        print("$ " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
        print(flush=True)


if __name__ == "__main__":
    main()
