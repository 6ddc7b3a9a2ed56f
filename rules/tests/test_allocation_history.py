"""The daily VaR history is a table (VarHistory), not only a cache entry: one row per trading day and
scope (the desk, each account), upserted by the beat job's refresh; "VaR over time" and the report
read it, so a cache flush loses nothing; the cache stays the chart's fast path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache

from alerts.reports import services as report_services
from rules.allocation import selectors, services
from rules.models import VarHistory
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env, computed = fx.client_for, fx.desk, fx.gate_env, fx.computed

pytestmark = pytest.mark.django_db

CLOSE = Decimal("0.000001")  # SQLite keeps a decimal as a double: 15 significant digits


def _near(stored, computed_value) -> bool:
    if stored is None or computed_value is None:
        return stored is None and computed_value is None
    return abs(Decimal(stored) - Decimal(computed_value)) <= CLOSE


def test_a_refresh_writes_one_row_per_day_and_scope_and_a_second_run_overwrites_it(computed, desk):
    rows = {r.scope: r for r in VarHistory.objects.all()}
    a, b = desk["a"], desk["b"]
    assert set(rows) == {"desk", str(a.id), str(b.id)}
    assert {r.day for r in rows.values()} == {date(2026, 12, 7)}
    assert rows["desk"].account_id is None and rows[str(a.id)].account_id == a.id
    assert _near(rows["desk"].var_historical, computed["desk"]["var_historical"])
    assert _near(rows["desk"].es_historical, computed["desk"]["es_historical"])
    assert _near(rows["desk"].var_parametric, computed["desk"]["var_parametric"])
    assert _near(rows["desk"].equity, computed["desk"]["equity"])
    assert rows[str(a.id)].var_historical == Decimal("1500")  # the 20x long loses its margin, no more
    assert rows["desk"].as_of == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    # The same trading day again (a later beat run, other figures): the day's rows are overwritten.
    first_computed = rows["desk"].computed_at
    closes = fx.synthetic_closes(daily_vol={"BTCUSDT": 0.02, "ETHUSDT": 0.03})
    again = services.risk_refresh(now=fx.AS_OF + timedelta(hours=2), closes=closes)
    assert VarHistory.objects.count() == 3
    desk_row = VarHistory.objects.get(scope="desk")
    assert desk_row.computed_at >= first_computed
    assert _near(desk_row.var_historical, again["desk"]["var_historical"])
    assert desk_row.var_historical != rows["desk"].var_historical

    # The next trading day adds its own rows; the series is oldest first.
    services.risk_refresh(now=fx.AS_OF + timedelta(days=1), closes=fx.synthetic_closes())
    assert VarHistory.objects.count() == 6
    assert [p["day"] for p in selectors.var_history_rows()] == ["2026-12-07", "2026-12-08"]
    assert [p["day"] for p in selectors.var_history(account_id=a.id)] == ["2026-12-07", "2026-12-08"]


def test_var_over_time_survives_a_cache_flush(computed, desk, client_for, api_for, risk_manager):
    cache.clear()
    points = selectors.var_history()
    assert [p["day"] for p in points] == ["2026-12-07"]
    assert _near(points[0]["var_historical"], computed["desk"]["var_historical"])
    # the page and the API (the latest result put back as the next beat run would) draw it from the rows
    cache.set(selectors.LATEST_KEY, computed, timeout=None)
    context = client_for(risk_manager).get("/allocation/").context
    assert [h["day"] for h in context["chart_data"]["history"]] == ["2026-12-07"]
    body = api_for(risk_manager).get("/api/v1/risk/var").json()
    assert [h["day"] for h in body["var_history"]] == ["2026-12-07"]
    assert _near(body["var_history"][0]["var_historical"], computed["desk"]["var_historical"])


def test_the_cache_is_the_fast_path_once_the_rows_are_committed(
    desk, settings, django_capture_on_commit_callbacks, django_assert_num_queries
):
    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    with django_capture_on_commit_callbacks(execute=True):
        services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes())
    with django_assert_num_queries(0):
        cached = selectors.var_history()
    assert cached == selectors.var_history_rows() and [p["day"] for p in cached] == ["2026-12-07"]


def test_an_account_without_figures_gets_a_row_saying_why(desk, settings):
    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    closes = fx.synthetic_closes(days=3)  # too little history for anyone
    services.risk_refresh(now=fx.AS_OF, closes=closes)
    row = VarHistory.objects.get(scope=str(desk["a"].id))
    assert row.var_historical is None and "at least 20 are needed" in row.not_available
    assert VarHistory.objects.get(scope="desk").var_historical is None


def test_the_points_the_cache_held_before_the_table_are_adopted_once(desk, settings):
    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    a = desk["a"]
    cache.set(
        selectors.LEGACY_HISTORY_KEY,
        [
            {
                "day": "2026-12-05",
                "as_of": "2026-12-05T12:00:00+00:00",
                "var_historical": "812.5",
                "es_historical": "900",
                "var_parametric": "799.25",
                "equity": "11760",
                "accounts": {str(a.id): "700", "999999": "1"},  # an account deleted since: left out
            }
        ],
        timeout=None,
    )
    services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes())
    assert [p["day"] for p in selectors.var_history_rows()] == ["2026-12-05", "2026-12-07"]
    old = selectors.var_history_rows()[0]
    assert old["var_historical"] == "812.5" and old["var_parametric"] == "799.25"
    assert [(p["day"], p["var_historical"]) for p in selectors.var_history(account_id=a.id)][0] == (
        "2026-12-05",
        "700",
    )
    assert not VarHistory.objects.filter(scope="999999").exists()
    # adopted once: a legacy entry changed later is not read again
    cache.set(selectors.LEGACY_HISTORY_KEY, [{"day": "2026-12-01", "var_historical": "1"}], timeout=None)
    services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes())
    assert not VarHistory.objects.filter(day=date(2026, 12, 1)).exists()


def test_the_report_reads_an_accounts_points_from_the_rows(computed, desk):
    cache.clear()
    cache.set(selectors.LATEST_KEY, computed, timeout=None)
    start, end = datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)
    one = report_services.report_figures(accounts=[desk["a"]], start=start, end=end, now=end)["var"]
    assert one["history"] == [{"day": "2026-12-07", "var": "1500", "es": one["history"][0]["es"]}]
    both = report_services.report_figures(accounts=[desk["a"], desk["b"]], start=start, end=end, now=end)["var"]
    assert [h["day"] for h in both["history"]] == ["2026-12-07"]
    later = report_services.report_figures(
        accounts=[desk["a"]], start=end, end=end + timedelta(days=1), now=end + timedelta(days=1)
    )["var"]
    assert later["history"] == []


def test_the_admin_lists_the_rows_read_only(computed, admin_client):
    client = admin_client
    assert client.get("/admin/rules/varhistory/").status_code == 200
    assert client.get("/admin/rules/varhistory/add/").status_code == 403
    row = VarHistory.objects.get(scope="desk")
    page = client.get(f"/admin/rules/varhistory/{row.pk}/change/")
    assert page.status_code == 200 and b'name="var_historical"' not in page.content


def test_a_failed_history_write_does_not_cost_the_figures(desk, settings, monkeypatch, caplog):
    from django.db import OperationalError

    settings.ALLOCATION_MIN_HISTORY_DAYS = 20

    def deadlock(rows):
        raise OperationalError("Deadlock found when trying to get lock")

    monkeypatch.setattr(services, "_upsert_history", deadlock)
    result = services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes())
    assert result["available"] and selectors.latest_result()["desk"] == result["desk"]
    assert not VarHistory.objects.exists() and "history rows were not written" in caplog.text
