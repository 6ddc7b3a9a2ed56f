from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from rules.levels import CRITICAL, NORMAL, WARNING, DayState, Latch, Limits, Measurement, Thresholds, evaluate

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}


def book_with_long(qty="0.5", entry="43000", wallet="1000", leverage=20) -> RiskBook:
    book = RiskBook()
    book.set_brackets("BTCUSDT", TABLES["BTCUSDT"])
    book.set_wallet(1, D(wallet))
    book.upsert_position(
        1, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D(qty), entry_price=D(entry), leverage=leverage)
    )
    return book


def run(book: RiskBook, latch: Latch, limits: Limits, price: str, ts: int, day: DayState | None = None):
    book.apply_mark("BTCUSDT", D(price), ts=ts)
    return evaluate(latch=latch, limits=limits, risk=book.account(1), positions=book.positions(1), day=day)


def test_a_breach_latches_only_after_n_consecutive_evaluations():
    latch, t = Latch(), Thresholds(D("100"), D("200"))
    m = Measurement("position_notional", "BTCUSDT:BOTH", D("150"))
    assert latch.update(m, t, n=3, band=D("0")) is None
    assert latch.update(m, t, n=3, band=D("0")) is None
    change = latch.update(m, t, n=3, band=D("0"))
    assert change is not None and change.level == WARNING and change.previous == NORMAL


def test_a_worse_level_escalates_and_a_return_to_normal_clears():
    latch, t = Latch(), Thresholds(D("100"), D("200"))
    up = latch.update(Measurement("r", "s", D("250")), t, n=1, band=D("0"))
    assert (up.level, up.previous) == (CRITICAL, NORMAL)
    down = latch.update(Measurement("r", "s", D("50")), t, n=1, band=D("0"))
    assert (down.level, down.previous) == (NORMAL, CRITICAL)


def test_hysteresis_holds_a_value_oscillating_around_the_threshold():
    latch, t = Latch(), Thresholds(D("0.5"), D("0.8"))
    values = ["0.79", "0.81", "0.81", "0.79", "0.81", "0.795", "0.805", "0.79"]
    changes = [latch.update(Measurement("margin_ratio", "cross", D(v)), t, n=2, band=D("0.02")) for v in values]
    levels = [(c.previous, c.level) for c in changes if c]
    # warning after two readings ≥ 0.5, critical after two ≥ 0.8, and then no flapping at all
    assert levels == [(NORMAL, WARNING), (WARNING, CRITICAL)]
    assert latch.states[("margin_ratio", "cross")].level == CRITICAL
    cleared = latch.update(Measurement("margin_ratio", "cross", D("0.78")), t, n=2, band=D("0.02"))
    assert cleared is not None and cleared.level == WARNING  # 0.78 < 0.8 × 0.98 = 0.784


def test_lower_is_worse_limits_clear_only_above_the_band():
    latch, t = Latch(), Thresholds(D("0.15"), D("0.05"), lower_is_worse=True)
    assert latch.update(Measurement("liq_distance", "x", D("0.04")), t, n=1, band=D("0.1")).level == CRITICAL
    assert latch.update(Measurement("liq_distance", "x", D("0.052")), t, n=1, band=D("0.1")) is None
    assert latch.update(Measurement("liq_distance", "x", D("0.06")), t, n=1, band=D("0.1")).level == WARNING


@pytest.mark.parametrize("n", [1, 2])
def test_the_crash_walks_liquidation_distance_through_warning_to_critical(n):
    limits = Limits.from_values(
        {
            "liq_distance_warning": D("0.15"),
            "liq_distance_critical": D("0.05"),
            "breach_after_n": n,
            "hysteresis": D("0.02"),
        }
    )
    book, latch = book_with_long(wallet="3000"), Latch()  # liquidation near 37,150
    seen = []
    for i, price in enumerate(["43000", "42000", "41000", "40000", "40000", "39000", "38000", "38000", "37500"]):
        seen += [(c.rule, c.level) for c in run(book, latch, limits, price, ts=1000 + i)]
    assert seen == [("liq_distance", WARNING), ("liq_distance", CRITICAL)]


def test_daily_loss_and_drawdown_use_the_day_state():
    limits = Limits.from_values(
        {
            "max_daily_loss_warning": D("500"),
            "max_daily_loss_critical": D("900"),
            "max_drawdown_warning": D("0.3"),
            "breach_after_n": 1,
        }
    )
    book, latch = book_with_long(), Latch()
    day = DayState(day="2021-05-19", start_equity=D("1000"), peak_equity=D("1000"))
    changes = run(book, latch, limits, "41500", ts=1, day=day)  # uPnL −750 → loss 750, drawdown 75 %
    assert {(c.rule, c.level) for c in changes} == {("daily_loss", WARNING), ("drawdown", WARNING)}
    assert next(c for c in changes if c.rule == "daily_loss").measurement.value == D("750.00000000")


def test_an_incomplete_account_keeps_its_latched_levels():
    limits = Limits.from_values({"max_position_notional_warning": D("1"), "breach_after_n": 1})
    book, latch = book_with_long(), Latch()
    assert run(book, latch, limits, "43000", ts=1)[0].level == WARNING
    # a position whose symbol has no brackets or mark: figures unknown, which is not "back to normal"
    book.upsert_position(1, BookPosition(symbol="ETHUSDT", side="BOTH", qty=D("1"), entry_price=D("3000"), leverage=5))
    assert not book.account(1).complete
    assert evaluate(latch=latch, limits=limits, risk=book.account(1), positions=book.positions(1), day=None) == []


def test_a_closed_position_clears_its_alerts():
    limits = Limits.from_values({"max_position_notional_warning": D("1"), "breach_after_n": 1})
    book, latch = book_with_long(), Latch()
    run(book, latch, limits, "43000", ts=1)
    book.remove_position(1, "BTCUSDT", "BOTH")
    changes = evaluate(latch=latch, limits=limits, risk=book.account(1), positions=book.positions(1), day=None)
    assert [(c.rule, c.subject, c.level) for c in changes] == [("position_notional", "BTCUSDT:BOTH", NORMAL)]


# --------------------------------------------------------------------------- the clearing dwell


def _m(value: str) -> Measurement:
    return Measurement("drawdown", "account", D(value))


def test_a_level_clears_only_after_the_value_stayed_inside_the_band_for_the_dwell():
    latch, t = Latch(), Thresholds(D("0.05"), D("0.10"))
    kw = dict(n=1, band=D("0.02"), dwell_ms=30_000)
    assert latch.update(_m("0.06"), t, now_ms=0, **kw).level == WARNING
    assert latch.update(_m("0.04"), t, now_ms=1_000, **kw) is None  # inside: the dwell starts
    assert latch.update(_m("0.04"), t, now_ms=30_999, **kw) is None
    cleared = latch.update(_m("0.03"), t, now_ms=31_000, **kw)
    assert (cleared.previous, cleared.level) == (WARNING, NORMAL)


def test_a_value_back_out_of_the_band_restarts_the_dwell():
    """DRAWDOWN_HIGH opened and closed 9 times in 3 minutes: a value re-crossing the limit every
    few seconds keeps its one level until it has stayed inside for the whole dwell."""
    latch, t = Latch(), Thresholds(D("0.05"), None)
    kw = dict(n=1, band=D("0"), dwell_ms=30_000)
    latch.update(_m("0.051"), t, now_ms=0, **kw)
    levels = []
    for second in range(1, 180):
        value = "0.049" if second % 10 < 8 else "0.051"  # back out 2 s in every 10
        change = latch.update(_m(value), t, now_ms=second * 1000, **kw)
        levels += [change.level] if change else []
    assert levels == []
    assert latch.update(_m("0.04"), t, now_ms=200_000, **kw) is None
    assert latch.update(_m("0.04"), t, now_ms=230_000, **kw).level == NORMAL


def test_critical_steps_down_to_warning_after_the_dwell_and_escalates_at_once():
    latch, t = Latch(), Thresholds(D("0.05"), D("0.10"))
    kw = dict(n=1, band=D("0"), dwell_ms=5_000)
    assert latch.update(_m("0.12"), t, now_ms=0, **kw).level == CRITICAL
    assert latch.update(_m("0.07"), t, now_ms=1_000, **kw) is None
    down = latch.update(_m("0.07"), t, now_ms=6_000, **kw)
    assert (down.previous, down.level) == (CRITICAL, WARNING)
    up = latch.update(_m("0.11"), t, now_ms=6_500, **kw)  # worse: no dwell on the way up
    assert (up.previous, up.level) == (WARNING, CRITICAL)


def test_the_dwell_is_per_rule_and_settle_skips_it():
    limits = Limits.from_values(
        {"max_drawdown_warning": D("0.05"), "clear_dwell_s": 30, "clear_dwell_by_rule": {"leverage": 0}}
    )
    assert limits.dwell_ms("drawdown") == 30_000 and limits.dwell_ms("leverage") == 0
    latch, t = Latch(), limits.by_rule["drawdown"]
    kw = dict(n=1, band=D("0"), dwell_ms=limits.dwell_ms("drawdown"))
    latch.update(_m("0.06"), t, now_ms=0, **kw)
    assert latch.update(_m("0.01"), t, now_ms=1_000, **kw) is None and latch.dwelling()
    assert latch.update(_m("0.01"), t, now_ms=2_000, settle=True, **kw).level == NORMAL
    assert not latch.dwelling()


def test_without_a_clock_there_is_no_dwell():
    latch, t = Latch(), Thresholds(D("0.05"), None)
    latch.update(_m("0.06"), t, n=1, band=D("0"), dwell_ms=30_000)
    assert latch.update(_m("0.01"), t, n=1, band=D("0"), dwell_ms=30_000).level == NORMAL


def test_a_seeded_latch_holds_a_breach_that_still_holds_and_reports_what_it_holds():
    latch, t = Latch(), Thresholds(D("0.05"), D("0.10"))
    latch.seed({("drawdown", "account"): CRITICAL, ("leverage", "BTCUSDT:BOTH"): WARNING, ("x", "y"): NORMAL})
    assert latch.holding() == {("drawdown", "account"), ("leverage", "BTCUSDT:BOTH")}
    assert latch.holding(["drawdown"]) == {("drawdown", "account")}
    # Still critical after the restart: no change, so no second row and no second page.
    assert latch.update(_m("0.11"), t, n=2, band=D("0"), now_ms=0, dwell_ms=30_000) is None
    assert latch.states[("drawdown", "account")].level == CRITICAL
