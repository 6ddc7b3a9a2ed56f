"""/reports/ and /api/v1/reports/: who sees which report, downloads, and "generate now"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.models import Report, ReportPeriod
from alerts.reports import services

START = datetime(2026, 12, 6, tzinfo=UTC)
END = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture
def reports(account_a, account_b, settings):
    settings.TRADING_DAY_TZ = "UTC"
    make = services.report_generate
    return {
        "desk": make(period=ReportPeriod.DAY, start=START, end=END, accounts=[account_a, account_b]),
        "a": make(period=ReportPeriod.DAY, start=START, end=END, accounts=[account_a]),
        "b": make(period=ReportPeriod.DAY, start=START, end=END, accounts=[account_b]),
    }


def test_a_trader_sees_only_the_reports_of_their_own_accounts(client, trader_a, reports):
    client.force_login(trader_a)
    page = client.get("/reports/")
    assert page.status_code == 200
    shown = {int(x) for x in page.content.decode().split('data-report="')[1:] for x in [x.split('"')[0]]}
    assert shown == {reports["a"].id}
    assert client.get(f"/reports/{reports['a'].id}/").status_code == 200
    assert client.get(f"/reports/{reports['desk'].id}/").status_code == 404
    assert client.get(f"/reports/{reports['b'].id}/pdf").status_code == 404


def test_a_risk_manager_sees_every_report_and_downloads_each_format(client, risk_manager, reports):
    client.force_login(risk_manager)
    page = client.get("/reports/")
    assert all(f'data-report="{r.id}"' in page.content.decode() for r in reports.values())
    desk = reports["desk"].id
    assert client.get(f"/reports/{desk}/pdf").content.startswith(b"%PDF")
    assert client.get(f"/reports/{desk}/csv").content.startswith(b"period_start,period_end,account,metric")
    assert b"data:image/png;base64," in client.get(f"/reports/{desk}/html").content
    assert client.get(f"/reports/{desk}/xls").status_code == 404


def test_an_outsider_is_refused(client, outsider, reports):
    client.force_login(outsider)
    assert client.get("/reports/").status_code == 403
    assert client.get(f"/reports/{reports['desk'].id}/").status_code == 403


def test_a_risk_manager_generates_a_report_for_any_date_range(client, risk_manager, account_a, settings):
    settings.TRADING_DAY_TZ = "UTC"
    client.force_login(risk_manager)
    response = client.post("/reports/generate", {"from": "2026-11-01", "to": "2026-11-30", "language": "zh-hans"})
    report = Report.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/reports/{report.id}/"
    assert (report.start, report.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert report.period == ReportPeriod.CUSTOM and report.language == "zh-hans" and report.created_by == risk_manager


def test_a_trader_cannot_generate_and_a_backwards_range_is_refused(client, trader_a, risk_manager, account_a):
    client.force_login(trader_a)
    assert client.post("/reports/generate", {"from": "2026-11-01", "to": "2026-11-02"}).status_code == 403
    client.force_login(risk_manager)
    response = client.post("/reports/generate", {"from": "2026-11-05", "to": "2026-11-01"})
    assert response.status_code == 302 and "error=range" in response["Location"]
    assert not Report.objects.exists()


def test_the_api_lists_a_traders_reports_and_shows_the_figures(api_for, trader_a, reports):
    api = api_for(trader_a)
    listed = api.get("/api/v1/reports/")
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [reports["a"].id]
    one = api.get(f"/api/v1/reports/{reports['a'].id}/")
    assert one.status_code == 200 and one.json()["figures"]["accounts"][0]["name"] == "acct-a"
    assert api.get(f"/api/v1/reports/{reports['b'].id}/").status_code == 404


def test_the_api_generates_for_risk_managers_only(api_for, risk_manager, trader_a, outsider, account_a, settings):
    settings.TRADING_DAY_TZ = "UTC"
    body = {"date_from": "2026-12-01", "date_to": "2026-12-06", "accounts": [account_a.id]}
    assert api_for(trader_a).post("/api/v1/reports/", body, format="json").status_code == 403
    assert api_for(outsider).get("/api/v1/reports/").status_code == 403
    assert api_for(None).get("/api/v1/reports/").status_code == 401
    made = api_for(risk_manager).post("/api/v1/reports/", body, format="json")
    assert made.status_code == 201 and made.json()["accounts"] == [account_a.id]
    assert made.json()["end"].startswith("2026-12-07T00:00:00")
