"""One archive run per table at a time.

MariaDB/MySQL: GET_LOCK on the run's connection, which the server releases when the connection
ends, so a run killed with SIGKILL never leaves a table locked. Elsewhere (embedded SQLite, one
machine): an exclusive flock on a file under VAR_DIR, which the kernel releases with the process."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from django.conf import settings
from django.db import connection


class TableBusy(Exception):
    pass


# GET_LOCK is re-entrant on one connection: a second run in this process must be refused too.
_held: set[str] = set()


@contextlib.contextmanager
def table_lock(table: str):
    if table in _held:
        raise TableBusy(table)
    _held.add(table)
    try:
        with _lock(table):
            yield
    finally:
        _held.discard(table)


@contextlib.contextmanager
def _lock(table: str):
    # GET_LOCK names are server-wide: the database's name keeps two desks on one server apart.
    name = f"riskdesk.archive.{connection.settings_dict['NAME']}.{table}"[-64:]
    if connection.vendor == "mysql":
        with connection.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", [name])
            (got,) = cur.fetchone()
        if got != 1:
            raise TableBusy(table)
        try:
            yield
        finally:
            with connection.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", [name])
        return
    path = Path(settings.VAR_DIR) / "locks" / f"archive-{table}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TableBusy(table) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
