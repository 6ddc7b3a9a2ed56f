"""python manage.py archive [--table T] [--before DATE] [--dry-run] [--compact] (docs/ARCHIVE.md)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from positions.archive import services
from positions.archive.locks import TableBusy
from positions.archive.tables import ORDER
from riskdesk.progress import is_terminal, steps


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
        parser.add_argument(
            "--compact",
            action="store_true",
            help="then rewrite finished days' small parts as a few large files, verified (as the nightly job does)",
        )

    def handle(self, *args, table=None, before=None, dry_run=False, batch_size=10_000, compact=False, **opts):
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
                    name,
                    before=cutoff,
                    dry_run=dry_run,
                    batch_size=batch_size,
                    compact=compact and not dry_run,
                    # The bar's total is a count of every due row: only when a bar is drawn.
                    on_start=on_start if is_terminal(self.stderr) else None,
                    on_batch=on_batch,
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
            if result.compacted is not None:
                c = result.compacted
                self.stdout.write(
                    f"{name}: compacted {c.days} days, {c.parts} parts into {c.files} files "
                    f"({c.rows} rows, {c.bytes / 1e6:.1f} MB) in {c.seconds:.1f} s"
                )
        if not dry_run:
            self.stdout.write(f"archived {total_rows} rows")
