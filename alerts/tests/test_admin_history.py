"""The admin's history search (issue 16: "an order-log and alert search for any date range, in the
admin or the API"): hot rows and archived rows in one result, each marked with where it came from;
filters; page bounds; bad input is a form error (400), never a 500; staff only, accounts per
accounts/access.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertStatus, Level
from positions.archive import services
from positions.archive.store import DirectoryStore
from positions.models import ArchiveBatch, OrderLog
from positions.tests.archive_fixtures import make_order_logs

ORDERS = "/admin/positions/orderlog/history/"
ALERTS = "/admin/alerts/alert/history/"
DAY1 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path, settings):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    return DirectoryStore(tmp_path / "archive")


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def rm(risk_manager):
    return client_for(risk_manager)


@pytest.fixture
def order_days(account_a, account_b, store):
    """Day 1: 60 rows of account_a, archived. Day 2: 35 rows of account_a and 10 of account_b, hot."""
    make_order_logs(account_a, 60, start=DAY1, step_s=60)
    services.archive_table("orderlog", before=DAY2, batch_size=25, store=store)
    assert ArchiveBatch.objects.filter(table="orderlog").count() == 3 and OrderLog.objects.count() == 0
    make_order_logs(account_a, 35, start=DAY2, step_s=60)
    make_order_logs(account_b, 10, start=DAY2 + dt.timedelta(hours=2), step_s=60)


def page(client, url, **params):
    return client.get(url, params)


def test_hot_and_archived_rows_are_one_result_newest_first_each_marked(rm, order_days):
    r = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-02")
    assert r.status_code == 200
    ctx = r.context
    assert ctx["count"] == 105 and ctx["pages"] == 3 and ctx["page"] == 1
    rows = ctx["rows"]
    # Newest first: day 2's 45 hot rows, then the last 5 of day 1 from the archive.
    assert [row["source"] for row in rows] == ["hot"] * 45 + ["archive"] * 5
    assert [row["cells"][0] for row in rows] == sorted((row["cells"][0] for row in rows), reverse=True)
    html = r.content.decode()
    assert "database" in html and "archive" in html
    assert "65059.12345678" in html  # the archive's last row's price (all 12 places on MariaDB)
    hot = next(row for row in rows if row["source"] == "hot")
    assert hot["url"] == f"/admin/positions/orderlog/{hot['id']}/change/"
    assert all(row["url"] is None for row in rows if row["source"] == "archive")


def test_filters_account_decision_symbol(rm, order_days, account_a, account_b):
    r = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-02", account=account_b.pk)
    assert r.context["count"] == 10 and {row["cells"][1] for row in r.context["rows"]} == {"acct-b"}

    # make_order_logs: every 5th row denied, odd rows BTCUSDT. Day 1 archived 60, day 2 hot 35 (account_a).
    r = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-02", account=account_a.pk, decision="denied")
    assert r.context["count"] == 12 + 7
    assert {row["source"] for row in r.context["rows"]} == {"hot", "archive"}
    r = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-01", symbol="btcusdt")
    assert r.context["count"] == 30 and {row["cells"][3] for row in r.context["rows"]} == {"BTCUSDT"}
    assert {row["source"] for row in r.context["rows"]} == {"archive"}


def test_page_bounds(rm, order_days):
    last = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-02", page=3)
    assert last.context["page"] == 3 and len(last.context["rows"]) == 5
    assert last.context["next_url"] is None and "page=2" in last.context["prev_url"]
    beyond = page(rm, ORDERS, day_from="2026-11-01", day_to="2026-11-02", page=999)
    assert beyond.status_code == 200 and beyond.context["page"] == 3
    assert [r["id"] for r in beyond.context["rows"]] == [r["id"] for r in last.context["rows"]]
    for bad in ("0", "-1", "x", "9999999"):
        r = page(rm, ORDERS, page=bad)
        assert r.status_code == 400, bad
    empty = page(rm, ORDERS, day_from="2020-01-01", day_to="2020-01-01", page=5)
    assert empty.status_code == 200 and empty.context["count"] == 0 and empty.context["page"] == 1
    assert "Nothing matches." in empty.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"day_from": "2026-13-01"}, "Enter a valid date."),
        ({"day_to": "yesterday"}, "Enter a valid date."),
        ({"day_from": "2026-11-03", "day_to": "2026-11-01"}, "The first day is after the last."),
        ({"day_from": "2025-01-01", "day_to": "2026-11-01"}, "At most 366 days at a time."),
        ({"account": "abc"}, "Enter a whole number."),
        ({"decision": "maybe"}, "Select a valid choice."),
    ],
)
def test_bad_input_is_a_clear_form_error_not_a_500(rm, params, message):
    r = page(rm, ORDERS, **params)
    assert r.status_code == 400
    assert message in r.content.decode()


def test_alerts_hot_and_archived_with_level_and_code(rm, account_a, store):
    old = timezone.make_aware(dt.datetime(2026, 5, 2, 10), dt.UTC)

    def alert(level, code, opened, status=AlertStatus.OPEN):
        a = Alert.objects.create(
            account=account_a, rule="r", subject="BTCUSDT", level=level, reason_code=code,
            value=Decimal("12.5"), limit=Decimal("10"), status=status,
            resolved_at=opened + dt.timedelta(hours=1) if status == AlertStatus.RESOLVED else None,
        )  # fmt: skip
        Alert.objects.filter(pk=a.pk).update(opened_at=opened)
        return a

    archived = alert(Level.CRITICAL, "MAX_LEVERAGE", old, AlertStatus.RESOLVED)
    alert(Level.WARNING, "MAX_LEVERAGE", old + dt.timedelta(days=1), AlertStatus.RESOLVED)
    services.archive_table("alert", before=dt.datetime(2026, 6, 1, tzinfo=dt.UTC), store=store)
    assert not Alert.objects.filter(pk=archived.pk).exists()
    hot = alert(Level.CRITICAL, "MAX_LEVERAGE", old + dt.timedelta(days=2))
    alert(Level.CRITICAL, "DAILY_LOSS", old + dt.timedelta(days=3))

    r = page(rm, ALERTS, day_from="2026-05-01", day_to="2026-05-31", level=Level.CRITICAL, reason_code="MAX_LEVERAGE")
    assert r.status_code == 200
    assert [(row["id"], row["source"]) for row in r.context["rows"]] == [(hot.pk, "hot"), (archived.pk, "archive")]
    assert r.context["rows"][1]["cells"][7] == "12.5"
    assert page(rm, ALERTS, day_from="2026-05-01", day_to="2026-05-31").context["count"] == 4
    assert page(rm, ALERTS, level="99").status_code == 400


def test_staff_only_and_accounts_per_access(
    client, order_days, viewer, trader_a, outsider, account_a, account_b, risk_manager
):
    for url in (ORDERS, ALERTS):
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
        # Traders and users with no role have no admin: sent to the admin's login, never shown rows.
        for user in (trader_a, outsider):
            refused = client_for(user).get(url)
            assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")
        assert client_for(viewer).get(url).status_code == 200

    # A viewer sees every account, as in the API.
    r = client_for(viewer).get(ORDERS, {"day_from": "2026-11-01", "day_to": "2026-11-02"})
    assert r.context["count"] == 105

    # Made staff by hand, a trader still sees only their own accounts; another's answers 404.
    trader_a.is_staff = True
    trader_a.save(update_fields=["is_staff"])
    trader_a.user_permissions.add(Permission.objects.get(codename="view_orderlog"))
    mine = client_for(trader_a)
    r = mine.get(ORDERS, {"day_from": "2026-11-01", "day_to": "2026-11-02"})
    assert r.status_code == 200 and r.context["count"] == 95
    assert {row["cells"][1] for row in r.context["rows"]} == {"acct-a"}
    assert mine.get(ORDERS, {"account": account_b.pk}).status_code == 404
    # ... and without the admin's view permission on alerts, the alert history is refused.
    assert mine.get(ALERTS).status_code == 403


def test_the_changelists_link_to_the_history(rm, db):
    assert ORDERS in rm.get("/admin/positions/orderlog/").content.decode()
    assert ALERTS in rm.get("/admin/alerts/alert/").content.decode()
