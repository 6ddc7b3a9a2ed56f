"""The archive's S3 path (issue 16, "Done when"): moto's S3 server on loopback, the network edge,
reached through django-storages and boto3 exactly as a MinIO or AWS bucket would be."""

from __future__ import annotations

import datetime as dt
import socket

import boto3
import pytest
from django.core.management import call_command

from positions.archive import parquet, services
from positions.archive.history import Query, history_page
from positions.archive.store import S3Store, get_store, key_for
from positions.models import ArchiveBatch, OrderLog
from positions.tests.archive_fixtures import make_order_logs, snapshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_url(monkeypatch, settings):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="desk-archive")
    settings.ARCHIVE_URL = f"s3://desk-archive/riskdesk?endpoint_url={endpoint}&region=us-east-1"
    yield settings.ARCHIVE_URL
    server.stop()


def test_archive_to_an_s3_bucket_verifies_and_restores(account_a, s3_url):
    make_order_logs(account_a, 900, step_s=240)  # 2026-11-01 .. 11-03 11:56
    before = snapshot(OrderLog)
    store = get_store()
    assert isinstance(store, S3Store)

    call_command("archive", table="orderlog", before="2026-11-03", batch_size=200)

    assert OrderLog.objects.count() == 900 - 720
    batches = list(ArchiveBatch.objects.filter(table="orderlog"))
    assert sum(b.rows for b in batches) == 720
    assert batches[0].uri == "s3://desk-archive/riskdesk/orderlog/date=2026-11-01/part-000001.parquet"
    keys = sorted(
        o["Key"]
        for o in boto3.client(
            "s3", endpoint_url=s3_url.split("endpoint_url=")[1].split("&")[0], region_name="us-east-1"
        ).list_objects_v2(Bucket="desk-archive")["Contents"]
    )
    assert keys[0] == "riskdesk/orderlog/date=2026-11-01/part-000001.parquet" and len(keys) == len(batches)
    for b in batches:
        assert parquet.checksum(parquet.from_parquet(store.read(key_for("orderlog", b.day, b.part)))) == b.sha256

    # History reads the bucket's files too (fetched, then handed to DuckDB).
    count, rows = history_page(Query("orderlog", dt.date(2026, 11, 1), dt.date(2026, 11, 2), None, limit=5))
    assert count == 720 and rows[0]["created_at"] == dt.datetime(2026, 11, 2, 23, 56, tzinfo=dt.UTC)

    result = services.restore_range("orderlog", batches[0].day, batches[-1].day)
    assert result.inserted == 720
    assert snapshot(OrderLog) == before
