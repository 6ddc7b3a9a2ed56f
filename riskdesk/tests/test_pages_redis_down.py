"""Desk pages with Redis down (issue 14, item 1): every page answers 200 with a "live state
unavailable" banner and the figures the database holds (Position rows, the last snapshot), and
the live figures come back by themselves when Redis does."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.utils import timezone

from marketdata.models import Symbol
from positions.models import AccountSnapshot, Position
from riskdesk.tests.page_fixtures import client_for  # noqa: F401  (a fixture)
from riskdesk.tests.private_redis import redis_outage  # noqa: F401  (a fixture)
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

BANNER = "Live state unavailable: the desk cannot reach Redis."
# Full pages carry the status strip, and so the banner; the partials they refresh answer with the
# database's figures, marked stale (the strip is refreshed beside them).
PAGES = ["/", "/_status", "/positions/", "/positions/what-if/", "/accounts/", "/alerts/", "/rules/"]
PARTIALS = ["/_overview", "/positions/_table", "/accounts/_table", "/alerts/_table"]


@pytest.fixture
def saved(redis_outage, gate_env, account_a):  # noqa: F811
    """account_a as the database last saw it: one BTC position and a snapshot."""
    Position.objects.create(
        account=account_a,
        symbol=Symbol.objects.get(name="BTCUSDT"),
        quantity=D("0.2"),
        entry_price=D("40000"),
        mark_price=D("41000"),
        liquidation_price=D("30000"),
    )
    AccountSnapshot.objects.create(
        account=account_a,
        time=timezone.now() - timezone.timedelta(minutes=3),
        wallet_balance=D("1000"),
        margin_balance=D("1234.5"),
        maint_margin=D("10"),
        unrealized_pnl=D("234.5"),
        margin_ratio=D("0.0081"),
    )
    publish(account_a.id, wallet="1500", positions=[long_btc(qty="0.5", entry="50000")])
    return redis_outage


@pytest.mark.parametrize("path", PAGES)
def test_every_desk_page_answers_with_a_banner_when_redis_is_down(client_for, risk_manager, saved, path):  # noqa: F811
    saved.stop()
    response = client_for(risk_manager).get(path)
    assert response.status_code == 200, path
    assert BANNER in response.content.decode(), path


@pytest.mark.parametrize("path", PARTIALS)
def test_every_live_partial_answers_when_redis_is_down(client_for, risk_manager, saved, path):  # noqa: F811
    saved.stop()
    response = client_for(risk_manager).get(path)
    assert response.status_code == 200, path


def test_the_figures_come_from_the_database_then_live_again(client_for, risk_manager, trader_a, saved):  # noqa: F811
    client = client_for(risk_manager)
    assert BANNER not in client.get("/positions/").content.decode()
    saved.stop()
    html = client.get("/positions/").content.decode()
    assert BANNER in html and "41,000.0<" in html  # the Position row's mark
    assert "1,234.50" in client.get("/").content.decode()  # the snapshot's margin balance
    assert client_for(trader_a).get("/positions/").status_code == 200
    saved.start()
    publish(saved_account_id(saved, trader_a), wallet="1500", positions=[long_btc(qty="0.5", entry="50000")])
    html = client.get("/positions/").content.decode()
    assert BANNER not in html and "NOT LIVE" not in html


def saved_account_id(_server, trader) -> int:
    return trader.exchange_accounts.get().id
