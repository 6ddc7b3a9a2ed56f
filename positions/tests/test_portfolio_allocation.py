"""Issue 18: risk parity, inverse volatility, capital split, notional and leverage caps within the tiers."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np
import pytest

from positions.portfolio.allocation import (
    inverse_volatility_weights,
    notional_caps,
    return_covariance,
    risk_parity_weights,
    split_capital,
    tier_max_leverage,
    unit_var_from_scenarios,
)
from positions.portfolio.errors import BadInput, ZeroVolatility
from positions.portfolio.scenarios import ScenarioSet
from positions.tests.conftest import load_bracket_tables

D = Decimal


def contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return w * (cov @ w) / (w @ cov @ w)


@pytest.mark.parametrize("seed", range(5))
def test_risk_parity_contributions_are_equal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3 + seed * 4
    x = rng.normal(size=(300, n)) @ rng.normal(size=(n, n)) * rng.uniform(0.1, 10, n)
    cov = np.cov(x.T)
    labels = [f"a{i}" for i in range(n)]
    result = risk_parity_weights(cov, labels=labels)
    w = np.array([float(result.weights[lb]) for lb in labels])
    assert sum(result.weights.values()) == 1
    assert (w > 0).all()
    rc = contributions(w, cov)
    assert np.max(np.abs(rc - 1 / n)) < 1e-8  # equal within tolerance
    assert all(abs(result.risk_contributions[lb] - D(1) / n) < D("1e-8") for lb in labels)


def test_risk_parity_by_hand() -> None:
    # Uncorrelated, vols 1 and 2: ERC is inverse volatility, w = (2/3, 1/3); contributions 1/2 each.
    cov = np.diag([1.0, 4.0])
    r = risk_parity_weights(cov, labels=["a", "b"])
    assert abs(r.weights["a"] - D(2) / 3) < D("1e-11")
    assert abs(r.weights["b"] - D(1) / 3) < D("1e-11")
    # Three equal-vol accounts, a and b perfectly correlated, c independent: a and b share c's risk:
    # w_a = w_b = w, w_c = v with w·(2w) = v·v → v = √2·w; w = 1 / (2 + √2).
    cov = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    r = risk_parity_weights(cov, labels=["a", "b", "c"])
    assert float(r.weights["a"]) == pytest.approx(1 / (2 + math.sqrt(2)), abs=1e-9)
    assert float(r.weights["c"]) == pytest.approx(math.sqrt(2) / (2 + math.sqrt(2)), abs=1e-9)
    # Budgets 3:1 on uncorrelated equal vols: w_i² ∝ b_i → w = (√3, 1) / (√3 + 1).
    r = risk_parity_weights(np.eye(2), labels=["a", "b"], budgets=[3, 1])
    assert float(r.weights["a"]) == pytest.approx(math.sqrt(3) / (math.sqrt(3) + 1), abs=1e-9)
    assert float(r.risk_contributions["a"]) == pytest.approx(0.75, abs=1e-9)


def test_inverse_volatility_and_zero_volatility() -> None:
    cov = np.diag([0.04, 0.01, 0.0])  # vols 0.2, 0.1, 0
    r = inverse_volatility_weights(cov, labels=["a", "b", "flat"])
    assert abs(r.weights["a"] - D(1) / 3) < D("1e-11") and abs(r.weights["b"] - D(2) / 3) < D("1e-11")
    assert r.weights["flat"] == 0 and r.flags == {"flat": ("zero_volatility",)}
    rp = risk_parity_weights(cov, labels=["a", "b", "flat"])
    assert rp.weights["flat"] == 0 and rp.flags == {"flat": ("zero_volatility",)}
    assert abs(rp.weights["b"] - D(2) / 3) < D("1e-11")
    with pytest.raises(ZeroVolatility) as err:
        risk_parity_weights(np.zeros((2, 2)), labels=["a", "b"])
    assert err.value.code == "zero_volatility"


def test_capital_split_and_return_covariance() -> None:
    r = inverse_volatility_weights(np.diag([1.0, 1.0, 1.0]), labels=["a", "b", "c"])
    split = split_capital(r, D("1000000"))
    assert sum(split.values()) == D("1000000.00")
    assert sorted(split.values()) == [D("333333.33"), D("333333.33"), D("333333.34")]
    pnl = np.array([[10.0, -20.0], [-10.0, 20.0], [30.0, 0.0]])
    cov = return_covariance(pnl, [D(100), D(200)])
    # returns: a = 0.1, −0.1, 0.3 (mean 0.1333), b = −0.1, 0.1, 0 (mean 0)
    assert cov[0, 0] == pytest.approx(np.var([0.1, -0.1, 0.3], ddof=1))
    assert cov[0, 1] == pytest.approx(np.cov([0.1, -0.1, 0.3], [-0.1, 0.1, 0.0])[0, 1])
    with pytest.raises(BadInput, match="equity"):
        return_covariance(pnl, [D(100), D(0)])


def test_caps_by_hand(bracket_tables) -> None:
    # Equity 1,000,000 at 2 %: budget 20,000; two symbols, half each: 10,000 of one-day VaR.
    # BTC unit VaR 8 %: cap = 10,000 / 0.08 = 125,000 → BTC tier 2 (50k..600k, mmr 0.5 %, 100x);
    # leverage: 1 / (0.08 + 0.005) = 11.76 → 11x (risk binds).
    # ETH unit VaR 0.1 %: cap = 10,000,000 → ETH tier (10M..20M?) its max leverage binds.
    caps = notional_caps(
        equity=D(1_000_000), budget_pct=D(2), unit_var={"BTCUSDT": 0.08, "ETHUSDT": 0.001}, brackets=bracket_tables
    )
    btc = caps["BTCUSDT"]
    assert btc.notional == D("125000.00")
    assert (btc.tier, btc.tier_max_leverage, btc.leverage) == (2, 100, 11)
    assert (btc.binding, btc.leverage_binding) == ("risk_budget", "risk")
    assert btc.var_at_cap == D("10000.00000000")
    eth = caps["ETHUSDT"]
    assert eth.notional == D("10000000.00")
    assert eth.leverage == tier_max_leverage(D("10000000"), bracket_tables["ETHUSDT"])
    assert eth.leverage_binding == "tier"
    flat = notional_caps(equity=D(1000), budget_pct=D(1), unit_var={"BTCUSDT": 0.0}, brackets=bracket_tables)
    assert flat["BTCUSDT"].notional is None and flat["BTCUSDT"].binding == "zero_volatility"
    huge = notional_caps(equity=D(10) ** 12, budget_pct=D(100), unit_var={"BTCUSDT": 0.01}, brackets=bracket_tables)
    last = bracket_tables["BTCUSDT"][-1]
    assert huge["BTCUSDT"].notional == last.cap - D("0.01") and huge["BTCUSDT"].binding == "exchange_max"
    assert huge["BTCUSDT"].leverage == last.max_leverage


def test_suggested_caps_never_breach_tier_limits() -> None:
    tables = load_bracket_tables()
    rng = random.Random(18)
    for _ in range(300):
        symbols = rng.sample(sorted(tables), rng.randint(1, 6))
        unit_var = {s: 10 ** rng.uniform(-3.5, 0) for s in symbols}
        equity = D(str(round(10 ** rng.uniform(2, 10), 2)))
        budget_pct = D(str(round(rng.uniform(0.1, 20), 2)))
        multiple = rng.choice([0.5, 1.0, 2.0, 3.0])
        caps = notional_caps(
            equity=equity, budget_pct=budget_pct, unit_var=unit_var, brackets=tables, survive_multiple=multiple
        )
        budget = equity * budget_pct / 100
        for s, cap in caps.items():
            table = tables[s]
            assert 0 <= cap.notional < table[-1].cap
            allowed = tier_max_leverage(cap.notional, table)
            assert 1 <= cap.leverage <= allowed, (s, cap)
            assert cap.tier_max_leverage == allowed
            assert table[cap.tier - 1].floor <= cap.notional < table[cap.tier - 1].cap
            assert cap.notional * D(format(unit_var[s], ".12f")) <= cap.budget_share * budget + D("0.0001")
            if cap.leverage_binding != "floor":  # an isolated position at the cap, margin N / L, survives
                n, tier = cap.notional, table[cap.tier - 1]  # multiple × its VaR move above maintenance
                assert n / cap.leverage - n * cap.unit_var * D(str(multiple)) >= n * tier.mmr - tier.cum - D("0.01")


def test_tier_max_leverage_on_edges(bracket_tables) -> None:
    btc = bracket_tables["BTCUSDT"]  # 125x below 50,000, 100x from 50,000 ([floor, cap) as margin.py)
    assert tier_max_leverage(D("49999.99"), btc) == 125
    assert tier_max_leverage(D("50000"), btc) == 100
    assert tier_max_leverage(D(10) ** 12, btc) == btc[-1].max_leverage
    with pytest.raises(BadInput):
        tier_max_leverage(D(-1), btc)


def test_unit_var_from_scenarios_by_hand() -> None:
    # 10 scenarios at 90 %: m = 1, the worst. Long worst low −12 %, short worst high +7 % → 0.12.
    lows = np.array([[-0.12], [-0.05]] + [[-0.01]] * 8)
    highs = np.array([[0.0], [0.07]] + [[0.01]] * 8)
    sc = ScenarioSet(names=tuple(map(str, range(10))), symbols=("A",), moves=lows / 2, low=lows, high=highs)
    assert unit_var_from_scenarios(sc, confidence=0.9) == {"A": pytest.approx(0.12)}


def test_allocation_bad_inputs(bracket_tables) -> None:
    with pytest.raises(BadInput, match="symmetric"):
        risk_parity_weights(np.array([[1.0, 0.5], [0.1, 1.0]]), labels=["a", "b"])
    with pytest.raises(BadInput, match="finite"):
        risk_parity_weights(np.array([[np.nan, 0], [0, 1.0]]), labels=["a", "b"])
    with pytest.raises(BadInput, match=r"\[2, 2\]"):
        inverse_volatility_weights(np.eye(3), labels=["a", "b"])
    with pytest.raises(BadInput, match="budgets"):
        risk_parity_weights(np.eye(2), labels=["a", "b"], budgets=[1, -1])
    with pytest.raises(BadInput, match="percentage"):
        notional_caps(equity=D(1), budget_pct=D(150), unit_var={"BTCUSDT": 0.1}, brackets=bracket_tables)
    with pytest.raises(BadInput, match="equity"):
        notional_caps(equity=1000.0, budget_pct=D(2), unit_var={"BTCUSDT": 0.1}, brackets=bracket_tables)
    with pytest.raises(BadInput, match="unit VaR"):
        notional_caps(equity=D(1), budget_pct=D(2), unit_var={"BTCUSDT": float("nan")}, brackets=bracket_tables)
    with pytest.raises(BadInput, match="no brackets"):
        notional_caps(equity=D(1), budget_pct=D(2), unit_var={"NOPEUSDT": 0.1}, brackets=bracket_tables)
    with pytest.raises(BadInput, match="more than 1"):
        notional_caps(
            equity=D(1),
            budget_pct=D(2),
            unit_var={"BTCUSDT": 0.1, "ETHUSDT": 0.1},
            brackets=bracket_tables,
            shares={"BTCUSDT": D("0.6"), "ETHUSDT": D("0.6")},
        )


def test_risk_parity_on_singular_covariances() -> None:
    # 30 scenarios, 60 accounts: the P&L covariance has rank 29; an exact ERC solution still exists here.
    rng = np.random.default_rng(30)
    pnl = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 60)) + rng.normal(size=(30, 60))
    cov = return_covariance(pnl, [D(100)] * 60)
    r = risk_parity_weights(cov, labels=list(range(60)))
    assert sum(r.weights.values()) == 1
    assert max(abs(v - D(1) / 60) for v in r.risk_contributions.values()) < D("1e-8")
    # a and b exactly offset each other: holding both equally has no risk at all, so no exact ERC exists
    # (the objective is unbounded); the solve shrinks Σ towards its diagonal and says so.
    a = rng.normal(size=200)
    pnl = np.column_stack([a, -a, rng.normal(size=200)])
    r = risk_parity_weights(return_covariance(pnl, [D(1)] * 3), labels=["a", "b", "c"])
    assert r.shrinkage > 0 and r.flags == {"a": ("shrunk",), "b": ("shrunk",), "c": ("shrunk",)}
    assert max(abs(v - D(1) / 3) for v in r.risk_contributions.values()) < D("1e-8")  # under the shrunk Σ
