"""Report benchmark (issue 16): generate one day's risk report over N OrderLog rows on MariaDB.
Prints figures; never asserts a time.

    DATABASE_URL=mysql://root@127.0.0.1:3306/rd_bench_reports python -m bench.reports --rows 1000000
    ... python -m bench.reports --rows 1000000 --write-doc     # also update docs/PERFORMANCE.md

Seeds the rows with bench/archive.py's seeder (one UTC day at 1,000 checks/s, every 5th a denial,
spread over --accounts accounts), then times `report_generate` for that day: the figures (gate
decisions counted in the database, denials read row by row), the three charts, HTML, CSV and PDF.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import BENCH_SECRETS, command_line, machine, progress, write_doc  # noqa: E402

HEADING = "## Reports (issue 16)"
DAY = dt.date(2026, 11, 1)


def setup_django() -> None:
    for k, v in BENCH_SECRETS.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    import django

    django.setup()


def seed(rows: int, accounts: list[int]) -> float:
    """One row a millisecond from 00:00 UTC (1,000 checks/s), every 5th a denial with a reason code,
    with MariaDB's sequence engine in chunks."""
    from django.db import connection

    t0 = time.monotonic()
    ids = ",".join(str(a) for a in accounts)
    with connection.cursor() as cur:
        done = 0
        while done < rows:
            n = min(500_000, rows - done)
            cur.execute(
                f"""INSERT INTO positions_orderlog (created_at, account_id, source, token_id, symbol, side,
                    position_side, order_type, quantity, price, reduce_only, client_order_id, decision,
                    reason_codes, details, exchange_order_id, exchange_status)
                SELECT TIMESTAMP('{DAY.isoformat()}') + INTERVAL (seq + {done}) * 1000 MICROSECOND,
                    ELT(1 + seq MOD {len(accounts)}, {ids}), 'api', '', 'BTCUSDT', 'BUY', 'BOTH', 'LIMIT',
                    0.001, 65000, 0, CONCAT('c', seq + {done}), IF(seq MOD 5 = 0, 'denied', 'allowed'),
                    IF(seq MOD 5 = 0, '["MAX_LEVERAGE"]', '[]'), '{{}}', '', ''
                FROM seq_0_to_{n - 1}"""
            )
            done += n
            progress("seed order log", done, rows)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("mysql://"):
        raise SystemExit("set DATABASE_URL=mysql://... (the bench measures MariaDB)")
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import ExchangeAccount
    from alerts.models import ReportPeriod
    from alerts.reports import services

    call_command("migrate", verbosity=0)
    connection.cursor().execute("TRUNCATE TABLE positions_orderlog")
    accounts = [ExchangeAccount.objects.get_or_create(name=f"bench-report-{i:02d}")[0] for i in range(args.accounts)]
    seed_s = seed(args.rows, [a.pk for a in accounts])
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    t0 = time.monotonic()
    report = services.report_generate(
        period=ReportPeriod.DAY, start=start, end=start + dt.timedelta(days=1), accounts=accounts
    )
    seconds = time.monotonic() - t0
    desk = report.figures["desk"]
    m = machine()
    section = "\n".join(
        [
            HEADING,
            "",
            f"`{command_line('bench.reports', argv)}` on MariaDB; {m['cpu']}, {m['cores']} cores"
            f" (shared with other work while measured), Python {m['python']}.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| OrderLog rows in the day | {desk['gate_checks']:,} checks, {desk['gate_denials']:,} denials,"
            f" {args.accounts} accounts |",
            f"| one day's report generated (figures, 3 charts, HTML, CSV, PDF) | **{seconds:.1f} s** (target 30 s) |",
            f"| PDF size | {len(bytes(report.pdf)) / 1e3:.0f} kB |",
            f"| seeding (not part of the figure) | {seed_s:.1f} s |",
            "",
        ]
    )
    print(section)
    if args.write_doc:
        write_doc(HEADING, section)


if __name__ == "__main__":
    main()
