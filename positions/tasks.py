"""The nightly archive job (riskdesk/celery.py beat schedule; docs/ARCHIVE.md).

Idempotent: a second copy finds the tables locked (skipped) or nothing left that is due."""

from __future__ import annotations

from celery import shared_task

from positions.archive import services
from positions.archive.locks import TableBusy
from positions.archive.tables import ORDER


@shared_task
def archive_history_task() -> dict[str, int]:
    done: dict[str, int] = {}
    for table in ORDER:
        try:
            # Then the finished days' small parts become a few large files (one-day searches).
            done[table] = services.archive_table(table, compact=True).rows
        except TableBusy:
            done[table] = -1
    return done
