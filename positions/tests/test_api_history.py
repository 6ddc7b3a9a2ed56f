"""/api/v1/orders/log and /api/v1/alerts read the database and the archive as one, with the
API's access rules: a trader sees only their accounts' rows, archived or not."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.models import Alert, AlertStatus, Level
from positions.archive import services
from positions.models import OrderLog
from positions.tests.archive_fixtures import make_order_logs

BEFORE = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)


@pytest.fixture
def archived(tmp_path, settings, account_a, account_b):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    make_order_logs(account_a, 200, step_s=900)  # 2026-11-01 00:00 .. 11-03 01:45, every 15 min
    make_order_logs(account_b, 100, step_s=1800)
    services.archive_table("orderlog", before=BEFORE, batch_size=64)
    return OrderLog.objects.count()


def test_one_search_spans_the_database_and_the_archive(archived, api_for, risk_manager, account_a):
    assert 0 < archived < 300
    api = api_for(risk_manager)
    every = api.get("/api/v1/orders/log", {"from": "2026-11-01", "to": "2026-11-03", "limit": 1000}).json()
    assert every["count"] == 300 and len(every["results"]) == 300
    times = [(r["created_at"], r["id"]) for r in every["results"]]
    assert times == sorted(times, reverse=True)
    assert len({r["id"] for r in every["results"]}) == 300

    # A page crossing from hot rows into archived ones, with filters.
    page = api.get(
        "/api/v1/orders/log",
        {
            "account": account_a.pk,
            "from": "2026-11-01",
            "to": "2026-11-03",
            "decision": "denied",
            "limit": 10,
            "offset": 5,
        },
    ).json()
    assert page["count"] == 40
    assert all(r["decision"] == "denied" and r["account_id"] == account_a.pk for r in page["results"])
    assert page["results"][0]["price"].startswith("65")
    assert page["results"][0]["reason_codes"] == ["MAX_LEVERAGE"]
    assert "token_id" not in page["results"][0]


def test_a_trader_sees_only_their_accounts_rows_archived_or_not(archived, api_for, trader_b, account_a, account_b):
    api = api_for(trader_b)
    mine = api.get("/api/v1/orders/log", {"from": "2026-11-01", "to": "2026-11-03", "limit": 1000}).json()
    assert mine["count"] == 100 and {r["account_id"] for r in mine["results"]} == {account_b.pk}
    assert api.get("/api/v1/orders/log", {"account": account_a.pk}).status_code == 404
    assert api_for(None).get("/api/v1/orders/log").status_code in (401, 403)


def test_bad_ranges_are_400s(db, api_for, risk_manager):
    api = api_for(risk_manager)
    assert api.get("/api/v1/orders/log", {"from": "2026-11-05", "to": "2026-11-01"}).status_code == 400
    assert api.get("/api/v1/orders/log", {"from": "2024-01-01", "to": "2026-11-01"}).status_code == 400
    assert api.get("/api/v1/alerts", {"level": "7"}).status_code == 400


def test_alerts_history_reads_archived_resolved_alerts(tmp_path, settings, api_for, viewer, account_a):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    old = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    for i, level in enumerate([Level.WARNING, Level.CRITICAL, Level.CRITICAL]):
        a = Alert.objects.create(
            account=account_a,
            rule=f"r{i}",
            level=level,
            reason_code="MAX_LEVERAGE",
            status=AlertStatus.RESOLVED,
            resolved_at=old + dt.timedelta(hours=1),
        )
        Alert.objects.filter(pk=a.pk).update(opened_at=old + dt.timedelta(minutes=i))
    services.archive_all(only="alert", before=dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert not Alert.objects.exists()
    body = api_for(viewer).get("/api/v1/alerts", {"from": "2026-03-01", "to": "2026-03-01", "level": 30}).json()
    assert body["count"] == 2 and [r["rule"] for r in body["results"]] == ["r2", "r1"]
    assert "open_key" not in body["results"][0]
