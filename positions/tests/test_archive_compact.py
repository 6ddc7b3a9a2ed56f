"""Compaction of a finished day's parts (docs/ARCHIVE.md, "Compaction"), and the archive's fast
path: the checksum's fast forms give the same bytes, keys that are not consecutive are deleted
exactly, and the pipelined run (MariaDB) stops cleanly when a file does not verify."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.db import connection

from positions.archive import parquet, services
from positions.archive.history import Query, history_page
from positions.archive.store import DirectoryStore, key_for
from positions.models import ArchiveBatch, OrderLog
from positions.tests.archive_fixtures import make_order_logs, snapshot

BEFORE = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
DAY1 = dt.date(2026, 11, 1)


@pytest.fixture
def store(tmp_path, settings):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    settings.ARCHIVE_COMPACT_ROWS = 1000
    return DirectoryStore(tmp_path / "archive")


def recorded_keys(table="orderlog"):
    return sorted(key_for(b.table, b.day, b.part) for b in ArchiveBatch.objects.filter(table=table))


def file_rows(store, table="orderlog") -> list[dict]:
    out = []
    for b in ArchiveBatch.objects.filter(table=table, restored_at__isnull=True):
        out += parquet.from_parquet(store.read(key_for(table, b.day, b.part))).to_pylist()
    return sorted(out, key=lambda r: r["id"])


def search(day_from=DAY1, day_to=dt.date(2026, 11, 2), **kw):
    return history_page(Query("orderlog", day_from, day_to, None, limit=5000, **kw))


def test_a_finished_days_parts_become_a_few_verified_files_and_history_is_unchanged(account_a, store):
    make_order_logs(account_a, 3000, step_s=60)  # 1440 rows on 11-01, 1440 on 11-02, 120 on 11-03
    before = snapshot(OrderLog)
    services.archive_table("orderlog", before=BEFORE, batch_size=100, store=store)
    parts = {b.part: b for b in ArchiveBatch.objects.filter(table="orderlog", day=DAY1)}
    assert len(parts) == 15
    rows_before = file_rows(store)
    history_before = search()

    done = services.compact_table("orderlog", before=BEFORE, store=store)

    assert (done.days, done.parts, done.files, done.rows) == (2, 30, 4, 2880)
    day1 = list(ArchiveBatch.objects.filter(table="orderlog", day=DAY1).order_by("part"))
    assert [(b.part, b.rows) for b in day1] == [(16, 700), (17, 740)]  # whole parts, near-equal files
    assert day1[0].first_pk == min(p.first_pk for p in parts.values())
    assert day1[0].time_from == min(p.time_from for p in parts.values())
    # Every record names a file that exists and matches its sha256; no file is left unrecorded.
    assert store.keys("orderlog/") == recorded_keys()
    for b in ArchiveBatch.objects.filter(table="orderlog"):
        digest, rows = parquet.checksum_file(io.BytesIO(store.read(key_for("orderlog", b.day, b.part))))
        assert (digest, rows) == (b.sha256, b.rows)
    # The file says which parts it replaced, with the sha256 each had.
    meta = pq.ParquetFile(io.BytesIO(store.read(key_for("orderlog", DAY1, 16)))).schema_arrow.metadata
    replaced = json.loads(meta[services.COMPACTED_FROM])
    assert [p["part"] for p in replaced] == list(range(1, 8))
    assert [p["sha256"] for p in replaced] == [parts[n].sha256 for n in range(1, 8)]
    # The same rows, to the last decimal place; history reads them the same.
    assert file_rows(store) == rows_before
    assert search() == history_before
    assert search(equals=(("decision", "denied"),))[0] == sum(1 for r in rows_before if r["decision"] == "denied")

    # Nothing more to do; restore is exact and idempotent on compacted files.
    assert services.compact_table("orderlog", before=BEFORE, store=store).parts == 0
    call_command("restore_archive", table="orderlog", day_from="2026-11-01", day_to="2026-11-02")
    call_command("restore_archive", table="orderlog", day_from="2026-11-01", day_to="2026-11-02")
    assert snapshot(OrderLog) == before


def test_a_day_with_due_rows_left_or_a_single_part_is_not_compacted(account_a, store):
    make_order_logs(account_a, 2000, step_s=60)
    services.archive_table("orderlog", before=dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC), batch_size=100, store=store)
    # 11-01 is not finished for a cutoff of 11-02: its afternoon is still in the database.
    assert services.compact_table("orderlog", before=dt.datetime(2026, 11, 2, tzinfo=dt.UTC), store=store).days == 0
    services.archive_table("orderlog", before=dt.datetime(2026, 11, 2, tzinfo=dt.UTC), batch_size=2000, store=store)
    # Now finished: 8 small morning parts (100 rows) and one afternoon part of 720 rows, not small
    # (half a compacted file is 500): only the small ones merge.
    done = services.compact_table("orderlog", before=dt.datetime(2026, 11, 2, tzinfo=dt.UTC), store=store)
    assert (done.parts, done.files, done.rows) == (8, 1, 720)
    assert sorted(ArchiveBatch.objects.filter(day=DAY1).values_list("rows", flat=True)) == [720, 720]
    assert store.keys("orderlog/") == recorded_keys()


def test_a_compacted_file_that_does_not_verify_removes_nothing(account_a, store):
    make_order_logs(account_a, 1440, step_s=60)
    services.archive_table("orderlog", before=BEFORE, batch_size=100, store=store)
    keys, rows = recorded_keys(), file_rows(store)

    class Corrupting(DirectoryStore):
        def write(self, key, data):
            if "part-0000" in key and int(key[-14:-8]) > 15:  # the compacted file only
                table = parquet.from_parquet(data)
                price = table.column("price").to_pylist()
                price[500] += Decimal("0.000000000001")
                i = table.schema.get_field_index("price")
                table = table.set_column(
                    i, table.schema.field("price"), pa.array(price, table.schema.field("price").type)
                )
                data = parquet.to_parquet(table)
            return super().write(key, data)

    with pytest.raises(services.ArchiveVerifyError, match="part 6"):
        services.compact_table("orderlog", before=BEFORE, store=Corrupting(store.root))
    assert recorded_keys() == keys and file_rows(store) == rows
    assert len(store.keys("orderlog/")) == len(keys) + 1  # the bad file, recorded nowhere

    # The next compaction sweeps it and does the work.
    done = services.compact_table("orderlog", before=BEFORE, store=store)
    assert done.parts == 15 and store.keys("orderlog/") == recorded_keys() and file_rows(store) == rows


def test_old_parts_left_by_a_run_killed_after_the_commit_are_swept(account_a, store, monkeypatch):
    make_order_logs(account_a, 1440, step_s=60)
    services.archive_table("orderlog", before=BEFORE, batch_size=100, store=store)
    rows = file_rows(store)

    def killed(self, key):
        raise KeyboardInterrupt  # as if the process died between the commit and the removals

    monkeypatch.setattr(DirectoryStore, "remove", killed)
    with pytest.raises(KeyboardInterrupt):
        services.compact_table("orderlog", before=BEFORE, store=store)
    monkeypatch.undo()
    assert len(store.keys("orderlog/")) == 15 + 2 and len(recorded_keys()) == 2
    assert file_rows(store) == rows  # history reads the records: the new files only, no row twice

    services.compact_table("orderlog", before=BEFORE, store=store)
    assert store.keys("orderlog/") == recorded_keys()


def test_archive_compact_command_and_summary(account_a, store, capsys):
    make_order_logs(account_a, 1500, step_s=60)
    call_command("archive", table="orderlog", before="2026-11-02", batch_size=100, compact=True)
    out = capsys.readouterr().out
    assert "orderlog: 1440 rows in 15 files" in out
    assert "orderlog: compacted 1 days, 15 parts into 2 files (1440 rows" in out
    assert len(recorded_keys()) == 2 and OrderLog.objects.count() == 60


# --------------------------------------------------------------------------- the fast path


def _reference_checksum(table: pa.Table) -> str:
    """The checksum as first written (one combined array per column, Arrow's cast for every type):
    the files archived before the fast path carry sha256s computed this way."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(str(table.num_rows).encode())
    for name in table.column_names:
        text = pc.fill_null(pc.cast(table.column(name).combine_chunks(), pa.string()), parquet.NULL_MARK)
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
        start, end = int(offsets[0]), int(offsets[-1])
        digest.update(name.encode() + b"\x01")
        digest.update((offsets - start).astype("<i8").tobytes())
        data = text.buffers()[2]
        digest.update(data.to_pybytes()[start:end] if data is not None else b"")
    return digest.hexdigest()


def test_the_checksums_fast_forms_give_the_same_digest():
    rng = random.Random(7)
    n = 5000
    micros = [None if i % 13 == 0 else rng.randint(-62135596800_000000, 253402300799_999999) for i in range(n)]
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "t": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "p": pa.array(
                [None if i % 7 == 0 else (Decimal(i) / 3).quantize(Decimal("1e-12")) for i in range(n)],
                pa.decimal128(32, 12),
            ),
            "s": pa.array([None if i % 5 == 0 else "é" * (i % 4) for i in range(n)]),
            "b": pa.array([None if i % 11 == 0 else bool(i % 2) for i in range(n)]),
        }
    )
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2000), table.slice(2001)])
    expected = _reference_checksum(table)
    assert parquet.checksum(table) == parquet.checksum(chunked) == expected
    assert parquet.checksum(table.slice(17, 999)) == _reference_checksum(table.slice(17, 999))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=700)
    assert parquet.checksum_file(io.BytesIO(sink.getvalue())) == (expected, n)


def test_keys_that_are_not_consecutive_are_deleted_exactly(account_a, store):
    times = [dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=m) for m in range(3000)]
    random.Random(3).shuffle(times)  # keys out of time order: a batch's keys are scattered
    rows = [
        OrderLog(account=account_a, symbol="BTCUSDT", side="BUY", order_type="LIMIT", decision="allowed", created_at=t)
        for t in times
    ]
    with services._times_as_given(OrderLog):
        OrderLog.objects.bulk_create(rows)
    due = set(OrderLog.objects.filter(created_at__lt=BEFORE).values_list("pk", flat=True))
    kept = set(OrderLog.objects.values_list("pk", flat=True)) - due

    result = services.archive_table("orderlog", before=BEFORE, batch_size=250, store=store)

    assert result.rows == len(due) == 2880
    assert set(OrderLog.objects.values_list("pk", flat=True)) == kept
    assert sorted(r["id"] for r in file_rows(store)) == sorted(due)
    assert services._key_runs(np.array([5, 3, 4, 9, 11, 10, 1])) == [(1, 1), (3, 5), (9, 11)]


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_run_stops_cleanly_when_a_file_does_not_verify(account_a, store):
    if connection.vendor != "mysql":
        pytest.skip("the read-ahead connection is MariaDB's (SQLite runs one batch at a time)")
    make_order_logs(account_a, 3000, step_s=60)
    assert services._pipelined()
    before = snapshot(OrderLog)
    reads = []

    class FailsOnFifth(DirectoryStore):
        def read(self, key):
            reads.append(key)
            data = super().read(key)
            return data[:-40] + b"x" * 40 if len(reads) == 5 else data

    with pytest.raises(Exception):  # noqa: B017 - a broken footer or a checksum mismatch
        services.archive_table("orderlog", before=BEFORE, batch_size=100, store=FailsOnFifth(store.root))
    # Four batches were verified and committed, in order; the fifth and the read-ahead deleted nothing.
    assert ArchiveBatch.objects.count() == 4
    assert OrderLog.objects.count() == len(before) - 400
    assert [t.name for t in __import__("threading").enumerate() if t.name == "archive-read"] == []

    result = services.archive_table("orderlog", before=BEFORE, batch_size=100, store=store)
    assert result.rows == 2880 - 400 and store.keys("orderlog/") == recorded_keys()
    assert sorted(r["id"] for r in file_rows(store)) == sorted(pk for pk, row in before.items() if row[1] < BEFORE)
