"""The archive run and the restore (docs/ARCHIVE.md).

Each batch: read up to `batch_size` due rows of one UTC day (ordered by time, then key), write them
as one Parquet file, fsync, read the file back from the store, check the row count and the sha256
over keys and values, then in ONE transaction record the ArchiveBatch and delete exactly those
keys (the transaction rolls back unless the delete removed exactly that many rows).

A run killed anywhere is finished by the next run: before the commit the rows are still in the
database and the file, not yet recorded, is overwritten by the next run's batch of the same part
number; after the commit the rows are in a recorded, verified file and gone from the database."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from positions.archive import parquet
from positions.archive.locks import table_lock
from positions.archive.store import get_store, key_for
from positions.archive.tables import ORDER, TABLES, TableSpec, cutoff_for
from positions.models import ArchiveBatch

log = logging.getLogger(__name__)

DELETE_CHUNK = 5000


class ArchiveVerifyError(Exception):
    """The file read back is not what was written: nothing was deleted."""


@dataclasses.dataclass
class TableResult:
    table: str
    cutoff: dt.datetime
    due: int = 0
    rows: int = 0
    batches: int = 0
    bytes: int = 0
    seconds: float = 0.0
    days: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _utc_day(value: dt.datetime) -> dt.date:
    return value.astimezone(dt.UTC).date()


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def tables_in_order(only: str | None = None) -> list[str]:
    if only is None:
        return list(ORDER)
    if only not in TABLES:
        raise KeyError(only)
    # An alert waits for its deliveries and risk actions: archive those first.
    return [t for t in ORDER if t in TABLES[only].after] + [only]


def due_by_day(spec: TableSpec, cutoff: dt.datetime) -> dict[str, int]:
    from django.db.models.functions import TruncDate

    qs = spec.due_rows(cutoff).annotate(d=TruncDate(spec.time_field, tzinfo=dt.UTC)).values("d")
    out: dict[str, int] = {}
    for row in qs.order_by("d").values_list("d", flat=True).iterator():
        key = row.isoformat()
        out[key] = out.get(key, 0) + 1
    return out


def _delete_exactly(spec: TableSpec, pks: list[int]) -> int:
    model = spec.model
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    deleted = 0
    lo, hi = min(pks), max(pks)
    with connection.cursor() as cur:
        if hi - lo + 1 == len(pks) == len(set(pks)):
            # The keys are every integer from lo to hi: the range names exactly them.
            cur.execute(f"DELETE FROM {table} WHERE {pk} BETWEEN %s AND %s", [lo, hi])  # noqa: S608
            return cur.rowcount
        for i in range(0, len(pks), DELETE_CHUNK):
            chunk = pks[i : i + DELETE_CHUNK]
            marks = ",".join(["%s"] * len(chunk))
            cur.execute(f"DELETE FROM {table} WHERE {pk} IN ({marks})", chunk)  # noqa: S608 - names quoted
            deleted += cur.rowcount
    return deleted


def _read_text(spec: TableSpec, qs) -> list[tuple]:
    """The batch's rows with decimals and times as MariaDB's own text (no Decimal or datetime
    objects, no JSON parsed and dumped again): the ORM's converters were most of a batch's time.
    Datetime columns hold UTC (USE_TZ), so their text is UTC."""
    model = spec.model
    columns = {f.attname: connection.ops.quote_name(f.column) for f in model._meta.concrete_fields}
    exprs = []
    for name, typ in spec.columns:
        column = columns[name]
        if pa.types.is_decimal(typ) or pa.types.is_timestamp(typ):
            exprs.append(f"CAST({column} AS CHAR)")
        else:
            exprs.append(column)
    inner, params = qs.values("pk").query.sql_with_params()
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    order = ", ".join(
        f"{table}.{connection.ops.quote_name(model._meta.get_field(f.lstrip('-')).column)}"
        for f in (spec.time_field, "id")
    )
    sql = f"SELECT {', '.join(exprs)} FROM {table} WHERE {pk} IN (SELECT * FROM ({inner}) AS due) ORDER BY {order}"  # noqa: S608
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def archive_batch(spec: TableSpec, cutoff: dt.datetime, *, store, batch_size: int) -> tuple[int, int]:
    """Archive one batch; (rows, bytes), (0, 0) when nothing is due."""
    qs = spec.due_rows(cutoff)
    tf = spec.time_field
    first = qs.order_by(tf, "pk").values_list(tf, flat=True).first()
    if first is None:
        return 0, 0
    day = _utc_day(first)
    start, end = _day_bounds(day)
    batch = qs.filter(**{f"{tf}__gte": start, f"{tf}__lt": min(end, cutoff)}).order_by(tf, "pk")
    if connection.vendor == "mysql":
        rows = _read_text(spec, batch[:batch_size])
        table = parquet.text_to_arrow(rows, spec.schema)
    else:
        rows = list(batch.values_list(*spec.column_names)[:batch_size])
        table = parquet.to_arrow(rows, spec.schema)
    digest = parquet.checksum(table)
    part = (ArchiveBatch.objects.filter(table=spec.name, day=day).aggregate(m=Max("part"))["m"] or 0) + 1
    key = key_for(spec.name, day, part)
    data = parquet.to_parquet(table)
    uri = store.write(key, data)

    back = parquet.from_parquet(store.read(key))
    if back.num_rows != len(rows) or not back.schema.equals(spec.schema) or parquet.checksum(back) != digest:
        raise ArchiveVerifyError(f"{uri}: read back {back.num_rows} rows, checksum mismatch; nothing deleted")

    pks = table.column("id").to_pylist()
    times = table.column(tf)
    time_from, time_to = pc.min(times).as_py(), pc.max(times).as_py()
    with transaction.atomic():
        ArchiveBatch.objects.create(
            table=spec.name,
            day=day,
            part=part,
            first_pk=min(pks),
            last_pk=max(pks),
            time_from=time_from,
            time_to=time_to,
            rows=len(rows),
            sha256=digest,
            uri=uri,
            size=len(data),
        )
        deleted = _delete_exactly(spec, pks)
        if deleted != len(rows):
            raise ArchiveVerifyError(f"{spec.name}: {deleted} rows deleted for a batch of {len(rows)}; rolled back")
    return len(rows), len(data)


def sweep_orphans(spec: TableSpec, store, cutoff: dt.datetime) -> int:
    """Remove files that no ArchiveBatch records: a run killed after writing a file and before
    its commit leaves one, and its rows are still in the database, so they are still the first due
    rows: only that day's partition is looked at. Runs under the table's lock, so no batch of
    another run is between its write and its commit."""
    first = spec.due_rows(cutoff).order_by(spec.time_field, "pk").values_list(spec.time_field, flat=True).first()
    if first is None:
        return 0
    day = _utc_day(first)
    recorded = {
        key_for(spec.name, day, part)
        for part in ArchiveBatch.objects.filter(table=spec.name, day=day).values_list("part", flat=True)
    }
    orphans = [key for key in store.keys(f"{spec.name}/date={day.isoformat()}/") if key not in recorded]
    for key in orphans:
        store.remove(key)
        log.warning("archive: removed %s, written by a run that did not finish", key)
    return len(orphans)


def archive_table(
    table: str,
    *,
    before: dt.datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 10_000,
    store=None,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TableResult:
    spec = TABLES[table]
    cutoff = before or cutoff_for(table)
    result = TableResult(table=table, cutoff=cutoff)
    if dry_run:
        result.days = due_by_day(spec, cutoff)
        result.due = sum(result.days.values())
        return result
    store = store or get_store()
    started = time.monotonic()
    with table_lock(table):
        sweep_orphans(spec, store, cutoff)
        result.due = spec.due_rows(cutoff).count()
        if on_start:
            on_start(result.due)
        while True:
            rows, size = archive_batch(spec, cutoff, store=store, batch_size=batch_size)
            if not rows:
                break
            result.rows += rows
            result.bytes += size
            result.batches += 1
            if on_batch:
                on_batch(rows)
    result.seconds = time.monotonic() - started
    log.info("archived %s: %s rows in %s batches (%.0f rows/s)", table, result.rows, result.batches, result.rows_per_s)
    return result


def archive_all(*, only: str | None = None, **kwargs) -> list[TableResult]:
    return [archive_table(t, **kwargs) for t in tables_in_order(only)]


# --------------------------------------------------------------------------- restore


@dataclasses.dataclass
class RestoreResult:
    table: str
    batches: int = 0
    rows: int = 0
    inserted: int = 0


@contextlib.contextmanager
def _times_as_given(model):
    """bulk_create would stamp auto_now/auto_now_add fields with now: a restored row keeps its times."""
    fields = [
        f for f in model._meta.concrete_fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]
    for f in fields:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, now, add in saved:
            f.auto_now, f.auto_now_add = now, add


def _count_present(model, pks: list[int]) -> int:
    return sum(
        model._base_manager.filter(pk__in=pks[i : i + DELETE_CHUNK]).count() for i in range(0, len(pks), DELETE_CHUNK)
    )


def restore_range(table: str, day_from: dt.date, day_to: dt.date, *, store=None) -> RestoreResult:
    """Re-import the archived rows of [day_from, day_to] (UTC days, inclusive). Idempotent: rows
    come back under their own keys and a key already present is left alone; a batch is marked
    restored, so history reads those rows from the database and a second restore finds nothing
    left to do. Each file is verified against its recorded sha256 before a row is inserted."""
    spec = TABLES[table]
    store = store or get_store()
    result = RestoreResult(table=table)
    model = spec.model
    batches = ArchiveBatch.objects.filter(
        table=table, day__gte=day_from, day__lte=day_to, restored_at__isnull=True
    ).order_by("day", "part")
    with table_lock(table):
        for batch in batches:
            back = parquet.from_parquet(store.read(key_for(table, batch.day, batch.part)))
            if back.num_rows != batch.rows or parquet.checksum(back) != batch.sha256:
                raise ArchiveVerifyError(f"{batch.uri}: does not match its recorded checksum")
            objs = [model(**row) for row in parquet.to_rows(back)]
            pks = [o.pk for o in objs]
            with transaction.atomic():
                before = _count_present(model, pks)
                with _times_as_given(model):
                    model._base_manager.bulk_create(objs, batch_size=2000, ignore_conflicts=True)
                after = _count_present(model, pks)
                ArchiveBatch.objects.filter(pk=batch.pk).update(restored_at=timezone.now())
            result.batches += 1
            result.rows += batch.rows
            result.inserted += after - before
    return result
