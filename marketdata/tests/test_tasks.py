"""The beat jobs against the simulator: reference data refresh and REST reconciliation."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.core.cache import cache

from accounts import services as account_services
from alerts.models import Alert, AlertStatus
from marketdata import live
from marketdata.models import LeverageBracket, Symbol
from marketdata.tasks import refresh_brackets_task, refresh_symbols_task, sync_positions_task
from marketdata.tests.conftest import KEY, SECRET
from positions.models import Position


@pytest.fixture
def wired(sim, settings, db):
    settings.BINANCE_FUTURES_REST_URL = sim.base_url
    settings.BINANCE_FUTURES_WS_URL = sim.ws_url
    account = account_services.account_create(name="acct-1", api_key=KEY, api_secret=SECRET)
    # Row ids are reused after a rolled-back test (SQLite), and the cache is shared: an earlier
    # test's fresh live state under this id would stand in for "the stream's view" here.
    cache.delete(live.ACCOUNT_KEY.format(id=account.id))
    return account


def test_refresh_symbols_loads_the_exchange_filters(wired):
    assert refresh_symbols_task() >= 2
    btc = Symbol.objects.get(name="BTCUSDT")
    assert (btc.tick_size, btc.step_size, btc.min_notional, btc.quantity_precision) == (
        D("0.1"),
        D("0.001"),
        D("100"),
        3,
    )


def test_refresh_brackets_stores_the_default_tables(wired):
    refresh_symbols_task()
    assert refresh_brackets_task() > 0
    first = LeverageBracket.objects.get(symbol__name="BTCUSDT", account__isnull=True, bracket=1)
    assert (first.initial_leverage, first.notional_cap, first.maint_margin_ratio) == (125, D("50000"), D("0.004"))


def test_reconciliation_raises_drift_and_asks_for_a_resync_then_clears(wired, monkeypatch):
    monkeypatch.setattr("marketdata.services.time.sleep", lambda s: None)  # the re-check delay, not the maths
    refresh_symbols_task()
    live.resync_take()
    assert sync_positions_task() == {"checked": 1, "drifted": 1}
    alert = Alert.objects.get(account=wired, rule="position_drift")
    assert alert.reason_code == "POSITION_DRIFT" and alert.status == AlertStatus.OPEN
    assert alert.details["differences"][0]["exchange_qty"] in ("0.5", "0.500")
    assert live.resync_take() == [wired.id]
    Position.objects.create(
        account=wired, symbol=Symbol.objects.get(name="BTCUSDT"), quantity=D("0.5"), entry_price=D("43000")
    )
    assert sync_positions_task() == {"checked": 1, "drifted": 0}
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
