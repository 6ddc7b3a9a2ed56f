"""The abnormal-behaviour detectors (rules.anomalies), in memory: each one fires on its pattern and
stays quiet on a seeded history of ordinary trading replayed through the same watch."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from rules import anomalies as an

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
USUAL_HOURS = range(8, 17)  # the account trades 08:00-16:59 UTC
SYMBOLS = ("BTCUSDT", "ETHUSDT")
ACCOUNT = 7


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ordinary_day(day: int, rng: random.Random) -> list[tuple[float, str, str, float, float]]:
    """(time, execution, symbol, qty, price): about one order a minute in the usual hours, a third
    cancelled, the rest filled; notionals 100-1,000 USDT."""
    rows = []
    for hour in USUAL_HOURS:
        for minute in range(60):
            if rng.random() < 0.2:
                continue
            t = DAY0 + day * 86_400 + hour * 3600 + minute * 60 + rng.uniform(0, 50)
            symbol = rng.choice(SYMBOLS)
            price = 40_000.0 if symbol == "BTCUSDT" else 2_000.0
            qty = round(rng.uniform(100, 1000) / price, 6)
            rows.append((t, "NEW", symbol, qty, price))
            rows.append((t + 5, "CANCELED" if rng.random() < 0.33 else "TRADE", symbol, qty, price))
    return rows


@pytest.fixture(scope="module")
def history() -> dict:
    rng = random.Random(17)
    rows = [r for day in range(30) for r in ordinary_day(day, rng)]
    values = an.baseline_from_history(
        order_times=[t for t, x, *_ in rows if x == "NEW"],
        cancel_times=[t for t, x, *_ in rows if x == "CANCELED"],
        notionals=[q * p for _, x, _, q, p in rows if x == "NEW"],
        symbols=[s for _, _, s, _, _ in rows],
    )
    return values


@pytest.fixture
def watch(history) -> an.AnomalyWatch:
    clock = Clock(DAY0 + 31 * 86_400 + 8 * 3600)
    w = an.AnomalyWatch(clock=clock)
    levels = an.Levels.from_values(
        {
            **{f"{k}_warning": v[0] for k, v in an.DEFAULT_LEVELS.items()},
            **{f"{k}_critical": v[1] for k, v in an.DEFAULT_LEVELS.items()},
            "loss_per_minute_warning": 200,
            "loss_per_minute_critical": 1000,
            "max_leverage_warning": 20,
            "max_leverage_critical": 50,
        }
    )
    w.load(levels={ACCOUNT: levels}, baselines={ACCOUNT: an.baseline_of_row(history)})
    return w


def event(t: float, execution: str, symbol: str = "BTCUSDT", qty: float = 0.01, price: float = 40_000.0, n: int = 0):
    status = {"NEW": "NEW", "CANCELED": "CANCELED", "TRADE": "FILLED"}[execution]
    order = {"s": symbol, "c": f"rd-{n}", "i": n, "S": "BUY", "o": "LIMIT", "q": str(qty), "p": str(price)}
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": int(t * 1000),
        "o": {**order, "x": execution, "X": status, "T": int(t * 1000)},
    }


def replay(watch: an.AnomalyWatch, rows) -> list[an.Finding]:
    found = []
    for n, (t, execution, symbol, qty, price) in enumerate(sorted(rows)):
        watch.clock.t = t
        found += watch.order_event(ACCOUNT, event(t, execution, symbol, qty, price, n))
    return found


def test_the_baseline_learns_the_accounts_ordinary_trading(history):
    assert history["orders_seen"] > 10_000
    assert history["symbols"] == sorted(SYMBOLS)
    shares = history["hour_shares"]
    assert sum(shares[h] for h in USUAL_HOURS) == pytest.approx(1.0)
    assert shares[3] == 0
    assert 900 <= float(history["notional_p99"]) <= 1000
    assert history["orders_10s_median"] <= 1


def test_a_day_of_ordinary_trading_raises_nothing(watch):
    rows = ordinary_day(31, random.Random(99))
    assert replay(watch, rows) == []
    for minute in range(0, 300, 5):  # the balance wanders by a few tenths of a percent
        watch.clock.t = DAY0 + 31 * 86_400 + 9 * 3600 + minute
        assert watch.balance(ACCOUNT, str(10_000 + 20 * ((minute // 5) % 3))) == []
    assert watch.leverage_changed(ACCOUNT, "BTCUSDT", 10, 15) == []
    assert watch.leverage_changed(ACCOUNT, "BTCUSDT", 20, 5) == []  # lowering is never an anomaly


def test_order_burst_fires_on_orders_far_above_the_median(watch):
    t = DAY0 + 31 * 86_400 + 10 * 3600
    found = replay(watch, [(t + i * 0.1, "NEW", "BTCUSDT", 0.01, 40_000.0) for i in range(20)])
    bursts = [f for f in found if f.detector == an.BURST]
    assert [f.level for f in bursts] == [an.WARNING, an.CRITICAL]  # reported once per level, not per order
    last = bursts[-1]
    assert last.details["observed"]["count_10s"] == 16 and last.details["baseline"]["learned"] is True
    assert last.details["baseline"]["median"] == 0.0 and last.details["baseline"]["mad"] == 1.0


def test_cancel_ratio_fires_on_cancels_without_fills(watch):
    t = DAY0 + 31 * 86_400 + 10 * 3600
    rows = [(t + i * 4, "CANCELED", "BTCUSDT", 0.01, 40_000.0) for i in range(60)] + [
        (t, "TRADE", "BTCUSDT", 0.01, 4e4)
    ]
    found = [f for f in replay(watch, rows) if f.detector == an.CANCEL_RATIO]
    assert found and found[0].level == an.WARNING and found[-1].level == an.CRITICAL
    assert found[-1].details["observed"]["fills_5m"] == 1
    assert not [f for f in replay(watch, []) if f.detector == an.BURST]


def test_size_outlier_fires_above_k_times_the_p99(watch, history):
    t = DAY0 + 31 * 86_400 + 10 * 3600
    p99 = float(history["notional_p99"])
    assert replay(watch, [(t, "NEW", "BTCUSDT", 2 * p99 / 40_000, 40_000.0)]) == []
    found = replay(watch, [(t + 1, "NEW", "BTCUSDT", 12 * p99 / 40_000, 40_000.0)])
    assert [(f.detector, f.level) for f in found] == [(an.SIZE_OUTLIER, an.CRITICAL)]
    assert found[0].details["baseline"]["notional_p99"] == p99
    assert found[0].value == pytest.approx(12, rel=1e-3)


def test_a_market_order_is_sized_at_the_mark(watch, history):
    watch.marks["BTCUSDT"] = ("40000", 0)
    t = DAY0 + 31 * 86_400 + 10 * 3600
    order = event(t, "NEW", qty=5 * float(history["notional_p99"]) / 40_000, price=0)
    watch.clock.t = t
    assert [f.detector for f in watch.order_event(ACCOUNT, order)] == [an.SIZE_OUTLIER]


def test_new_symbol_fires_on_the_first_order_in_a_symbol_never_traded(watch):
    t = DAY0 + 31 * 86_400 + 10 * 3600
    found = replay(watch, [(t, "NEW", "SOLUSDT", 1, 150.0), (t + 60, "NEW", "SOLUSDT", 1, 150.0)])
    assert [(f.detector, f.subject, f.level) for f in found] == [(an.NEW_SYMBOL, "SOLUSDT", an.WARNING)]
    assert found[0].details["baseline"]["symbols"] == sorted(SYMBOLS)


def test_a_new_account_without_history_gets_no_new_symbol_alerts():
    w = an.AnomalyWatch(clock=Clock(DAY0))
    assert w.order_event(1, event(DAY0, "NEW", "SOLUSDT")) == []


def test_off_hours_fires_on_orders_in_an_hour_the_account_never_trades(watch):
    t = DAY0 + 31 * 86_400 + 3 * 3600  # 03:00 UTC
    found = replay(watch, [(t + i * 10, "NEW", "BTCUSDT", 0.01, 40_000.0) for i in range(4)])
    assert [(f.detector, f.subject, f.level) for f in found] == [(an.OFF_HOURS, "03h", an.WARNING)]
    assert found[0].details["baseline"]["usual_hours_utc"] == list(USUAL_HOURS)


def test_loss_velocity_fires_per_minute_and_over_five_minutes(watch):
    """One sample every 5 s (as the sink takes them): 12 make a minute, 60 five minutes."""

    def samples(values):
        found = []
        for value in values:
            watch.clock.t += 5
            found += watch.balance(ACCOUNT, str(value))
        return found

    watch.clock.t = DAY0 + 31 * 86_400 + 12 * 3600
    found = samples([10_000] * 6 + [9_850, 9_700])  # 300 within a minute: above the 200 warning
    assert [(f.detector, f.level, f.details["measure"]) for f in found] == [
        (an.LOSS_VELOCITY, an.WARNING, "loss_per_minute")
    ]
    assert found[0].details["baseline"]["high_1m"] == 10_000 and found[0].value == 300
    # A slow slide: never 200 in a minute, but 11 % of the 5-minute high within 5 minutes.
    found = samples([9_700 - 15 * i for i in range(1, 53)])  # 180 a minute
    assert found and found[-1].level == an.CRITICAL and found[-1].details["measure"] == "loss_5m"
    assert found[-1].details["baseline"]["high_5m"] == 10_000


def test_leverage_jump_by_factor_and_beyond_the_profile(watch):
    found = watch.leverage_changed(ACCOUNT, "BTCUSDT", 5, 10)
    assert [(f.level, f.details["measure"]) for f in found] == [(an.WARNING, "factor")]
    found = watch.leverage_changed(ACCOUNT, "ETHUSDT", 40, 60)  # x1.5, but above the profile's 50
    assert [(f.level, f.details["measure"], f.limit) for f in found] == [(an.CRITICAL, "profile", 50)]


def test_key_permissions_warns_on_withdrawals_or_no_ip_restriction():
    levels = an.DEFAULT
    assert an.key_permission_finding(1, {"ipRestrict": True, "enableWithdrawals": False}, levels) is None
    found = an.key_permission_finding(1, {"ipRestrict": False, "enableWithdrawals": True}, levels)
    assert found.level == an.WARNING and found.value == 2
    assert found.details["observed"]["problems"] == ["withdrawals_enabled", "no_ip_restriction"]


def test_an_unapproved_order_is_critical_by_default_and_counted_per_day():
    w = an.AnomalyWatch(clock=Clock(DAY0))
    order = {"s": "BTCUSDT", "c": "web_abc", "i": 1, "X": "NEW"}
    assert w.needs_bypass_check(1, order) and not w.needs_bypass_check(1, {**order, "X": "FILLED"})
    assert not w.needs_bypass_check(1, {"s": "BTCUSDT", "c": "autoclose-123", "o": "LIMIT"})
    found = w.bypassed(1, order)
    assert found.level == an.CRITICAL and found.value == 1 and found.action == "none"
    assert found.details["baseline"] == {"approved_by_gate": False}


def test_a_detector_switched_off_in_the_profile_stays_quiet(watch):
    watch.levels[ACCOUNT] = an.Levels.from_values({"size_outlier_warning": None, "size_outlier_critical": None})
    t = DAY0 + 31 * 86_400 + 10 * 3600
    assert replay(watch, [(t, "NEW", "BTCUSDT", 1.0, 40_000.0)]) == []
