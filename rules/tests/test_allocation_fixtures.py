"""Shared set-up for the allocation tests (no tests here): the page fixtures' desk (account_a long
0.5 BTC at 20x, account_b short 4 ETH, live state published as the stream process does) and
1-minute closes of our own making, as marketdata.bars would give them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pytest

from positions.book import BookPosition
from riskdesk.tests import page_fixtures as pf
from rules.tests.test_gate_fixtures import long_btc, publish

client_for, gate_env = pf.client_for, pf.gate_env

MINUTE_MS = 60_000
AS_OF = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def synthetic_closes(
    *,
    as_of: datetime = AS_OF,
    days: float = 30,
    start_prices: dict[str, float] | None = None,
    daily_vol: dict[str, float] | None = None,
    seed: int = 7,
) -> dict[str, tuple[list[int], list[float]]]:
    """A seeded random walk of 1-minute closes per symbol ending the minute before `as_of`,
    correlated (BTC and ETH share a factor), ending at the page fixtures' marks."""
    start_prices = start_prices or {"BTCUSDT": 50_000.0, "ETHUSDT": 2_500.0}
    daily_vol = daily_vol or {"BTCUSDT": 0.04, "ETHUSDT": 0.05}
    n = int(days * 1440)
    end_ms = int((as_of - timedelta(minutes=1)).timestamp() * 1000)
    times = [end_ms - (n - 1 - i) * MINUTE_MS for i in range(n)]
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(n)
    out = {}
    for symbol, price in start_prices.items():
        sigma = daily_vol.get(symbol, 0.04) / np.sqrt(1440)
        own = rng.standard_normal(n)
        steps = sigma * (0.8 * common + 0.6 * own) if sigma > 0 else np.zeros(n)
        path = np.exp(np.cumsum(steps))
        closes = price * path / path[-1]  # ends at the fixture's mark
        out[symbol] = (times, [float(c) for c in closes])
    return out


@pytest.fixture
def desk(gate_env, account_a, account_b):
    """account_a: long 0.5 BTC at 20x, cross (liquidated ~5 % lower); account_b: short 4 ETH cross
    and a long 0.05 BTC isolated at 10x (its own 260 USDT margin)."""
    publish(account_a.id, wallet="1500", positions=[long_btc(qty="0.5", entry="50000", leverage=20)])
    isolated = BookPosition(
        symbol="BTCUSDT",
        side="BOTH",
        qty=D("0.05"),
        entry_price=D("50000"),
        leverage=10,
        margin_type="isolated",
        isolated_wallet=D("260"),
    )
    publish(account_b.id, wallet="10260", positions=[pf.short_eth(), isolated])
    return {"a": account_a, "b": account_b}


@pytest.fixture
def computed(desk, settings):
    """The desk's result computed on synthetic history and cached, as the beat job does."""
    from rules.allocation import services

    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    return services.risk_refresh(now=AS_OF, closes=synthetic_closes())
