"""The verified archive (positions/archive/, docs/ARCHIVE.md): write, read back, verify, record,
delete exactly; restore; the lock; DuckDB over the files; a failed verification deletes nothing."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import Alert, AlertStatus, Delivery, Level, NotificationChannel
from positions.archive import parquet, services
from positions.archive.locks import TableBusy, table_lock
from positions.archive.store import DirectoryStore, key_for
from positions.archive.tables import TABLES, cutoff_for
from positions.models import ArchiveBatch, ArchivePolicy, OrderLog
from positions.tests.archive_fixtures import make_order_logs, snapshot

BEFORE = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path, settings):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    return DirectoryStore(tmp_path / "archive")


def archived_rows(store, table: str):
    files = [store.local_path(key_for(b.table, b.day, b.part)) for b in ArchiveBatch.objects.filter(table=table)]
    return duckdb.sql(f"SELECT * FROM read_parquet({files!r}) ORDER BY id").fetchall() if files else []


def test_orderlog_archives_verified_partitioned_by_day_and_restores_exactly(account_a, store):
    ids = make_order_logs(account_a, 3000, step_s=60)  # 3000 minutes: 2026-11-01 .. 11-03 03:59
    before = snapshot(OrderLog)

    result = services.archive_table("orderlog", before=BEFORE, batch_size=700, store=store)

    due = [pk for pk, row in before.items() if row[1] < BEFORE]
    assert result.rows == len(due) == 2880
    assert set(OrderLog.objects.values_list("pk", flat=True)) == set(ids) - set(due)
    batches = list(ArchiveBatch.objects.filter(table="orderlog").order_by("day", "part"))
    assert [(b.day.isoformat(), b.part) for b in batches][:3] == [
        ("2026-11-01", 1),
        ("2026-11-01", 2),
        ("2026-11-01", 3),
    ]
    assert {b.day for b in batches} == {dt.date(2026, 11, 1), dt.date(2026, 11, 2)}
    assert sum(b.rows for b in batches) == 2880
    assert store.exists("orderlog/date=2026-11-01/part-000001.parquet")

    # Exact types: decimals stay decimals at the column's scale, times are UTC.
    table = parquet.from_parquet(store.read(key_for("orderlog", batches[0].day, 1)))
    assert table.schema.field("price").type == pa.decimal128(32, 12)
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert parquet.checksum(table) == batches[0].sha256
    first = table.slice(0, 1).to_pylist()[0]
    # (SQLite keeps a decimal column as a float; MariaDB keeps all 12 places, and so does the file.)
    assert first["price"] == before[first["id"]][11]

    # DuckDB reads the files directly: every archived key once.
    rows = archived_rows(store, "orderlog")
    assert [r[0] for r in rows] == sorted(due)

    # Restore puts back exactly the rows that left, twice is the same as once.
    call_command("restore_archive", table="orderlog", day_from="2026-11-01", day_to="2026-11-02")
    call_command("restore_archive", table="orderlog", day_from="2026-11-01", day_to="2026-11-02")
    assert snapshot(OrderLog) == before
    assert ArchiveBatch.objects.filter(table="orderlog", restored_at__isnull=True).count() == 0


def test_nothing_is_deleted_when_the_file_read_back_differs(account_a, store):
    make_order_logs(account_a, 50)
    before = snapshot(OrderLog)

    class Corrupting(DirectoryStore):
        def read(self, key):
            table = parquet.from_parquet(super().read(key))
            price = table.column("price").to_pylist()
            price[7] = price[7] + Decimal("0.000000000001")
            table = table.set_column(
                table.schema.get_field_index("price"), "price", pa.array(price, table.schema.field("price").type)
            )
            return parquet.to_parquet(table)

    with pytest.raises(services.ArchiveVerifyError):
        services.archive_table("orderlog", before=BEFORE, store=Corrupting(store.root))
    assert snapshot(OrderLog) == before
    assert not ArchiveBatch.objects.exists()

    # The unrecorded file is swept and rewritten by the next, honest run.
    result = services.archive_table("orderlog", before=BEFORE, store=store)
    assert result.rows == 50 and OrderLog.objects.count() == 0
    assert store.keys("orderlog/") == ["orderlog/date=2026-11-01/part-000001.parquet"]


def test_a_second_run_cannot_work_a_table_another_run_holds(account_a, store):
    make_order_logs(account_a, 10)
    with table_lock("orderlog"), pytest.raises(TableBusy):
        services.archive_table("orderlog", before=BEFORE, store=store)
    assert OrderLog.objects.count() == 10


def test_retention_comes_from_settings_then_the_admin_policy(db, settings):
    now = dt.datetime(2026, 12, 7, 15, 30, tzinfo=dt.UTC)
    assert cutoff_for("orderlog", now=now) == dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert cutoff_for("alert", now=now) == dt.datetime(2026, 6, 10, tzinfo=dt.UTC)
    settings.ARCHIVE_RETENTION_DAYS = {"orderlog": 3}
    assert cutoff_for("orderlog", now=now) == dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    ArchivePolicy.objects.create(table="orderlog", retention_days=1)
    assert cutoff_for("orderlog", now=now) == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    ArchivePolicy.objects.filter(table="orderlog").update(enabled=False)
    assert cutoff_for("orderlog", now=now).year == 1970


def test_resolved_alerts_leave_with_their_deliveries_open_ones_stay(account_a, store):
    channel = NotificationChannel.objects.create(name="hook", kind="webhook")
    old = timezone.make_aware(dt.datetime(2026, 1, 2, 10), dt.UTC)
    resolved = Alert.objects.create(
        account=account_a,
        rule="r",
        subject="BTCUSDT",
        level=Level.CRITICAL,
        reason_code="MAX_LEVERAGE",
        value=Decimal("12.5"),
        limit=Decimal("10"),
        status=AlertStatus.RESOLVED,
        resolved_at=old,
    )
    still_open = Alert.objects.create(account=account_a, rule="r2", level=Level.WARNING, reason_code="X")
    Alert.objects.filter(pk__in=[resolved.pk, still_open.pk]).update(opened_at=old - dt.timedelta(hours=1))
    Delivery.objects.create(alert=resolved, channel=channel, level=Level.CRITICAL, snapshot={"id": resolved.pk})
    Delivery.objects.filter(alert=resolved).update(created_at=old)

    call_command("archive", table="alert", before="2026-02-01")

    assert list(Alert.objects.values_list("pk", flat=True)) == [still_open.pk]
    assert not Delivery.objects.exists()
    assert ArchiveBatch.objects.get(table="alert").rows == 1
    assert ArchiveBatch.objects.get(table="delivery").rows == 1
    (alert_row,) = archived_rows(store, "alert")
    assert alert_row[0] == resolved.pk


def test_dry_run_counts_by_day_and_changes_nothing(account_a, store, capsys):
    make_order_logs(account_a, 1500, step_s=120)
    call_command("archive", table="orderlog", before="2026-11-03", dry_run=True)
    out = capsys.readouterr().out
    assert "orderlog: 1440 rows due before 2026-11-03 (2026-11-01: 720, 2026-11-02: 720)" in out
    assert OrderLog.objects.count() == 1500 and not ArchiveBatch.objects.exists()


def test_every_table_spec_matches_its_model(db):
    for spec in TABLES.values():
        names = {f.attname for f in spec.model._meta.concrete_fields}
        assert set(spec.column_names) == names, spec.name
        assert spec.column_names[0] == "id"


def test_the_lock_is_held_against_another_connection(account_a, store):
    """On MariaDB the lock is the server's: a second connection (another process) is refused."""
    from django.db import connection

    if connection.vendor != "mysql":
        pytest.skip("GET_LOCK is MariaDB's; SQLite runs use a file lock (the test above)")
    import MySQLdb

    db = connection.settings_dict
    other = MySQLdb.connect(
        host=db["HOST"] or "127.0.0.1", port=int(db["PORT"] or 3306), user=db["USER"], password=db["PASSWORD"] or ""
    )
    try:
        cur = other.cursor()
        name = f"riskdesk.archive.{db['NAME']}.orderlog"[-64:]
        cur.execute("SELECT GET_LOCK(%s, 0)", [name])
        assert cur.fetchone()[0] == 1
        with pytest.raises(TableBusy):
            services.archive_table("orderlog", before=BEFORE, store=store)
    finally:
        other.close()  # the server frees the lock with the connection, as with a killed run
    # ... once it has processed the disconnect, which is not instant under load.
    deadline = time.monotonic() + 5
    while True:
        try:
            with table_lock("orderlog"):
                break
        except TableBusy:
            assert time.monotonic() < deadline, "the lock outlived its connection"
            time.sleep(0.05)


def test_the_nightly_beat_job_archives_every_table_at_its_retention(account_a, store):
    from positions.tasks import archive_history_task
    from riskdesk.celery import app

    assert app.conf.beat_schedule["archive-history"]["task"] == "positions.tasks.archive_history_task"
    make_order_logs(account_a, 30)  # 2026-11-01: past the 7 days of the order log
    done = archive_history_task()
    assert done["orderlog"] == 30 and set(done) == set(TABLES)
    assert archive_history_task()["orderlog"] == 0  # beat may run it twice
