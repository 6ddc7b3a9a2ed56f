"""Issue 18: desk VaR/ES, components, margin mechanics. Figures computed by hand in the comments."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np
import pytest

from positions import figures
from positions.figures import PositionInput
from positions.margin import Bracket, liquidation_price, maintenance_margin
from positions.portfolio.errors import BadInput, NoBars, PortfolioError
from positions.portfolio.scenarios import ScenarioSet, crash_2021_05_19
from positions.portfolio.var import (
    TOLERANCE,
    desk_from_inputs,
    desk_var,
    isolated_liquidation_prices,
    parametric_var,
    tail_size,
)
from positions.portfolio.volatility import EwmaEstimate
from positions.tests.conftest import load_bracket_tables

D = Decimal
# Two tiers: 1 % up to 1M (50x), 2 % beyond (20x); cum = 1,000,000 × (2 % − 1 %) = 10,000.
TABLE = (
    Bracket(floor=D(0), cap=D(1_000_000), mmr=D("0.01"), cum=D(0), max_leverage=50),
    Bracket(floor=D(1_000_000), cap=D(10_000_000), mmr=D("0.02"), cum=D(10_000), max_leverage=20),
)
BRACKETS = {"AUSDT": TABLE, "BUSDT": TABLE}


def pos(symbol: str, qty: str, *, mark: str = "100", entry: str | None = None, iso: str | None = None, side="BOTH"):
    return PositionInput(
        symbol=symbol,
        side=side,
        qty=D(qty),
        entry_price=D(entry or mark),
        mark_price=D(mark),
        leverage=10,
        margin_type="isolated" if iso is not None else "cross",
        isolated_wallet=D(iso) if iso is not None else D(0),
    )


def scenario_set(moves: list[list[float]], symbols=("AUSDT", "BUSDT"), low=None, high=None) -> ScenarioSet:
    m = np.array(moves, dtype=float)
    return ScenarioSet(
        names=tuple(f"s{k}" for k in range(len(moves))),
        symbols=tuple(symbols),
        moves=m,
        low=np.minimum(m, 0.0) if low is None else np.array(low, dtype=float),
        high=np.maximum(m, 0.0) if high is None else np.array(high, dtype=float),
    )


# --------------------------------------------------------------------------- hand-computed VaR / ES


# Account X: cross long 10 AUSDT at 100 (exposure +1,000); account Y: cross short 50 BUSDT at 10 (−500).
# Wallets of 10,000 keep both far from maintenance (MM ≈ 1 % of ≤ 1,300 notional).
HAND_MOVES = [
    [-0.10, 0.20],  # s0: X −100, Y −100 → −200
    [0.05, -0.10],  # s1: X +50,  Y +50  → +100
    [-0.20, -0.02],  # s2: X −200, Y +10 → −190
    [0.10, 0.10],  # s3: X +100, Y −50  → +50
    [-0.05, 0.32],  # s4: X −50,  Y −160 → −210
    [0.02, 0.04],  # s5: X +20,  Y −20  → 0
    [-0.01, -0.01],  # s6: X −10, Y +5   → −5
    [0.03, -0.05],  # s7: X +30,  Y +25  → +55
    [-0.13, 0.10],  # s8: X −130, Y −50 → −180
    [0.0, 0.02],  # s9: X 0,      Y −10  → −10
]


def hand_desk():
    positions = {"X": [pos("AUSDT", "10")], "Y": [pos("BUSDT", "-50", mark="10")]}
    wallets = {"X": {"USDT": D(10_000)}, "Y": {"USDT": D(10_000)}}
    return desk_from_inputs(positions=positions, wallets=wallets, brackets=BRACKETS)


def test_var_es_and_components_by_hand() -> None:
    # 10 scenarios at 80 %: m = ceil(10 × 0.2) = 2 tail scenarios. Desk P&L sorted: s4 −210, s0 −200, s2 −190...
    # VaR = 2nd worst loss = 200 (s0); ES = (210 + 200) / 2 = 205.
    result = desk_var(hand_desk(), scenario_set(HAND_MOVES), confidence=0.8)
    assert tail_size(10, 0.8) == 2
    assert result.var_scenario == 0
    assert result.tail == (4, 0)
    assert result.desk.var == D("200")
    assert result.desk.es == D("205")
    # Components: VaR in s0: X 100, Y 100. ES: X (50 + 100)/2 = 75, Y (160 + 100)/2 = 130.
    assert result.accounts["X"].component_var == D(100)
    assert result.accounts["Y"].component_var == D(100)
    assert result.accounts["X"].component_es == D(75)
    assert result.accounts["Y"].component_es == D(130)
    assert result.symbols["AUSDT"].component_var == D(100)
    assert result.symbols["BUSDT"].component_es == D(130)
    # Stand-alone. X: worst −200 (s2), −130 (s8) → VaR 130, ES 165. Y: −160 (s4), −100 (s0) → VaR 100, ES 130.
    assert (result.accounts["X"].var, result.accounts["X"].es) == (D(130), D(165))
    assert (result.accounts["Y"].var, result.accounts["Y"].es) == (D(100), D(130))
    assert result.desk_pnl()[4] == D(-210)
    assert result.account_pnl("Y")[4] == D(-160)
    assert result.liquidations(4) == []
    assert result.accounts["X"].max_loss == D(10_000)


def test_components_add_up_exactly() -> None:
    result = desk_var(random_desk(7)[0], random_scenarios(7), confidence=0.95)
    for comps, total in (
        ([a.component_var for a in result.accounts.values()], result.desk.var),
        ([a.component_es for a in result.accounts.values()], result.desk.es),
        ([s.component_var for s in result.symbols.values()], result.desk.var),
        ([s.component_es for s in result.symbols.values()], result.desk.es),
    ):
        assert sum(comps, D(0)) == total
    assert result.desk.es >= result.desk.var


# --------------------------------------------------------------------------- margin mechanics


def test_isolated_liquidation_price_matches_margin_module() -> None:
    # long 10 at 100, isolated wallet 100: LP = (1,000 − 100) / (10 × 0.99) = 90.90909...
    # short 10 at 100, wallet 100: LP = (100 + 1,000) / (10 × 1.01) = 108.910891...
    positions = {"L": [pos("AUSDT", "10", iso="100")], "S": [pos("AUSDT", "-10", iso="100")]}
    desk = desk_from_inputs(positions=positions, wallets={}, brackets=BRACKETS)
    lp = isolated_liquidation_prices(desk, np.arange(2))
    assert lp[0] == pytest.approx(900 / 9.9, rel=1e-12)
    assert lp[1] == pytest.approx(1100 / 10.1, rel=1e-12)
    for i, (account, rows) in enumerate(positions.items()):
        exact = liquidation_price(wallet_balance=D(100), brackets=TABLE, qty_both=rows[0].qty, entry_both=D(100))
        assert abs(D(lp[i]) - exact) < D("1e-9"), account


def test_isolated_position_never_loses_more_than_its_margin() -> None:
    # Long 10 AUSDT at 100 with 100 of isolated margin (LP 90.909).
    positions = {"L": [pos("AUSDT", "10", iso="100")], "S": [pos("AUSDT", "-10", iso="100")]}
    desk = desk_from_inputs(positions=positions, wallets={}, brackets=BRACKETS)
    sc = scenario_set(
        [[-0.50, 0.0], [-0.05, 0.0], [-0.05, 0.0], [0.50, 0.0], [0.05, 0.0]],
        low=[[-0.5, 0], [-0.09, 0], [-0.095, 0], [0, 0], [0, 0]],
        high=[[0, 0], [0, 0], [0, 0], [0.5, 0], [0.09, 0]],
    )
    r = desk_var(desk, sc, confidence=0.8)
    long_pnl = r.account_pnl("L")
    short_pnl = r.account_pnl("S")
    assert long_pnl[0] == D(-100)  # −50 % would be −500: capped at the margin (liquidated)
    assert long_pnl[1] == D(-50)  # low 91.0 > 90.909: alive, plain −5 %
    assert long_pnl[2] == D(-100)  # low 90.5 <= 90.909: liquidated along the path although the end is −5 %
    assert short_pnl[3] == D(-100)  # +50 % capped
    assert short_pnl[4] == D(-100)  # ends +5 %, but the path's high 109 >= LP 108.91: liquidated
    assert min(long_pnl + short_pnl) >= D(-100)
    liq = r.liquidations(2)
    assert [(x.account, x.symbol, x.margin_type, x.loss) for x in liq] == [("L", "AUSDT", "isolated", D(100))]
    assert r.liquidated_accounts(3) == ["S"]


def test_short_isolated_liquidated_when_path_high_reaches_its_price() -> None:
    desk = desk_from_inputs(positions={"S": [pos("AUSDT", "-10", iso="100")]}, wallets={}, brackets=BRACKETS)
    # +5 % at the end, but the path touched +9 % (109 >= LP 108.91): the position is gone, −100.
    sc = scenario_set([[0.05, 0.0], [0.05, 0.0]], low=[[0, 0], [0, 0]], high=[[0.09, 0], [0.08, 0]])
    r = desk_var(desk, sc, confidence=0.5)
    assert r.account_pnl("S") == [D(-100), D(-50)]


def test_cross_pool_loss_stops_at_its_margin_balance() -> None:
    # Cross long 10 AUSDT at 100, wallet 60: MB(P) = 60 + 10(P − 100), MM(P) = 0.1 P.
    # Liquidated when 9.9 P <= 940, i.e. P <= 94.9495: −4 % alive (−40), −6 % liquidated (−60), −50 % (−60).
    desk = desk_from_inputs(positions={"W": [pos("AUSDT", "10")]}, wallets={"W": {"USDT": D(60)}}, brackets=BRACKETS)
    r = desk_var(desk, scenario_set([[-0.04, 0], [-0.06, 0], [-0.5, 0], [0.1, 0]]), confidence=0.5)
    assert r.account_pnl("W") == [D(-40), D(-60), D(-60), D(100)]
    assert r.accounts["W"].max_loss == D(60)
    [liq] = r.liquidations(1)
    assert (liq.account, liq.symbol, liq.margin_type, liq.asset, liq.loss) == ("W", None, "cross", "USDT", D(60))
    assert r.liquidations(0) == []


def test_single_symbol_cross_pool_is_checked_along_the_path() -> None:
    # Cross long 10 AUSDT at 100, wallet 60: liquidated at P <= 94.9495 (see above). The window ends at −4 %
    # (alive at the end) but dipped to −5.1 % (P = 94.9): liquidated along the way, −60.
    # With a second symbol in the pool the end prices decide (documented): the same dip is not seen.
    desk = desk_from_inputs(
        positions={"W": [pos("AUSDT", "10")], "V": [pos("AUSDT", "10"), pos("BUSDT", "0.001", mark="10")]},
        wallets={"W": {"USDT": D(60)}, "V": {"USDT": D(60)}},
        brackets=BRACKETS,
    )
    sc = scenario_set([[-0.04, 0.0], [-0.04, 0.0]], low=[[-0.051, 0], [-0.049, 0]], high=[[0, 0], [0, 0]])
    r = desk_var(desk, sc, confidence=0.5)
    assert r.account_pnl("W") == [D(-60), D(-40)]
    assert r.account_pnl("V") == [D(-40), D(-40)]
    assert r.liquidated_accounts(0) == ["W"]


def test_each_margin_asset_is_its_own_cross_pool() -> None:
    # One account, a USDT pool (long 10 AUSDT, wallet 60: liquidated below 94.9495) and a USDC pool
    # (long 10 BUSDT at 100, wallet 1,000). −6 % on both: the USDT pool is liquidated (−60), the USDC pool
    # just loses 60; its wallet does not rescue the USDT pool (single-asset mode: pools never mix).
    usdc = PositionInput(
        symbol="BUSDT", side="BOTH", qty=D(10), entry_price=D(100), mark_price=D(100), leverage=10, margin_asset="USDC"
    )
    desk = desk_from_inputs(
        positions={"M": [pos("AUSDT", "10"), usdc]},
        wallets={"M": {"USDT": D(60), "USDC": D(1000)}},
        brackets=BRACKETS,
    )
    r = desk_var(desk, scenario_set([[-0.06, -0.06]]), confidence=0.5)
    assert r.account_pnl("M") == [D(-120)]
    assert [(x.asset, x.loss) for x in r.liquidations(0)] == [("USDT", D(60))]
    assert r.accounts["M"].max_loss == D(1060)


def test_cross_pool_liquidation_uses_the_tier_at_the_new_notional() -> None:
    # Short 9,900 AUSDT at 100 (notional 990,000, tier 1). At +2 %: notional 1,009,800 is in tier 2:
    # MM = 1,009,800 × 2 % − 10,000 = 10,196 (tier 1's line would say 10,098).
    # Wallet 29,950: MB = 29,950 − 9,900 × 2 = 10,150: above the tier-1 line, below the true MM → liquidated.
    desk = desk_from_inputs(
        positions={"T": [pos("AUSDT", "-9900")]}, wallets={"T": {"USDT": D(29_950)}}, brackets=BRACKETS
    )
    assert maintenance_margin(D(1_009_800), TABLE) == D(10_196)
    r = desk_var(desk, scenario_set([[0.02, 0], [0.019, 0], [-0.01, 0]]), confidence=0.5)
    assert r.account_pnl("T")[0] == D(-29_950)
    assert r.account_pnl("T")[1] == D(-18_810)  # +1.9 %: notional 1,008,810, MM 10,176.2 < MB 10,240: alive
    assert bool(r.pool_liquidated[0, 0]) and not r.pool_liquidated[1, 0]


def test_crash_day_liquidations_by_hand(bracket_tables) -> None:
    # BTC −29.75 % (open 42,849.78 → 13:10 close): a 10x isolated long (margin = notional / 10) is liquidated;
    # a 2x one (margin half the notional) is not; a cross short gains; SOL, with no crash data, moves 1.5 × BTC.
    mark = D("42849.78")
    btc = bracket_tables["BTCUSDT"]
    positions = {
        "lev10": [pos("BTCUSDT", "1", mark=str(mark), iso=str(mark / 10))],
        "lev2": [pos("BTCUSDT", "1", mark=str(mark), iso=str(mark / 2))],
        "short": [pos("BTCUSDT", "-1", mark=str(mark))],
        "sol": [pos("SOLUSDT", "100", mark="150", iso="1500")],
    }
    wallets = {"short": {"USDT": D(10_000)}}
    desk = desk_from_inputs(positions=positions, wallets=wallets, brackets=dict(bracket_tables))
    sc = crash_2021_05_19(desk.symbols, betas={"SOLUSDT": 1.5})
    assert sc.flags == {"SOLUSDT": ("proxy_beta",)}
    r = desk_var(desk, sc, confidence=0.5)
    assert r.liquidated_accounts(0) == ["lev10", "sol"]  # SOL: 1.5 × −29.75 % beats a 10x margin too
    assert r.account_pnl("lev10")[0] == -(mark / 10).quantize(D("0.00000001"))
    assert r.account_pnl("short")[0] > 0
    lev2 = r.account_pnl("lev2")[0]
    move = D(float(sc.moves[0, sc.index("BTCUSDT")]))
    assert abs(lev2 - mark * move) < TOLERANCE
    assert btc  # the fixture's own table is the one used


# --------------------------------------------------------------------------- float engine vs Decimal reference


def random_desk(seed: int):
    tables = load_bracket_tables()
    rng = random.Random(seed)
    marks = {"BTCUSDT": D("60000"), "ETHUSDT": D("3000"), "SOLUSDT": D("150"), "DOGEUSDT": D("0.2")}
    positions, wallets = {}, {}
    for a in range(6):
        rows = []
        hedge = a % 3 == 2
        for s in rng.sample(sorted(marks), rng.randint(1, 4)):
            iso = rng.random() < 0.4
            for side in ["LONG", "SHORT"] if hedge else ["BOTH"]:
                entry = (marks[s] * D(rng.uniform(0.9, 1.1))).quantize(D("0.0001"))
                qty = (D(10 ** rng.uniform(3, 7.3)) / entry).quantize(D("0.001"))
                if side == "BOTH" and rng.random() < 0.5:
                    qty = -qty
                lev = rng.choice([2, 5, 10, 20])
                wallet = (abs(qty) * entry / lev * D(rng.uniform(1, 1.5))).quantize(D("0.01")) if iso else D(0)
                rows.append(
                    PositionInput(
                        symbol=s,
                        side=side,
                        qty=qty,
                        entry_price=entry,
                        mark_price=marks[s],
                        leverage=lev,
                        margin_type="isolated" if iso else "cross",
                        isolated_wallet=wallet,
                    )
                )
        positions[f"a{a}"] = rows
        cross_im = sum((abs(p.qty) * p.entry_price / p.leverage for p in rows if p.margin_type == "cross"), D(0))
        wallets[f"a{a}"] = {"USDT": (cross_im * D(rng.uniform(0.8, 2)) + 10).quantize(D("0.01"))}
    return desk_from_inputs(positions=positions, wallets=wallets, brackets=dict(tables)), positions, wallets, tables


def random_scenarios(seed: int, k: int = 40) -> ScenarioSet:
    g = np.random.default_rng(seed)
    mv = g.normal(0, 0.08, (k, 4))
    low = np.minimum(mv - np.abs(g.normal(0, 0.03, mv.shape)), 0)
    high = np.maximum(mv + np.abs(g.normal(0, 0.03, mv.shape)), 0)
    return ScenarioSet(
        names=tuple(map(str, range(k))),
        symbols=("BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT"),
        moves=mv,
        low=np.maximum(low, -0.95),
        high=high,
    )


def reference_pnl(positions, wallets, tables, sc: ScenarioSet) -> dict[str, list[Decimal]]:
    """The margin mechanics of var.py's docstring, position by position in Decimal (positions.figures/margin)."""
    k_count = len(sc)
    out = {}
    for account, rows in positions.items():
        pnl = [D(0)] * k_count
        for p in rows:
            if p.margin_type != "isolated":
                continue
            lp = figures.position_liquidation(position=p, positions=rows, cross_wallet_balance=D(0), brackets=tables)
            mb = p.isolated_wallet + figures.unrealized_pnl(p)
            j = sc.index(p.symbol)
            for k in range(k_count):
                if p.is_long:
                    liq = lp is not None and p.mark_price * (1 + D(sc.low[k, j])) <= lp.price
                else:
                    liq = lp is None or p.mark_price * (1 + D(sc.high[k, j])) >= lp.price
                pnl[k] += -max(mb, D(0)) if liq else figures.signed_notional(p) * D(sc.moves[k, j])
        pool = [p for p in rows if p.margin_type == "cross"]
        if pool:
            wallet = wallets[account]["USDT"]
            mb0 = wallet + figures.total_unrealized_pnl(pool)
            # one symbol: also the path's low and high (equity − MM is concave in the one price)
            paths = (sc.moves, sc.low, sc.high) if len({p.symbol for p in pool}) == 1 else (sc.moves,)
            for k in range(k_count):
                liquidated, end_mb = False, None
                for path in paths:
                    moved = [
                        PositionInput(
                            symbol=p.symbol,
                            side=p.side,
                            qty=p.qty,
                            entry_price=p.entry_price,
                            mark_price=p.mark_price * (1 + D(path[k, sc.index(p.symbol)])),
                            leverage=p.leverage,
                        )
                        for p in pool
                    ]
                    mbk = wallet + figures.total_unrealized_pnl(moved)
                    liquidated |= mbk <= figures.total_maint_margin(positions=moved, brackets=tables)
                    end_mb = mbk if end_mb is None else end_mb
                pnl[k] += -max(mb0, D(0)) if liquidated else end_mb - mb0
        out[account] = pnl
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_float_engine_equals_decimal_reference_within_half_a_cent(seed: int) -> None:
    desk, positions, wallets, tables = random_desk(seed)
    sc = random_scenarios(seed)
    result = desk_var(desk, sc, confidence=0.9)
    ref = reference_pnl(positions, wallets, tables, sc)
    liquidations = 0
    for account in desk.accounts:
        for got, want in zip(result.account_pnl(account), ref[account], strict=True):
            assert abs(got - want) <= TOLERANCE
    desk_ref = [sum((ref[a][k] for a in ref), D(0)) for k in range(len(sc))]
    m = math.ceil(len(sc) * 0.1)
    order = sorted(range(len(sc)), key=lambda k: desk_ref[k])
    assert abs(result.desk.var + desk_ref[order[m - 1]]) <= TOLERANCE
    assert abs(result.desk.es + sum(desk_ref[k] for k in order[:m]) / m) <= TOLERANCE
    for account in desk.accounts:
        assert abs(result.accounts[account].component_var + ref[account][result.var_scenario]) <= TOLERANCE
        liquidations += len([x for x in result.liquidations(result.var_scenario) if x.account == account])
    assert liquidations > 0  # the fixture does exercise the margin mechanics


# --------------------------------------------------------------------------- parametric


def estimate(symbols, vols, corr=None) -> EwmaEstimate:
    vol = np.array(vols, dtype=float)
    c = np.eye(len(vols)) if corr is None else np.array(corr, dtype=float)
    return EwmaEstimate(
        symbols=tuple(symbols),
        horizon_minutes=1440,
        half_life_days=10.0,
        vol=vol,
        daily_vol=vol,
        cov=c * vol[:, None] * vol[None, :],
        corr=c,
        n_returns=np.full(len(vols), 90),
    )


def test_parametric_by_hand_and_isolated_cap() -> None:
    # X: cross long 10 AUSDT (exposure 1,000), Y: cross short 50 BUSDT (−500); vols 2 % and 4 %, correlation 0.5.
    # desk variance = 20² + 20² − 2 × 0.5 × 20 × 20 = 400 → σ = 20; VaR = z × 20 = 46.5270 (z = 2.326348);
    # ES = 20 × φ(z) / 0.01 = 53.3043. Components: X: 1,000 × (Σx)_A / σ × z where (Σx)_A = 0.0004 × 1,000
    # − 0.5 × 0.02 × 0.04 × 500 = 0.2 → X share 200/20 = 10, Y share 10: equal halves.
    est = estimate(["AUSDT", "BUSDT"], [0.02, 0.04], [[1, 0.5], [0.5, 1]])
    r = parametric_var(hand_desk(), est, confidence=0.99)
    assert abs(r.desk.var - D("46.52695")) < D("0.0001")
    assert abs(r.desk.es - D("53.30427")) < D("0.0001")
    assert abs(r.accounts["X"].component_var - r.desk.var / 2) < D("1e-6")
    assert r.accounts["X"].component_var + r.accounts["Y"].component_var == r.desk.var
    assert abs(r.accounts["X"].var - D("46.52695")) < D("0.0001")  # stand-alone: 2.326 × 20
    # An isolated long of 1,000 with 10 of margin: z × 2 % × 1,000 = 46.5 > 10 → capped at 10.
    capped = desk_from_inputs(positions={"I": [pos("AUSDT", "10", iso="10")]}, wallets={}, brackets=BRACKETS)
    r = parametric_var(capped, est, confidence=0.99)
    assert abs(r.desk.var - D(10)) < D("1e-6")
    # A cross pool likewise: long 10 AUSDT with a 10 USDT wallet: its VaR 46.5 is capped at its balance, 10.
    pool = desk_from_inputs(positions={"C": [pos("AUSDT", "10")]}, wallets={"C": {"USDT": D(10)}}, brackets=BRACKETS)
    r = parametric_var(pool, est, confidence=0.99)
    assert abs(r.desk.var - D(10)) < D("1e-6") and r.accounts["C"].max_loss == D(10)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors() -> None:
    desk = hand_desk()
    sc = scenario_set(HAND_MOVES)
    with pytest.raises(BadInput, match="confidence"):
        desk_var(desk, sc, confidence=1.0)
    with pytest.raises(BadInput, match="confidence"):
        desk_var(desk, sc, confidence=float("nan"))
    with pytest.raises(NoBars, match="BUSDT") as err:
        desk_var(desk, scenario_set([[0.1]], symbols=("AUSDT",)))
    assert err.value.code == "no_bars" and err.value.symbols == ("BUSDT",)
    with pytest.raises(NoBars, match="BUSDT"):
        parametric_var(desk, estimate(["AUSDT"], [0.02]))
    result = desk_var(desk, sc, confidence=0.8)
    with pytest.raises(BadInput, match="scenario"):
        result.liquidations(10)
    with pytest.raises(BadInput, match="unknown account"):
        result.account_pnl("Z")
    with pytest.raises(BadInput, match="wallet"):
        desk_from_inputs(positions={"X": [pos("AUSDT", "1")]}, wallets={}, brackets=BRACKETS)
    with pytest.raises(BadInput, match="brackets"):
        desk_from_inputs(positions={"X": [pos("CUSDT", "1", iso="10")]}, wallets={}, brackets=BRACKETS)
    with pytest.raises(BadInput, match="-100 %"):
        scenario_set([[-1.0, 0.0]])
    with pytest.raises(BadInput, match="finite"):
        scenario_set([[float("nan"), 0.0]])
    assert issubclass(BadInput, PortfolioError) and issubclass(PortfolioError, ValueError)
