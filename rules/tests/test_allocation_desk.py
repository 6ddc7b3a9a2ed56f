"""Where else the VaR shows: the overview's VaR column, the scheduled report's VaR section; and zero
volatility, which is a message, not a NaN."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alerts.models import Report, ReportPeriod
from alerts.reports import render
from alerts.reports import services as report_services
from rules.allocation import params, services
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env, computed = fx.client_for, fx.desk, fx.gate_env, fx.computed

pytestmark = pytest.mark.django_db


def test_the_overview_has_a_var_column_from_the_cached_result(client_for, risk_manager, computed, desk):
    html = client_for(risk_manager).get("/").content.decode()
    assert "VaR 99 %" in html and 'href="/allocation/"' in html
    a = next(x for x in computed["accounts"] if x["account_id"] == desk["a"].id)
    assert a["var_historical"] == "1500"  # the 20x long loses its whole margin in the tail, and no more
    assert '<td class="num" data-fig="var">1,500.00</td>' in html


def test_the_overview_without_a_result_shows_a_dash_and_computes_nothing(client_for, risk_manager, desk, monkeypatch):
    monkeypatch.setattr(services, "risk_compute", lambda **kw: pytest.fail("the overview must not compute"))
    html = client_for(risk_manager).get("/").content.decode()
    assert '<td class="num" data-fig="var">—</td>' in html


def test_the_report_has_a_var_section(computed, desk):
    start, end = datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)
    figures = report_services.report_figures(accounts=[desk["a"], desk["b"]], start=start, end=end, now=end)
    var = figures["var"]
    assert var["available"] and var["desk"]["var_historical"] == computed["desk"]["var_historical"]
    assert [h["day"] for h in var["history"]] == ["2026-12-07"]
    assert {x["name"] for x in var["liquidations"]} == {"acct-a", "acct-b"}
    report = Report(period=ReportPeriod.DAY, start=start, end=end, language="en", figures=figures)
    html = render.html(report, language="en", standalone=False)
    assert 'data-testid="report-var"' in html and "Value at risk (1 day, 99 %)" in html
    csv = render.csv_text(report)
    assert ",desk,var_historical," in csv and ",acct-a,var_historical,1500.00," in csv
    one = report_services.report_figures(accounts=[desk["a"]], start=start, end=end, now=end)["var"]
    assert one["desk"] is None and [a["name"] for a in one["accounts"]] == ["acct-a"]


def test_zero_volatility_is_said_not_divided_by(desk, client_for, api_for, risk_manager):
    closes = fx.synthetic_closes(daily_vol={"BTCUSDT": 0.04, "ETHUSDT": 0.0})
    result = services.risk_refresh(now=fx.AS_OF, closes=closes)
    assert result["available"]
    assert [p["symbol"] for p in result["problems"] if p["code"] == "zero_volatility"] == ["ETHUSDT"]
    suggestion = services.allocation_suggest(result=result, params=params.defaults())
    eth = next(r for r in suggestion["limits"] if r["symbol"] == "ETHUSDT")
    assert eth["notional_cap"] is None and eth["not_available_code"] == "zero_volatility"
    for payload in (result, suggestion, api_for(risk_manager).get("/api/v1/allocation").json()):
        text = json.dumps(payload)
        assert "NaN" not in text and "Infinity" not in text
    html = client_for(risk_manager).get("/allocation/").content.decode()
    assert "zero volatility: the price did not move over the history" in html
