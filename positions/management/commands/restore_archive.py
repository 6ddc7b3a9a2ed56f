"""python manage.py restore_archive --table T --from D --to D (docs/ARCHIVE.md)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from positions.archive import services
from positions.archive.tables import ORDER


class Command(BaseCommand):
    help = "Re-import archived rows of a range of UTC days into the database (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--table", choices=ORDER, required=True)
        parser.add_argument("--from", dest="day_from", required=True, help="first UTC day, YYYY-MM-DD")
        parser.add_argument("--to", dest="day_to", required=True, help="last UTC day, YYYY-MM-DD (inclusive)")

    def handle(self, *args, table, day_from, day_to, **opts):
        try:
            start, end = dt.date.fromisoformat(day_from), dt.date.fromisoformat(day_to)
        except ValueError as exc:
            raise CommandError("--from and --to are dates, YYYY-MM-DD") from exc
        if end < start:
            raise CommandError("--to is before --from")
        result = services.restore_range(table, start, end)
        self.stdout.write(
            f"{table}: {result.batches} files, {result.rows} rows read, {result.inserted} inserted "
            f"(the rest were already in the database)"
        )
