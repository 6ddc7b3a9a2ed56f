"""Issue 18: minute closes → aligned history, EWMA volatility/correlation, scenarios, no look-ahead."""

from __future__ import annotations

import csv
import math
from decimal import Decimal

import numpy as np
import pytest

from positions.figures import PositionInput
from positions.portfolio.allocation import notional_caps, unit_var_from_estimate
from positions.portfolio.errors import BadInput, InsufficientHistory, NoBars
from positions.portfolio.history import MINUTE_MS, align_closes, from_matrix
from positions.portfolio.scenarios import (
    CRASH_FILES,
    DATA_DIR,
    betas_to,
    combine,
    crash_2021_05_19,
    historical_scenarios,
    stress_scenario,
    with_proxies,
)
from positions.portfolio.var import desk_from_inputs, desk_var, parametric_var
from positions.portfolio.volatility import ewma, log_returns
from positions.tests.conftest import load_bracket_tables

T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC
D = Decimal


def series(returns: list[float], start: float = 100.0) -> list[float]:
    return list(start * np.exp(np.concatenate([[0.0], np.cumsum(returns)])))


def minutes(n: int, start: int = T0) -> list[int]:
    return [start + i * MINUTE_MS for i in range(n)]


# --------------------------------------------------------------------------- alignment


def test_align_forward_fills_and_cuts_at_as_of() -> None:
    data = {
        "AUSDT": ([T0, T0 + 2 * MINUTE_MS, T0 + 3 * MINUTE_MS], [D("10"), D("12"), D("99")]),
        "BUSDT": ([T0 + MINUTE_MS, T0 + 2 * MINUTE_MS], ["5", "6"]),
    }
    a = align_closes(data, as_of_ms=T0 + 2 * MINUTE_MS + 30_000)  # the 99 bar opens after the cut
    assert a.symbols == ("AUSDT", "BUSDT")
    assert a.times_ms.tolist() == minutes(3)
    assert a.closes[:, 0].tolist() == [10.0, 10.0, 12.0]  # minute 1 missing: last close carried
    assert a.first.tolist() == [0, 1]
    assert math.isnan(a.closes[0, 1]) and a.closes[1:, 1].tolist() == [5.0, 6.0]


def test_align_symbol_without_bars() -> None:
    data = {"AUSDT": ([T0], [1.0]), "NEWUSDT": ([T0 + 10 * MINUTE_MS], [1.0])}
    with pytest.raises(NoBars, match="NEWUSDT") as err:
        align_closes(data, as_of_ms=T0 + MINUTE_MS)
    assert err.value.code == "no_bars" and err.value.symbols == ("NEWUSDT",)
    skipped = align_closes(data, as_of_ms=T0 + MINUTE_MS, missing="skip")
    assert skipped.symbols == ("AUSDT",) and skipped.missing == ("NEWUSDT",)
    with pytest.raises(BadInput, match="duplicate"):
        align_closes({"AUSDT": ([T0, T0], [1.0, 2.0])}, as_of_ms=T0)
    with pytest.raises(BadInput, match="> 0"):
        align_closes({"AUSDT": ([T0], [-1.0])}, as_of_ms=T0)
    with pytest.raises(BadInput, match="not a number"):
        align_closes({"AUSDT": ([T0], ["abc"])}, as_of_ms=T0)
    with pytest.raises(BadInput, match="as_of_ms"):
        align_closes({"AUSDT": ([T0], [1.0])}, as_of_ms=1.5)


def test_from_matrix_regrids_shared_gaps_and_matches_align_closes() -> None:
    # rows 0, 1, 4 (minutes 2-3 missing for every symbol, like the bundled data's 2021-04-25 gap); B starts at row 1
    times = np.array([T0, T0 + MINUTE_MS, T0 + 4 * MINUTE_MS, T0 + 5 * MINUTE_MS], dtype=np.int64)
    closes = np.array([[10.0, np.nan], [11.0, 5.0], [12.0, 6.0], [99.0, 99.0]])
    a = from_matrix(times_ms=times, symbols=["A", "B"], closes=closes, as_of_ms=T0 + 4 * MINUTE_MS)
    assert a.times_ms.tolist() == minutes(5)
    assert a.closes[:, 0].tolist() == [10.0, 11.0, 11.0, 11.0, 12.0]
    assert a.first.tolist() == [0, 1]
    b = align_closes({"A": (times[:3], closes[:3, 0]), "B": (times[1:3], closes[1:3, 1])}, as_of_ms=T0 + 4 * MINUTE_MS)
    assert np.array_equal(a.closes, b.closes, equal_nan=True) and a.first.tolist() == b.first.tolist()
    with pytest.raises(NoBars, match="C"):
        from_matrix(times_ms=times, symbols=["A", "C"], closes=closes * [1, np.nan], as_of_ms=T0 + 4 * MINUTE_MS)
    with pytest.raises(BadInput, match="ascending"):
        from_matrix(times_ms=times[::-1], symbols=["A", "B"], closes=closes, as_of_ms=T0 + 9 * MINUTE_MS)


# --------------------------------------------------------------------------- EWMA


def test_ewma_by_hand() -> None:
    # Returns (oldest first) A: 1 %, −2 %, 3 %; B = 2 × A; C: 1 %, 2 %, −3 %. Half-life one return:
    # weights 0.25, 0.5, 1 (sum 1.75). var_A = (0.25·1e-4 + 0.5·4e-4 + 9e-4) / 1.75 = 6.428571e-4.
    # cov_AC = (0.25·1e-4 − 0.5·4e-4 − 9e-4) / 1.75 = −6.142857e-4; var_C = var_A → corr_AC = −10.75 / 11.25.
    data = {
        "A": (minutes(4), series([0.01, -0.02, 0.03])),
        "B": (minutes(4), series([0.02, -0.04, 0.06])),
        "C": (minutes(4), series([0.01, 0.02, -0.03])),
    }
    aligned = align_closes(data, as_of_ms=T0 + 3 * MINUTE_MS)
    est = ewma(aligned, horizon_minutes=1, half_life_days=1 / 1440, min_returns=2)
    var_a = 11.25e-4 / 1.75
    assert est.vol[0] == pytest.approx(math.sqrt(var_a), rel=1e-9)
    assert est.vol[1] == pytest.approx(2 * math.sqrt(var_a), rel=1e-9)
    assert est.daily_vol[0] == pytest.approx(math.sqrt(var_a * 1440), rel=1e-9)
    assert est.corr[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert est.corr[0, 2] == pytest.approx(-10.75 / 11.25, rel=1e-9)
    assert est.cov[0, 2] == pytest.approx(-10.75e-4 / 1.75, rel=1e-9)
    assert est.flags == {}
    assert est.corr_decimal("A", "C") == D(format(-10.75 / 11.25, ".12f"))
    assert log_returns(aligned, horizon_minutes=1).values[:, 0] == pytest.approx([0.01, -0.02, 0.03])


def test_ewma_zero_volatility_is_flagged_and_short_history_raises() -> None:
    data = {"A": (minutes(4), series([0.01, -0.02, 0.03])), "FLAT": (minutes(4), [7.0] * 4)}
    aligned = align_closes(data, as_of_ms=T0 + 3 * MINUTE_MS)
    est = ewma(aligned, horizon_minutes=1, half_life_days=1.0, min_returns=2)
    assert est.vol[1] == 0.0
    assert est.flags == {"FLAT": ("zero_volatility",)}
    assert est.corr.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert np.isfinite(est.cov).all()
    with pytest.raises(InsufficientHistory, match=r"A \(3\).*FLAT \(3\)") as err:
        ewma(aligned, horizon_minutes=1, min_returns=5)
    assert err.value.code == "insufficient_history"
    with pytest.raises(InsufficientHistory):
        ewma(aligned)  # one-day horizon: no return at all in 4 minutes
    with pytest.raises(BadInput, match="half_life_days"):
        ewma(aligned, horizon_minutes=1, half_life_days=0, min_returns=2)


# --------------------------------------------------------------------------- historical scenarios


def random_closes(days: int, symbols: list[str], seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    n = days * 1440
    common = rng.normal(0, 0.0008, n)
    out = {}
    for i, s in enumerate(symbols):
        r = common * (1 + 0.5 * i) + rng.normal(0, 0.0005, n)
        out[s] = (np.array(minutes(n), dtype=np.int64), 100 * (i + 1) * np.exp(np.cumsum(r)))
    return out


def test_historical_windows_count_stride_moves_and_path_extremes() -> None:
    data = random_closes(10, ["AUSDT", "BUSDT"])
    aligned = align_closes(data, as_of_ms=T0 + (10 * 1440 - 1) * MINUTE_MS)
    sc = historical_scenarios(aligned, target=100, min_scenarios=50)
    t = aligned.times_ms.size
    stride = (t - 1 - 1440) // 99  # documented default
    assert len(sc) == 100
    assert sc.end_ms[-1] == aligned.times_ms[-1]  # the newest window ends at as_of
    assert np.diff(sc.end_ms).tolist() == [stride * MINUTE_MS] * 99
    closes = aligned.closes
    for k in (0, 50, 99):
        end = (sc.end_ms[k] - T0) // MINUTE_MS
        window = closes[end - 1440 : end + 1]
        assert sc.moves[k] == pytest.approx(window[-1] / window[0] - 1, rel=1e-12)
        assert sc.low[k] == pytest.approx(np.minimum(window.min(axis=0) / window[0] - 1, 0), rel=1e-12)
        assert sc.high[k] == pytest.approx(np.maximum(window.max(axis=0) / window[0] - 1, 0), rel=1e-12)
    assert sc.names[-1].endswith("2025-12-10T23:59Z")


def test_historical_short_history_raises_or_drops() -> None:
    data = random_closes(10, ["AUSDT", "BUSDT"])
    times, closes = data["BUSDT"]
    data["NEWUSDT"] = (times[-2000:], closes[-2000:])  # 1.4 days: a handful of windows
    aligned = align_closes(data, as_of_ms=int(times[-1]))
    with pytest.raises(InsufficientHistory, match="NEWUSDT") as err:
        historical_scenarios(aligned, target=100, min_scenarios=50)
    assert err.value.symbols == ("NEWUSDT",)
    sc = historical_scenarios(aligned, target=100, min_scenarios=50, short_history="drop")
    assert sc.dropped == ("NEWUSDT",) and sc.symbols == ("AUSDT", "BUSDT")
    betas = betas_to(aligned, "AUSDT", min_returns=5)
    proxied = with_proxies(sc, ["NEWUSDT"], betas=betas, proxy="AUSDT")
    assert "NEWUSDT" not in betas  # fewer than 5 daily returns: no beta, so the default 1 (flagged)
    assert proxied.flags == {"NEWUSDT": ("proxy_beta_default",)}
    assert proxied.moves[:, 2] == pytest.approx(sc.moves[:, 0])
    with pytest.raises(InsufficientHistory):
        historical_scenarios(align_closes(random_closes(1, ["AUSDT"]), as_of_ms=T0 + 1439 * MINUTE_MS))


def test_betas_by_construction() -> None:
    n = 40 * 1440
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.001, n)
    data = {
        "BTCUSDT": (np.array(minutes(n)), 100 * np.exp(np.cumsum(r))),
        "TWOUSDT": (np.array(minutes(n)), 5 * np.exp(np.cumsum(2 * r))),
    }
    aligned = align_closes(data, as_of_ms=T0 + (n - 1) * MINUTE_MS)
    betas = betas_to(aligned)
    assert betas["TWOUSDT"] == pytest.approx(2.0, rel=1e-9)
    sc = stress_scenario("BTC −20 %", {"BTCUSDT": D("-0.2")}, ["BTCUSDT", "TWOUSDT", "XUSDT"], betas=betas)
    assert sc.moves[0].tolist() == pytest.approx([-0.2, -0.4, -0.2])
    assert sc.flags == {"TWOUSDT": ("proxy_beta",), "XUSDT": ("proxy_beta_default",)}
    deep = stress_scenario("deep", {"BTCUSDT": D("-0.6")}, ["BTCUSDT", "TWOUSDT"], betas=betas)
    assert deep.moves[0, 1] == -0.99 and deep.flags["TWOUSDT"] == ("proxy_beta", "clipped")


# --------------------------------------------------------------------------- the crash scenario


def test_crash_scenario_from_the_bundled_bars() -> None:
    rows = list(csv.DictReader((DATA_DIR / CRASH_FILES["BTCUSDT"]).open()))
    closes = [float(r["close"]) for r in rows]
    trough = closes.index(min(closes))
    sc = crash_2021_05_19(["BTCUSDT", "ETHUSDT", "DOGEUSDT"])
    assert rows[0]["open"] == "42849.78"
    assert sc.moves[0, 0] == pytest.approx(closes[trough] / 42849.78 - 1, rel=1e-12)
    assert -0.31 < sc.moves[0, 0] < -0.29  # BTC fell ~30 % by the trough
    assert -0.44 < sc.moves[0, 1] < -0.42  # ETH ~43 %
    assert sc.low[0, 0] == pytest.approx(30000.0 / 42849.78 - 1, rel=1e-12)  # the 30,000 low of 13:10
    assert sc.flags == {"DOGEUSDT": ("proxy_beta_default",)}
    assert sc.moves[0, 2] == sc.moves[0, 0]
    both = combine(sc, stress_scenario("calm", {"BTCUSDT": 0.01, "ETHUSDT": 0.01, "DOGEUSDT": 0.01}, []))
    assert both.names == ("crash 2021-05-19", "calm")


# --------------------------------------------------------------------------- no look-ahead


def pipeline(data: dict, as_of_ms: int):
    aligned = align_closes(data, as_of_ms=as_of_ms)
    est = ewma(aligned, half_life_days=3.0, min_returns=5)
    sc = historical_scenarios(aligned, target=200, min_scenarios=100)
    tables = load_bracket_tables()
    brackets = {"AUSDT": tables["BTCUSDT"], "BUSDT": tables["ETHUSDT"]}
    mark_a, mark_b = (D(format(aligned.closes[-1, i], ".4f")) for i in range(2))
    positions = {
        "x": [
            PositionInput(symbol="AUSDT", side="BOTH", qty=D(50), entry_price=mark_a, mark_price=mark_a, leverage=10)
        ],
        "y": [
            PositionInput(
                symbol="BUSDT",
                side="BOTH",
                qty=D(-40),
                entry_price=mark_b,
                mark_price=mark_b,
                leverage=20,
                margin_type="isolated",
                isolated_wallet=D(400),
            )
        ],
    }
    desk = desk_from_inputs(positions=positions, wallets={"x": {"USDT": D(1000)}}, brackets=brackets)
    var = desk_var(desk, sc)
    caps = notional_caps(equity=D(100_000), budget_pct=D(2), unit_var=unit_var_from_estimate(est), brackets=brackets)
    return est, sc, var, parametric_var(desk, est), caps


def test_data_after_as_of_cannot_change_any_result() -> None:
    data = random_closes(12, ["AUSDT", "BUSDT"])
    as_of = T0 + (8 * 1440 + 17) * MINUTE_MS  # mid-history, not on a day boundary
    cut = {s: (t[t <= as_of], c[t <= as_of]) for s, (t, c) in data.items()}
    wild = {}
    for s, (t, c) in data.items():  # the future: a crash, a spike, a new symbol's bars
        c = c.copy()
        c[t > as_of] *= np.linspace(0.2, 5.0, int((t > as_of).sum()))
        wild[s] = (t, c)
    before = pipeline(cut, as_of)
    after = pipeline(wild, as_of)
    est_a, sc_a, var_a, par_a, caps_a = before
    est_b, sc_b, var_b, par_b, caps_b = after
    assert np.array_equal(est_a.cov, est_b.cov)
    assert np.array_equal(sc_a.moves, sc_b.moves) and np.array_equal(sc_a.low, sc_b.low)
    assert var_a.desk == var_b.desk and var_a.accounts == var_b.accounts and var_a.symbols == var_b.symbols
    assert par_a.desk == par_b.desk
    assert caps_a == caps_b
    # and the future does matter when the cut-off moves past it (the test is not vacuous)
    later = pipeline(wild, T0 + (12 * 1440 - 1) * MINUTE_MS)
    assert later[2].desk != var_a.desk
