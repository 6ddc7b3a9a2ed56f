"""One account whose key the exchange refuses (revoked, or a wrong secret) must not stop the
symbol and bracket refresh for every other account: it is logged, named and skipped."""

from __future__ import annotations

import logging

import pytest

from accounts import services as account_services
from marketdata import services
from marketdata.models import LeverageBracket, Symbol
from marketdata.tests.conftest import HEDGE_KEY, HEDGE_SECRET, KEY, SECRET


@pytest.fixture
def exchange(sim, settings, db):
    settings.BINANCE_FUTURES_REST_URL = sim.base_url
    settings.BINANCE_FUTURES_WS_URL = sim.ws_url
    return sim


@pytest.fixture
def revoked(exchange):
    # The lowest id: the account the refresh asked first, whose failure failed the whole refresh.
    return account_services.account_create(name="revoked", api_key=KEY, api_secret="not-" + SECRET)


@pytest.fixture
def good(exchange, revoked):
    return account_services.account_create(name="good", api_key=HEDGE_KEY, api_secret=HEDGE_SECRET)


def test_symbols_refresh_with_the_first_account_revoked(revoked, good, caplog):
    with caplog.at_level(logging.WARNING, logger="marketdata.services"):
        assert services.symbols_sync() >= 2
    assert Symbol.objects.filter(name="BTCUSDT").exists()


def test_symbols_refresh_when_every_account_is_revoked(revoked):
    # exchangeInfo is public: no account's key is needed to read it.
    assert services.symbols_sync() >= 2


def test_brackets_refresh_skips_the_revoked_account_and_names_it(revoked, good, caplog):
    services.symbols_sync()
    with caplog.at_level(logging.WARNING, logger="marketdata.services"):
        assert services.brackets_sync() > 0
    assert LeverageBracket.objects.filter(symbol__name="BTCUSDT", account__isnull=True).exists()
    skipped = [r for r in caplog.records if r.name == "marketdata.services" and "revoked" in r.getMessage()]
    assert skipped, [r.getMessage() for r in caplog.records]
    assert not LeverageBracket.objects.filter(account=revoked).exists()


def test_brackets_refresh_with_every_account_revoked_raises_for_a_retry(revoked):
    from marketdata.exchange import ExchangeError

    services.symbols_sync()
    with pytest.raises(ExchangeError):
        services.brackets_sync()
