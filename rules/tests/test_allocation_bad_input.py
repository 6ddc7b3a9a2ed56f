"""Bad input never becomes a NaN or a 500: too little history, a symbol without bars, zero
volatility, bad adviser parameters. Each has a clear message on the page and in the API."""

from __future__ import annotations

import json

import pytest

from rules.allocation import services
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env = fx.client_for, fx.desk, fx.gate_env

pytestmark = pytest.mark.django_db


def _no_nan(payload) -> None:
    text = json.dumps(payload)
    assert "NaN" not in text and "Infinity" not in text


def test_a_symbol_without_bars_is_named_on_the_page_and_in_the_api(desk, client_for, api_for, risk_manager):
    closes = fx.synthetic_closes(start_prices={"BTCUSDT": 50_000.0})  # no ETH bars at all
    result = services.risk_refresh(now=fx.AS_OF, closes=closes)
    problems = {p["symbol"]: p for p in result["problems"]}
    assert problems["ETHUSDT"]["code"] == "no_bars"
    assert "ETHUSDT has no 1-minute bars" in problems["ETHUSDT"]["reason"]
    b = next(a for a in result["accounts"] if a["account_id"] == desk["b"].id)
    assert b["var_historical"] is None and b["not_available_code"] == "no_bars"

    api = api_for(risk_manager).get("/api/v1/risk/var")
    assert api.status_code == 200
    _no_nan(api.json())
    rows = {a["account_id"]: a for a in api.json()["accounts"]}
    assert rows[desk["b"].id]["not_available"].startswith("ETHUSDT has no 1-minute bars")

    html = client_for(risk_manager).get("/allocation/").content.decode()
    assert "a symbol held has no 1-minute bars before the cut-off" in html and "ETHUSDT" in html


def test_too_little_history_says_how_much_there_is(desk, client_for, api_for, risk_manager, settings):
    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    result = services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes(days=3))
    assert result["available"] is False
    assert result["not_available_code"] == "insufficient_history"
    assert "BTCUSDT has 3.0 days of 1-minute bars; at least 20 are needed" in result["not_available"]
    body = api_for(risk_manager).get("/api/v1/risk/var").json()
    _no_nan(body)
    assert body["available"] is False and body["desk"] is None and "at least 20" in body["not_available"]
    page = client_for(risk_manager).get("/allocation/")
    assert page.status_code == 200
    assert "too little price history" in page.content.decode()
    suggestion = api_for(risk_manager).get("/api/v1/allocation").json()
    assert suggestion["not_available_code"] == "insufficient_history" and suggestion["accounts"] == []


def test_bad_adviser_parameters_are_a_400_with_the_field_named(desk, client_for, api_for, risk_manager):
    services.risk_refresh(now=fx.AS_OF, closes=fx.synthetic_closes(days=3))
    answer = api_for(risk_manager).get("/api/v1/allocation", {"desk_budget_pct": "nan", "capital": "-5"})
    assert answer.status_code == 400
    assert set(answer.json()) == {"desk_budget_pct", "capital"}
    answer = api_for(risk_manager).get("/api/v1/allocation", {"method": "martingale"})
    assert answer.status_code == 400 and "method" in answer.json()
    page = client_for(risk_manager).get("/allocation/", {"account_budget_pct": "250"})
    assert page.status_code == 400
    assert "at most 100 percent" in page.content.decode()


def test_a_flat_desk_risks_nothing_and_the_adviser_says_why(gate_env, account_a, account_b, api_for, risk_manager):
    from rules.tests.test_gate_fixtures import publish

    publish(account_a.id, wallet="1000")
    publish(account_b.id, wallet="2000")
    result = services.risk_refresh(now=fx.AS_OF, closes={})
    assert result["available"] and result["desk"]["var_historical"] == "0" and result["desk"]["equity"] == "3000"
    assert {a["var_historical"] for a in result["accounts"]} == {"0"}
    assert services._same_desk(result)  # so the page does not recompute it on every request
    body = api_for(risk_manager).get("/api/v1/allocation").json()
    assert body["not_available_code"] == "no_positions" and body["limits"] == []
