"""Rows of a report's period that the archive already holds (positions/archive/, docs/ARCHIVE.md),
read from the verified Parquet files with DuckDB, so a report of an archived day gives the same
figures as before the archive ran. An archived row is never also hot (the archive deletes what it
recorded; a restored batch is read from the database), so hot + archived counts nothing twice."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def _batches(table: str, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.date, int]]:
    from positions.models import ArchiveBatch

    first = start.astimezone(dt.UTC).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    found = ArchiveBatch.objects.filter(table=table, day__gte=first, day__lte=last, restored_at__isnull=True)
    return list(found.values_list("day", "part"))


def _query(table: str, start: dt.datetime, end: dt.datetime, account_id: int, select: str, tail: str = "") -> list:
    """`SELECT <select> FROM <the period's files> WHERE <in the period, the account> <tail>`."""
    batches = _batches(table, start, end)
    if not batches:
        return []
    import duckdb
    import pyarrow as pa

    from positions.archive import parquet
    from positions.archive.store import get_store, key_for
    from positions.archive.tables import TABLES

    store = get_store()
    keys = [key_for(table, day, part) for day, part in batches]
    paths = [store.local_path(k) for k in keys]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if all(paths):
        source = f"read_parquet({paths!r})"
    else:
        fetched = pa.concat_tables([parquet.from_parquet(store.read(k)) for k in keys])  # noqa: F841 - read by name
        source = "fetched"
    field = TABLES[table].time_field
    sql = f'SELECT {select} FROM {source} WHERE "{field}" >= ? AND "{field}" < ? AND account_id = ? {tail}'
    return con.sql(sql, params=[start, end, account_id]).fetchall()


def rows(table: str, start: dt.datetime, end: dt.datetime, account_id: int, columns: list[str]) -> list[dict[str, Any]]:
    """One account's archived rows in [start, end), the given columns, oldest first."""
    from positions.archive import parquet
    from positions.archive.tables import TABLES

    field = TABLES[table].time_field
    found = _query(table, start, end, account_id, ", ".join(f'"{c}"' for c in columns), f'ORDER BY "{field}", id')
    out = []
    for values in found:
        row = dict(zip(columns, values, strict=True))
        for name in parquet.JSON_COLUMNS.intersection(row):
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
        out.append(row)
    return out


def decision_counts(start: dt.datetime, end: dt.datetime, account_id: int) -> dict[str, int]:
    """Archived gate rows per decision, counted by DuckDB (a day can hold millions)."""
    found = _query("orderlog", start, end, account_id, "decision, count(*)", "GROUP BY decision")
    return {decision: int(n) for decision, n in found}


def denied_codes(start: dt.datetime, end: dt.datetime, account_id: int) -> list[list[str]]:
    found = _query("orderlog", start, end, account_id, "reason_codes", "AND decision = 'denied'")
    return [json.loads(codes) if isinstance(codes, str) else list(codes or []) for (codes,) in found]
