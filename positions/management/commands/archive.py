"""python manage.py archive [--table T] [--before DATE] [--dry-run] (docs/ARCHIVE.md)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from positions.archive import services
from positions.archive.locks import TableBusy
from positions.archive.tables import ORDER
from riskdesk.progress import steps


def utc_date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {text}") from exc
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Move rows past their retention to the Parquet archive, verified, then delete them."

    def add_arguments(self, parser):
        parser.add_argument("--table", choices=ORDER, help="one table (its dependents first); default all")
        parser.add_argument("--before", help="archive rows before this UTC day instead of the retention's cutoff")
        parser.add_argument("--dry-run", action="store_true", help="count what is due by day; change nothing")
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args, table=None, before=None, dry_run=False, batch_size=10_000, **opts):
        cutoff = utc_date(before) if before else None
        total_rows = 0
        bars: dict = {}
        for name in services.tables_in_order(table):

            def on_start(due, name=name):
                bars[name] = steps(due, desc=name, stream=self.stderr)
                bars[name].unit = "rows"

            def on_batch(rows, name=name):
                if name in bars:
                    bars[name].update(rows)

            try:
                result = services.archive_table(
                    name, before=cutoff, dry_run=dry_run, batch_size=batch_size, on_start=on_start, on_batch=on_batch
                )
            except TableBusy:
                self.stderr.write(f"{name}: another archive run holds this table; skipped")
                continue
            finally:
                if name in bars:
                    bars.pop(name).close()
            if dry_run:
                days = ", ".join(f"{d}: {n}" for d, n in result.days.items()) or "nothing due"
                self.stdout.write(f"{name}: {result.due} rows due before {result.cutoff:%Y-%m-%d} ({days})")
                continue
            total_rows += result.rows
            self.stdout.write(
                f"{name}: {result.rows} rows in {result.batches} files, {result.bytes / 1e6:.1f} MB, "
                f"{result.seconds:.1f} s ({result.rows_per_s:,.0f} rows/s), cutoff {result.cutoff:%Y-%m-%d}"
            )
        if not dry_run:
            self.stdout.write(f"archived {total_rows} rows")
