"""The archive run, compaction and the restore (docs/ARCHIVE.md).

Each batch: read up to `batch_size` due rows of one UTC day (ordered by time, then key, each batch
after the last key of the one before), write them as one Parquet file, fsync, read the file back
from the store, check the row count and the sha256 over keys and values, then in ONE transaction
record the ArchiveBatch and delete exactly those keys (the transaction rolls back unless the delete
removed exactly that many rows). On MariaDB the next batch is read, on a second connection, while
this one is written, verified and deleted; writing, verifying and deleting stay one batch at a time.

A run killed anywhere is finished by the next run: before the commit the rows are still in the
database and the file, not yet recorded, is swept (or overwritten by the next run's batch of the
same part number); after the commit the rows are in a recorded, verified file and gone from the
database.

Compaction (`archive --compact`, and the nightly job after archiving) rewrites a finished day's
small parts as a few large files, verified against every part's recorded sha256 before the parts'
records and files go (see compact_day)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Count, Max, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from positions.archive import parquet
from positions.archive.locks import table_lock
from positions.archive.store import get_store, key_for
from positions.archive.tables import ORDER, TABLES, TableSpec, cutoff_for
from positions.models import ArchiveBatch

log = logging.getLogger(__name__)

DELETE_CHUNK = 5000
FETCH_ROWS = 2000  # rows per chunk of a batch read from MariaDB
MAX_RUNS = 64  # a batch whose keys fall in more runs of consecutive keys than this is deleted by key list
COMPACT_ROWS = 1_000_000  # rows per compacted file unless settings.ARCHIVE_COMPACT_ROWS says otherwise
ROW_GROUP_ROWS = 131_072  # compacted files' row groups: about DuckDB's own (122,880)
COMPACTED_FROM = b"riskdesk.compacted_from"  # Parquet key-value metadata: the parts a file replaced


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
    compacted: CompactResult | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class CompactResult:
    table: str
    days: int = 0
    parts: int = 0  # small parts replaced
    files: int = 0  # large files written
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0


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


# --------------------------------------------------------------------------- reading due rows


def _read_text(spec: TableSpec, qs, limit: int) -> pa.Table:
    """One batch with decimals and times as MariaDB's own text (no Decimal or datetime objects, no
    JSON parsed and dumped again: the ORM's converters were most of a batch's time), parsed by Arrow
    from that exact text. Datetime columns hold UTC (USE_TZ), so their text is UTC. The query is the
    queryset's own (its due() filter, keyset and order) with the select list replaced."""
    model = spec.model
    table = connection.ops.quote_name(model._meta.db_table)
    columns = {f.attname: connection.ops.quote_name(f.column) for f in model._meta.concrete_fields}
    select = {}
    for i, (name, typ) in enumerate(spec.columns):
        column = f"{table}.{columns[name]}"  # qualified: a due() filter may join another table
        if pa.types.is_decimal(typ) or pa.types.is_timestamp(typ):
            column = f"CAST({column} AS CHAR)"
        select[f"_c{i}"] = RawSQL(column, ())  # noqa: S611 - quoted names, no input
    ordered = qs.annotate(**select).values_list(*select).order_by(spec.time_field, "pk")
    sql, params = ordered[:limit].query.sql_with_params()
    # Streamed from the server a few thousand rows at a time (SSCursor), each chunk turned into
    # Arrow at once: the batch's Python objects never all exist together (resident memory).
    from MySQLdb.cursors import SSCursor  # the MariaDB path only: embedded mode needs no client library

    connection.ensure_connection()
    cur = connection.connection.cursor(SSCursor)
    try:
        cur.execute(sql, params)
        chunks = []
        while rows := cur.fetchmany(FETCH_ROWS):
            chunks.append(parquet.text_to_arrow(rows, spec.schema))
    finally:
        cur.close()
    return pa.concat_tables(chunks) if chunks else parquet.text_to_arrow([], spec.schema)


def _first_due(spec: TableSpec, cutoff: dt.datetime, since: dt.datetime | None = None):
    qs = spec.due_rows(cutoff)
    if since is not None:
        qs = qs.filter(**{f"{spec.time_field}__gte": since})
    return qs.order_by(spec.time_field, "pk").values_list(spec.time_field, flat=True).first()


def _day_batches(spec: TableSpec, cutoff: dt.datetime, day: dt.date, batch_size: int) -> Iterator[pa.Table]:
    """The due rows of one UTC day in batches, in (time, key) order. Each batch starts after the
    last (time, key) of the one before (keyset), so a read never depends on the deletes of the
    batches before it, and never wades through the index entries of rows just deleted."""
    tf = spec.time_field
    start, end = _day_bounds(day)
    base = spec.due_rows(cutoff).filter(**{f"{tf}__gte": start, f"{tf}__lt": min(end, cutoff)})
    after = None
    while True:
        qs = base
        if after is not None:
            t, pk = after
            qs = qs.filter(Q(**{f"{tf}__gt": t}) | Q(**{tf: t, "pk__gt": pk}), **{f"{tf}__gte": t})
        if connection.vendor == "mysql":
            table = _read_text(spec, qs, batch_size)
        else:
            rows = list(qs.order_by(tf, "pk").values_list(*spec.column_names)[:batch_size])
            table = parquet.to_arrow(rows, spec.schema)
        if table.num_rows:
            yield table
        if table.num_rows < batch_size:
            return
        after = (table.column(tf)[-1].as_py(), table.column("id")[-1].as_py())


@dataclasses.dataclass
class _Verified:
    """A batch written as a part file, fsynced, read back from the store and checked; not yet
    recorded, its rows not yet deleted."""

    day: dt.date
    part: int
    uri: str
    size: int
    sha256: str
    ids: np.ndarray
    time_from: dt.datetime
    time_to: dt.datetime

    @property
    def rows(self) -> int:
        return len(self.ids)


def _write_verified(spec: TableSpec, day: dt.date, part: int, table: pa.Table, *, store) -> _Verified:
    """sha256 of the rows as read from the database; the Parquet file written and fsynced; read
    back from the store, decoded, and its row count, schema and sha256 checked."""
    digest = parquet.checksum(table)
    key = key_for(spec.name, day, part)
    data = parquet.to_parquet(table)
    uri = store.write(key, data)
    back = parquet.from_parquet(store.read(key))
    if back.num_rows != table.num_rows or not back.schema.equals(spec.schema) or parquet.checksum(back) != digest:
        raise ArchiveVerifyError(f"{uri}: read back {back.num_rows} rows, checksum mismatch; nothing deleted")
    times = table.column(spec.time_field)
    return _Verified(
        day=day,
        part=part,
        uri=uri,
        size=len(data),
        sha256=digest,
        ids=table.column("id").to_numpy(),
        time_from=pc.min(times).as_py(),
        time_to=pc.max(times).as_py(),
    )


def _verified_batches(spec: TableSpec, cutoff: dt.datetime, batch_size: int, *, store) -> Iterator[_Verified]:
    """Every due row, oldest day first, as verified part files. A day's partition is swept of
    files no batch records before its first part is written: a killed run's files (up to three
    batches ahead of its last commit when pipelined) are gone before anything is written there."""
    since = None
    while (first := _first_due(spec, cutoff, since)) is not None:
        day = _utc_day(first)
        _sweep_day(spec, store, day)
        part = _next_part(spec.name, day)
        for table in _day_batches(spec, cutoff, day, batch_size):
            yield _write_verified(spec, day, part, table, store=store)
            part += 1
            if part % 16 == 0:  # Arrow's allocator keeps freed pages: a long run's resident memory grows
                pa.default_memory_pool().release_unused()
        since = _day_bounds(day)[1]


class _Prefetch:
    """Runs a generator on a thread with its own database connection, one item ahead: the next
    batch is read from MariaDB (and hashed) while this one is written, read back, verified and
    deleted. Reading has no side effect, so stopping early (an error, a kill) loses nothing."""

    _DONE = object()

    def __init__(self, produce: Callable[[], Iterator]):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name="archive-read", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consuming thread, raised there
            self._put(exc)
        finally:
            connections.close_all()  # this thread's connections only

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=30)


def _pipelined() -> bool:
    """Read ahead on a second connection only on MariaDB/MySQL, and only outside a transaction: a
    second connection cannot see rows its caller has not committed (a test's transaction)."""
    return connection.vendor == "mysql" and not connection.in_atomic_block


# --------------------------------------------------------------------------- one batch


def _key_runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """The batch's keys as maximal runs of consecutive integers: BETWEEN lo AND hi over each run
    names exactly the batch's keys and nothing else."""
    keys = np.unique(ids)
    if len(keys) != len(ids):
        raise ArchiveVerifyError("a batch holds a key twice")
    breaks = np.flatnonzero(np.diff(keys) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(keys) - 1]))
    return list(zip(keys[starts].tolist(), keys[ends].tolist(), strict=True))


def _delete_exactly(spec: TableSpec, ids: np.ndarray) -> int:
    model = spec.model
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    runs = _key_runs(ids)
    deleted = 0
    with connection.cursor() as cur:
        if len(runs) <= MAX_RUNS:
            # Keys written in time order are (nearly) consecutive: a few ranges, one range scan each.
            where = " OR ".join([f"{pk} BETWEEN %s AND %s"] * len(runs))
            cur.execute(f"DELETE FROM {table} WHERE {where}", [k for run in runs for k in run])  # noqa: S608
            return cur.rowcount
        keys = np.sort(ids).tolist()
        for i in range(0, len(keys), DELETE_CHUNK):
            chunk = keys[i : i + DELETE_CHUNK]
            marks = ",".join(["%s"] * len(chunk))
            cur.execute(f"DELETE FROM {table} WHERE {pk} IN ({marks})", chunk)  # noqa: S608 - names quoted
            deleted += cur.rowcount
    return deleted


def _commit(spec: TableSpec, batch: _Verified) -> None:
    """In ONE transaction: record the verified file and delete exactly its rows (rolled back
    unless the delete removed exactly as many rows as the file holds)."""
    with transaction.atomic():
        ArchiveBatch.objects.create(
            table=spec.name,
            day=batch.day,
            part=batch.part,
            first_pk=int(batch.ids.min()),
            last_pk=int(batch.ids.max()),
            time_from=batch.time_from,
            time_to=batch.time_to,
            rows=batch.rows,
            sha256=batch.sha256,
            uri=batch.uri,
            size=batch.size,
        )
        deleted = _delete_exactly(spec, batch.ids)
        if deleted != batch.rows:
            raise ArchiveVerifyError(f"{spec.name}: {deleted} rows deleted for a batch of {batch.rows}; rolled back")


def _next_part(table: str, day: dt.date) -> int:
    return (ArchiveBatch.objects.filter(table=table, day=day).aggregate(m=Max("part"))["m"] or 0) + 1


def _sweep_day(spec: TableSpec, store, day: dt.date) -> int:
    """Remove the files of one day's partition that no ArchiveBatch records. Only ever under the
    table's lock, so no batch of another run is between its write and its commit."""
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
    compact: bool = False,
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
        if on_start:  # counting every due row costs a scan: only for a progress bar
            result.due = spec.due_rows(cutoff).count()
            on_start(result.due)
        batches = lambda: _verified_batches(spec, cutoff, batch_size, store=store)  # noqa: E731
        # Pipelined: a second thread (and connection) reads, writes and verifies the next batches
        # while this one records and deletes, in order, one transaction per batch.
        source = _Prefetch(batches) if _pipelined() else None
        try:
            for batch in source if source is not None else batches():
                _commit(spec, batch)
                result.bytes += batch.size
                result.rows += batch.rows
                result.batches += 1
                result.days[batch.day.isoformat()] = result.days.get(batch.day.isoformat(), 0) + batch.rows
                if on_batch:
                    on_batch(batch.rows)
        finally:
            if source is not None:
                source.close()
    result.seconds = time.monotonic() - started
    log.info("archived %s: %s rows in %s batches (%.0f rows/s)", table, result.rows, result.batches, result.rows_per_s)
    if compact:
        result.compacted = compact_table(table, before=cutoff, store=store)
    return result


def archive_all(*, only: str | None = None, **kwargs) -> list[TableResult]:
    return [archive_table(t, **kwargs) for t in tables_in_order(only)]


# --------------------------------------------------------------------------- compaction


def compact_rows() -> int:
    return int(getattr(settings, "ARCHIVE_COMPACT_ROWS", COMPACT_ROWS) or COMPACT_ROWS)


def _small_parts(spec: TableSpec, day: dt.date, target: int):
    return ArchiveBatch.objects.filter(
        table=spec.name, day=day, restored_at__isnull=True, rows__lt=max(target // 2, 1)
    ).order_by("time_from", "part")


def compactable_days(spec: TableSpec, cutoff: dt.datetime, target: int | None = None) -> list[dt.date]:
    """Finished days (wholly before the cutoff, no due row of them left in the database) holding
    two or more live parts smaller than half a compacted file."""
    target = target or compact_rows()
    tf = spec.time_field
    candidates = (
        ArchiveBatch.objects.filter(
            table=spec.name, restored_at__isnull=True, day__lt=_utc_day(cutoff), rows__lt=max(target // 2, 1)
        )
        .values("day")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .order_by("day")
        .values_list("day", flat=True)
    )
    days = []
    for day in candidates:
        start, end = _day_bounds(day)
        if not spec.due_rows(cutoff).filter(**{f"{tf}__gte": start, f"{tf}__lt": end}).exists():
            days.append(day)
    return days


def _groups(parts: list[ArchiveBatch], target: int) -> list[list[ArchiveBatch]]:
    """Whole parts in order, cut into as few files as `target` rows allows, of near equal size."""
    total = sum(p.rows for p in parts)
    files = max(1, math.ceil(total / target))
    quota = math.ceil(total / files)
    groups: list[list[ArchiveBatch]] = [[]]
    rows = 0
    for p in parts:
        if groups[-1] and rows + p.rows > quota and len(groups) < files:
            groups.append([])
            rows = 0
        groups[-1].append(p)
        rows += p.rows
    return groups


def _slices(pf: pq.ParquetFile, sizes: list[int]) -> Iterator[pa.Table]:
    """The file's rows, in order, cut into tables of the given sizes (read one batch at a time)."""
    batches = pf.iter_batches(batch_size=65_536)
    held: list[pa.RecordBatch] = []
    have = 0
    for n in sizes:
        while have < n:
            rb = next(batches, None)
            if rb is None:
                raise ArchiveVerifyError(f"compacted file ends before {n} more rows")
            held.append(rb)
            have += rb.num_rows
        table = pa.Table.from_batches(held, schema=pf.schema_arrow)
        yield table.slice(0, n)
        rest = table.slice(n)
        held, have = rest.to_batches(), rest.num_rows


def _write_compacted(spec: TableSpec, group: list[ArchiveBatch], store) -> bytes:
    """The group's parts, in order, as one Parquet file; its metadata lists the parts it replaces
    (the compaction's own record, readable by anyone with the file)."""
    record = [
        {"part": p.part, "rows": p.rows, "first_pk": p.first_pk, "last_pk": p.last_pk, "sha256": p.sha256}
        for p in group
    ]
    schema = spec.schema.with_metadata({COMPACTED_FROM: json.dumps(record, separators=(",", ":")).encode()})
    sink = io.BytesIO()
    held: list[pa.Table] = []
    have = 0
    with pq.ParquetWriter(sink, schema, compression="zstd", use_dictionary=True, write_statistics=True) as writer:
        for p in group:
            table = parquet.from_parquet(store.read(key_for(spec.name, p.day, p.part)))
            if table.num_rows != p.rows:
                raise ArchiveVerifyError(f"{p.uri}: {table.num_rows} rows, its record says {p.rows}")
            held.append(table.replace_schema_metadata(schema.metadata))
            have += table.num_rows
            if have >= ROW_GROUP_ROWS:  # whole row groups; the rest waits for the next part
                pending = pa.concat_tables(held)
                cut = have - have % ROW_GROUP_ROWS
                writer.write_table(pending.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
                held, have = [pending.slice(cut)], have - cut
        if have:
            writer.write_table(pa.concat_tables(held), row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()


def compact_day(spec: TableSpec, day: dt.date, *, store, target: int | None = None) -> CompactResult:
    """Rewrite one finished day's small parts as a few large files. Each new file is written,
    fsynced and read back from the store; every replaced part's rows are found in it, in order, with
    the sha256 recorded when that part was archived, and its schema is the table's. Only then, in
    ONE transaction, the new files are recorded (sha256 of each whole file) and the parts' records
    deleted; after the commit the parts' files are removed. Killed before the commit, the new files
    are recorded nowhere and swept by the next compaction; killed after it, the old files are
    recorded nowhere, never read, and swept the same way. History never sees a row twice or
    misses one: it reads what the records name. Call under the table's lock."""
    target = target or compact_rows()
    result = CompactResult(table=spec.name)
    parts = list(_small_parts(spec, day, target))
    if len(parts) < 2:
        return result
    _sweep_day(spec, store, day)
    part = _next_part(spec.name, day)
    written: list[tuple[list[ArchiveBatch], dict]] = []
    for group in _groups(parts, target):
        key = key_for(spec.name, day, part)
        data = _write_compacted(spec, group, store)
        uri = store.write(key, data)
        pf = pq.ParquetFile(io.BytesIO(store.read(key)))
        rows = sum(p.rows for p in group)
        if pf.metadata.num_rows != rows or not pf.schema_arrow.equals(spec.schema):
            raise ArchiveVerifyError(f"{uri}: {pf.metadata.num_rows} rows read back for {rows}; nothing removed")
        for p, piece in zip(group, _slices(pf, [p.rows for p in group]), strict=True):
            if parquet.checksum(piece) != p.sha256:
                raise ArchiveVerifyError(f"{uri}: the rows of part {p.part} do not match its sha256; nothing removed")
        digest, _ = parquet.checksum_file(pf)
        written.append(
            (
                group,
                {
                    "table": spec.name,
                    "day": day,
                    "part": part,
                    "first_pk": min(p.first_pk for p in group),
                    "last_pk": max(p.last_pk for p in group),
                    "time_from": min(p.time_from for p in group),
                    "time_to": max(p.time_to for p in group),
                    "rows": rows,
                    "sha256": digest,
                    "uri": uri,
                    "size": len(data),
                },
            )
        )
        part += 1
        del data, pf
        pa.default_memory_pool().release_unused()  # a worker process keeps running after the night's job
    replaced = [p.pk for group, _ in written for p in group]
    with transaction.atomic():
        for _, fields in written:
            ArchiveBatch.objects.create(**fields)
        gone, _ = ArchiveBatch.objects.filter(pk__in=replaced, restored_at__isnull=True).delete()
        if gone != len(replaced):
            raise ArchiveVerifyError(f"{spec.name} {day}: {gone} part records for {len(replaced)}; rolled back")
    for group, _ in written:
        for p in group:
            store.remove(key_for(spec.name, day, p.part))
    result.days = 1
    result.parts = len(replaced)
    result.files = len(written)
    result.rows = sum(f["rows"] for _, f in written)
    result.bytes = sum(f["size"] for _, f in written)
    log.info("archive: compacted %s %s: %s parts into %s files", spec.name, day, result.parts, result.files)
    return result


def compact_table(
    table: str, *, before: dt.datetime | None = None, store=None, target: int | None = None
) -> CompactResult:
    """Compact every finished day of the table that needs it (compactable_days). Also sweeps the
    days compacted in the last few days: a run killed between a compaction's commit and the removal
    of the old parts leaves their files, recorded nowhere."""
    spec = TABLES[table]
    cutoff = before or cutoff_for(table)
    store = store or get_store()
    target = target or compact_rows()
    result = CompactResult(table=table)
    started = time.monotonic()
    with table_lock(table):
        recent = timezone.now() - dt.timedelta(days=3)
        for day in (
            ArchiveBatch.objects.filter(table=table, created_at__gte=recent, rows__gte=max(target // 2, 1))
            .values_list("day", flat=True)
            .distinct()
        ):
            _sweep_day(spec, store, day)
        for day in compactable_days(spec, cutoff, target):
            done = compact_day(spec, day, store=store, target=target)
            for f in ("days", "parts", "files", "rows", "bytes"):
                setattr(result, f, getattr(result, f) + getattr(done, f))
    result.seconds = time.monotonic() - started
    return result


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


RESTORE_CHUNK = 10_000


def restore_range(table: str, day_from: dt.date, day_to: dt.date, *, store=None) -> RestoreResult:
    """Re-import the archived rows of [day_from, day_to] (UTC days, inclusive). Idempotent: rows
    come back under their own keys and a key already present is left alone; a batch is marked
    restored, so history reads those rows from the database and a second restore finds nothing
    left to do. Each file is verified against its recorded sha256 before a row is inserted; a file
    (a compacted one holds a million rows) is read and inserted a chunk at a time, in the one
    transaction that also marks its batch restored."""
    spec = TABLES[table]
    store = store or get_store()
    result = RestoreResult(table=table)
    model = spec.model
    batches = ArchiveBatch.objects.filter(
        table=table, day__gte=day_from, day__lte=day_to, restored_at__isnull=True
    ).order_by("day", "part")
    with table_lock(table):
        for batch in batches:
            pf = pq.ParquetFile(io.BytesIO(store.read(key_for(table, batch.day, batch.part))))
            digest, rows = parquet.checksum_file(pf)
            if rows != batch.rows or digest != batch.sha256:
                raise ArchiveVerifyError(f"{batch.uri}: does not match its recorded checksum")
            with transaction.atomic():
                for chunk in pf.iter_batches(batch_size=RESTORE_CHUNK):
                    objs = [model(**row) for row in parquet.to_rows(pa.Table.from_batches([chunk]))]
                    pks = [o.pk for o in objs]
                    before = _count_present(model, pks)
                    with _times_as_given(model):
                        model._base_manager.bulk_create(objs, batch_size=2000, ignore_conflicts=True)
                    result.inserted += _count_present(model, pks) - before
                ArchiveBatch.objects.filter(pk=batch.pk).update(restored_at=timezone.now())
            result.batches += 1
            result.rows += batch.rows
    return result
