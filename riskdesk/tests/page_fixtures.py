"""Shared set-up for the desk page tests (no tests here): the fixed cast, live state published the
way the stream process publishes it (rules.tests.test_gate_fixtures.publish), and signed-in clients."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.test import Client

from positions.book import BookPosition
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the importing module


def short_eth(qty: str = "4", entry: str = "2600", leverage: int = 10) -> BookPosition:
    return BookPosition(symbol="ETHUSDT", side="BOTH", qty=-D(qty), entry_price=D(entry), leverage=leverage)


@pytest.fixture
def desk(gate_env, account_a, account_b):
    """account_a: long 0.5 BTC at 20x (liquidation ~5 % away at these marks); account_b: short 4 ETH."""
    publish(account_a.id, wallet="1500", positions=[long_btc(qty="0.5", entry="50000", leverage=20)])
    publish(account_b.id, wallet="10000", positions=[short_eth()])
    return {"a": account_a, "b": account_b}


@pytest.fixture
def client_for():
    def make(user=None, *, language: str = "en") -> Client:
        client = Client(HTTP_ACCEPT_LANGUAGE=language)
        if user is not None:
            client.force_login(user)
        return client

    return make
