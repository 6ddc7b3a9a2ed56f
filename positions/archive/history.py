"""History read as one: hot rows from the database and archived rows from the Parquet files
(DuckDB), filtered, merged newest first, paged (the /api/v1/orders/log and /api/v1/alerts APIs).

An archived row is never also hot: the archive deletes what it recorded, and a batch restored to
the database is marked restored and read there instead. The files of the days asked for are found
through ArchiveBatch (no listing of the store); a local directory is read by DuckDB in place, a
bucket's files are fetched and handed to DuckDB as Arrow tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from positions.archive import parquet
from positions.archive.store import get_store, key_for
from positions.archive.tables import TABLES
from positions.models import ArchiveBatch


@dataclasses.dataclass(frozen=True)
class Query:
    table: str  # "orderlog" or "alert"
    day_from: dt.date
    day_to: dt.date  # inclusive
    account_ids: frozenset[int] | None  # None: every account, and rows with no account
    equals: tuple[tuple[str, Any], ...] = ()  # (column, value): decision, level, symbol, ...
    limit: int = 100
    offset: int = 0


def _bounds(q: Query) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(q.day_from, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(q.day_to, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)
    return start, end


def _hot(q: Query):
    spec = TABLES[q.table]
    start, end = _bounds(q)
    qs = spec.model._default_manager.filter(**{f"{spec.time_field}__gte": start, f"{spec.time_field}__lt": end})
    if q.account_ids is not None:
        qs = qs.filter(account_id__in=q.account_ids)
    for column, value in q.equals:
        qs = qs.filter(**{column: value})
    return qs


def _archive_sql(q: Query, source: str) -> tuple[str, list]:
    spec = TABLES[q.table]
    start, end = _bounds(q)
    where = [f'"{spec.time_field}" >= ?', f'"{spec.time_field}" < ?']
    params: list = [start, end]
    if q.account_ids is not None:
        if not q.account_ids:
            where.append("FALSE")
        else:
            where.append(f"account_id IN ({','.join('?' * len(q.account_ids))})")
            params.extend(sorted(q.account_ids))
    for column, value in q.equals:
        where.append(f'"{column}" = ?')
        params.append(value)
    return f"FROM {source} WHERE {' AND '.join(where)}", params


def _archive(q: Query, need: int) -> tuple[int, list[dict]]:
    """(matching archived rows, the newest `need` of them). The count reads only the filter columns
    of every file of the range; the rows are read newest file first (files hold disjoint stretches
    of time within a day, by the ledger's time_from/time_to), a widening group of files at a time,
    stopping as soon as no older file can hold a row newer than the need-th found: a page of a
    10-million-row day reads one file, not all of them."""
    batches = list(
        ArchiveBatch.objects.filter(
            table=q.table, day__gte=q.day_from, day__lte=q.day_to, restored_at__isnull=True
        ).values_list("day", "part", "time_from", "time_to")
    )
    if not batches:
        return 0, []
    spec = TABLES[q.table]
    store = get_store()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # a slow scan would print a bar into the caller's stdout
    batches.sort(key=lambda b: (b[3], b[2]), reverse=True)  # newest first
    keys = [key_for(q.table, day, part) for day, part, _, _ in batches]
    paths = [store.local_path(k) for k in keys]
    local = all(paths)
    if not local:  # a bucket: fetched once into Arrow, DuckDB reads the tables by name
        tables = [parquet.from_parquet(store.read(k)) for k in keys]

    def source(i: int, j: int) -> str:
        if local:
            return f"read_parquet({paths[i:j]!r}, filename = true)"
        con.register("fetched", pa.concat_tables(tables[i:j]))
        return "fetched"

    tail, params = _archive_sql(q, source(0, len(keys)))
    count = con.sql(f"SELECT count(*) {tail}", params=params).fetchall()[0][0]
    if not count or not need:
        return count, []
    tf = spec.time_field
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    order = f'ORDER BY "{tf}" DESC, id DESC LIMIT {int(need)}'
    # Phase 1: the keys of the newest `need` rows (key, time and the file: three columns read, not all).
    pick = f'id, "{tf}", filename' if local else cols
    found: pa.Table | None = None
    i, width = 0, 1
    while i < len(keys):
        j = min(len(keys), i + width)
        tail, params = _archive_sql(q, source(i, j))
        got = con.sql(f"SELECT {pick} {tail} {order}", params=params).to_arrow_table()
        found = got if found is None else pa.concat_tables([found, got.cast(found.schema)])
        found = found.take(pc.sort_indices(found, [(tf, "descending"), ("id", "descending")])[:need])
        i, width = j, width * 2
        # Done when `need` rows are found and the oldest of them is newer than anything left.
        if i < len(keys) and found.num_rows >= need:
            oldest = found.column(tf)[need - 1].as_py()
            if oldest > max(b[3] for b in batches[i:]):
                break
    if local:
        # Phase 2: whole rows for those keys, from the files that hold them (row groups pruned by key).
        files = sorted(set(found.column("filename").to_pylist()))
        con.register("picked", found.select(["id"]))
        tail, params = _archive_sql(q, f"read_parquet({files!r})")
        got = con.sql(f"SELECT {cols} {tail} AND id IN (SELECT id FROM picked)", params=params).to_arrow_table()
        found = got.take(pc.sort_indices(got, [(tf, "descending"), ("id", "descending")]))
    rows = found.to_pylist()
    for row in rows:
        for name in parquet.JSON_COLUMNS.intersection(row):
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return count, rows


HOT, ARCHIVE = "hot", "archive"


def history_page(q: Query, *, source_key: str | None = None) -> tuple[int, list[dict]]:
    """(total matching rows, the page of rows as dicts, newest first). With `source_key`, each row
    also says where it was read: row[source_key] is HOT (the database) or ARCHIVE (a Parquet file)."""
    spec = TABLES[q.table]
    need = q.offset + q.limit
    hot = _hot(q)
    hot_count = hot.count()
    hot_rows = list(hot.order_by(f"-{spec.time_field}", "-pk").values(*spec.column_names)[:need])
    archived_count, archived_rows = _archive(q, need)
    if source_key:
        for row in hot_rows:
            row[source_key] = HOT
        for row in archived_rows:
            row[source_key] = ARCHIVE
    merged = sorted(hot_rows + archived_rows, key=lambda r: (r[spec.time_field], r["id"]), reverse=True)
    return hot_count + archived_count, merged[q.offset : need]
