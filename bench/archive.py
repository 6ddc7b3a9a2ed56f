"""Archive benchmark (issue 16): OrderLog rows from MariaDB to verified Parquet, end to end.
Prints figures; never asserts a time.

    DATABASE_URL=mysql://root@127.0.0.1:3306/rd_bench_archive python -m bench.archive --rows 10000000
    ... python -m bench.archive --rows 1000000 --write-doc     # also update docs/PERFORMANCE.md

1. Seeds `--rows` OrderLog rows in one UTC day at 1,000 checks/s (what the gate writes at that
   rate), with MariaDB's sequence engine (INSERT ... SELECT FROM seq_1_to_N, in chunks).
2. Runs `manage.py archive --table orderlog` in a child process (the production command: read,
   Parquet, fsync, read back, sha256, ArchiveBatch, delete) and takes its wall time and peak
   resident memory from wait4().
3. Times a one-day order-log search from the archive (/api/v1/orders/log's reader: one account,
   denials, newest 100), cold (first query of a process) and warm, on the day's parts.
4. Runs `manage.py archive --table orderlog --compact` (nothing left to archive: it compacts the
   finished day's parts into files of ARCHIVE_COMPACT_ROWS rows, verified) and times the same
   search again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import BENCH_SECRETS, command_line, machine, progress, write_doc  # noqa: E402

DAY = dt.date(2026, 11, 1)
HEADING = "## Archive (issue 16)"


def setup_django() -> None:
    for k, v in BENCH_SECRETS.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    import django

    django.setup()


def seed(rows: int, accounts: list[int]) -> float:
    from django.db import connection

    t0 = time.monotonic()
    chunk = 500_000
    start = dt.datetime.combine(DAY, dt.time())
    n_acc = len(accounts)
    with connection.cursor() as cur:
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            # One row a millisecond from 00:00 (1,000 checks/s); every 5th a denial with reason codes.
            sql = (
                (
                    f"""INSERT INTO positions_orderlog (created_at, account_id, source, user_id, token_id, symbol, side,
                    position_side, order_type, quantity, price, reduce_only, client_order_id, decision,
                    reason_codes, details, exchange_order_id, exchange_status)
                SELECT %s + INTERVAL (seq + {done}) * 1000 MICROSECOND,
                    ELT(1 + seq % {n_acc}, {",".join(str(a) for a in accounts)}), 'api', NULL, '',
                    ELT(1 + seq % 4, 'BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'BNBUSDT'), IF(seq % 2, 'BUY', 'SELL'),
                    'BOTH', 'LIMIT', 0.001 * (1 + seq % 1000), 65000.123456789012 + (seq % 5000),
                    0, CONCAT('c', seq + {done}), IF(seq % 5 = 0, 'denied', 'allowed'),
                    IF(seq % 5 = 0, '["MAX_LEVERAGE"]', '[]'),
                    CONCAT('{{"leverage":"', 1 + seq % 20, '","notional":"', seq % 100000, '.5"}}'), '', ''
                FROM seq_0_to_{n - 1}"""
                )
                .replace("%", "%%")
                .replace("%%s", "%s", 1)
            )
            cur.execute(sql, [start])
            done += n
            progress("seed order log", done, rows)
    return time.monotonic() - t0


def run_archive(batch_size: int, archive_dir: Path, *extra: str) -> tuple[float, int, str]:
    env = dict(os.environ, ARCHIVE_URL=str(archive_dir))
    cmd = [
        sys.executable, "manage.py", "archive", "--table", "orderlog",
        "--before", (DAY + dt.timedelta(days=1)).isoformat(), "--batch-size", str(batch_size), *extra,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    out = proc.stdout.read().decode()
    if status != 0:
        raise SystemExit(f"archive failed:\n{out}")
    return seconds, usage.ru_maxrss * 1024, out


def baseline_rss() -> int:
    """Peak memory of the same command with nothing to do: what Django's start-up alone costs."""
    cmd = [sys.executable, "manage.py", "archive", "--table", "orderlog", "--dry-run", "--before", "1971-01-01"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss * 1024


def search_times(account_id: int, archive_dir: Path) -> list[float]:
    code = f"""
import os, time, datetime as dt
os.environ["ARCHIVE_URL"] = {str(archive_dir)!r}
import django; django.setup()
from positions.archive.history import Query, history_page
q = Query("orderlog", dt.date({DAY.year}, {DAY.month}, {DAY.day}), dt.date({DAY.year}, {DAY.month}, {DAY.day}),
          frozenset([{account_id}]), equals=(("decision", "denied"),), limit=100)
for _ in range(3):
    t0 = time.perf_counter(); count, rows = history_page(q); print("T", time.perf_counter() - t0, count, len(rows))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [float(line.split()[1]) for line in out.splitlines() if line.startswith("T ")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("mysql://"):
        raise SystemExit("set DATABASE_URL=mysql://... (the bench measures MariaDB)")
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import ExchangeAccount
    from positions.models import ArchiveBatch, OrderLog

    call_command("migrate", verbosity=0)
    OrderLog.objects.all().delete() if OrderLog.objects.count() < 100_000 else connection.cursor().execute(
        "TRUNCATE TABLE positions_orderlog"
    )
    ArchiveBatch.objects.filter(table="orderlog").delete()
    accounts = []
    for i in range(args.accounts):
        acc, _ = ExchangeAccount.objects.get_or_create(name=f"bench-archive-{i:02d}")
        accounts.append(acc.pk)
    seed_s = seed(args.rows, accounts)
    connection.close()

    archive_dir = Path(tempfile.mkdtemp(prefix="riskdesk-bench-archive-"))
    try:
        load = [os.getloadavg()[0]]
        seconds, rss, out = run_archive(args.batch_size, archive_dir)
        load.append(os.getloadavg()[0])
        left = OrderLog.objects.count()
        batches = ArchiveBatch.objects.filter(table="orderlog")
        archived = sum(batches.values_list("rows", flat=True))
        size = sum(batches.values_list("size", flat=True))
        files = batches.count()
        search = search_times(accounts[0], archive_dir)
        c_seconds, c_rss, c_out = run_archive(args.batch_size, archive_dir, "--compact")
        c_files = batches.count()
        c_size = sum(batches.values_list("size", flat=True))
        c_search = search_times(accounts[0], archive_dir)
    finally:
        shutil.rmtree(archive_dir, ignore_errors=True)
    rate = archived / seconds
    baseline = baseline_rss()
    m = machine()
    lines = [
        HEADING,
        "",
        f"`{command_line('bench.archive', argv)}` on MariaDB (local socket over TCP), archive on local disk;"
        f" {m['cpu']}, {m['cores']} cores (shared with other work while measured), Python {m['python']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| OrderLog rows archived (one UTC day, 1,000 checks/s) | {archived:,} (left in the database: {left}) |",
        f"| batch size | {args.batch_size:,} rows, {files} Parquet files, {size / 1e6:.1f} MB (zstd) |",
        f"| `manage.py archive` end to end (process start to exit) | {seconds:.1f} s |",
        f"| load average (1 min) before / after the archive run | {load[0]:.1f} / {load[1]:.1f} |",
        f"| throughput end to end | **{rate:,.0f} rows/s** (target 50,000) |",
        f"| peak resident memory of the archive process | **{rss / 1e6:.0f} MB** (target 300) |",
        f"| one-day order-log search from the archive (1 account, denials, newest 100), {files} parts: cold / warm"
        f" | {search[0] * 1000:.0f} ms / {min(search[1:]) * 1000:.0f} ms (target 1 s) |",
        f"| `manage.py archive --compact` (the day's parts into {c_files} files, {c_size / 1e6:.1f} MB, verified)"
        f" | {c_seconds:.1f} s, peak {c_rss / 1e6:.0f} MB |",
        f"| the same search after compaction: cold / warm | "
        f"**{c_search[0] * 1000:.0f} ms** / {min(c_search[1:]) * 1000:.0f} ms (target 1 s) |",
        f"| seeding (not part of the figure) | {seed_s:.1f} s |",
        "",
        "Per batch: read (MariaDB's text: no Decimal, datetime or JSON objects; keyset by time and key),"
        " Arrow table, sha256 over keys and values, Parquet write, fsync, read back, Parquet decode,"
        " sha256 again (these on a second thread and connection, ahead of the commits), then"
        " ArchiveBatch insert and DELETE by key range, one transaction. The peak memory includes"
        f" Django's start-up: `manage.py archive --dry-run` with nothing due peaks at {baseline / 1e6:.0f} MB.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    print(out)
    print(c_out)
    if args.write_doc:
        write_doc(HEADING, section)


if __name__ == "__main__":
    main()
