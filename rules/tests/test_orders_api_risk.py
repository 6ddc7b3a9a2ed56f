"""GET /api/v1/accounts/{id}/risk: the live figures and how fresh they are."""

from __future__ import annotations

from decimal import Decimal as D

from marketdata import live
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module


def url(account_id: int) -> str:
    return f"/api/v1/accounts/{account_id}/risk"


def test_it_shows_the_figures_and_their_age(api_for, trader_a, account_a, gate_env):
    publish(account_a.id, positions=[long_btc()], at_ms=live.now_ms() - 1500)
    body = api_for(trader_a).get(url(account_a.id)).json()
    assert body["stale"] is False and body["stale_reasons"] == []
    assert D("1.4") <= D(body["age_s"]) < D("5") and body["stale_after_s"] == "5"
    assert body["figures"]["gross_exposure"] == "25000.00000000"
    assert body["positions"][0]["symbol"] == "BTCUSDT" and body["trading_state"] == "ACTIVE"


def test_it_says_why_the_figures_are_stale(api_for, trader_a, account_a, gate_env):
    publish(account_a.id, positions=[long_btc()], at_ms=live.now_ms() - 60_000, user_connected=False)
    body = api_for(trader_a).get(url(account_a.id)).json()
    assert body["stale"] is True
    assert body["stale_reasons"] == ["FEED_STALE", "ACCOUNT_STATE_STALE"]
    assert body["user_stream_connected"] is False and D(body["feed"]["age_s"]) >= 60


def test_no_live_state_is_stale_and_missing(api_for, trader_a, account_a, gate_env):
    body = api_for(trader_a).get(url(account_a.id)).json()
    assert body["stale"] is True and "ACCOUNT_STATE_MISSING" in body["stale_reasons"]
    assert body["figures"] is None and body["age_s"] is None


def test_access_to_risk(api_for, trader_a, viewer, outsider, account_a, account_b, gate_env):
    assert api_for(trader_a).get(url(account_b.id)).status_code == 404
    assert api_for(viewer).get(url(account_b.id)).status_code == 200
    assert api_for(outsider).get(url(account_a.id)).status_code == 403
    assert api_for(None).get(url(account_a.id)).status_code == 401
