"""The report maths alone (alerts/reports/figures.py): plain values in, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from alerts.reports import figures as m


def point(hour: int, equity: str, day: str = "d1", ratio: str | None = None) -> m.Point:
    at = datetime(2026, 12, 6 if day == "d1" else 7, hour, tzinfo=UTC)
    return m.Point(at, Decimal(equity), Decimal(0), Decimal(ratio) if ratio else None, day)


def test_the_drawdown_restarts_its_peak_each_trading_day():
    points = [point(1, "100"), point(2, "80"), point(1, "60", "d2"), point(2, "50", "d2")]
    # Across days it would be 100 -> 50; within a day the worst is 100 -> 80 (20), not 60 -> 50 (10).
    assert m.intraday_max_drawdown(points) == (Decimal(20), points[1].time)


def test_the_equity_carried_in_is_the_first_days_peak():
    assert m.intraday_max_drawdown([point(1, "90")], before=point(0, "100"))[0] == Decimal(10)


def test_time_in_states_counts_from_the_state_held_at_the_start():
    start, end = datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)
    changes = [
        (datetime(2026, 12, 5, 23, tzinfo=UTC), "HALTED"),  # before: only sets the starting state
        (datetime(2026, 12, 6, 3, tzinfo=UTC), "ACTIVE"),
    ]
    assert m.time_in_states("ACTIVE", changes, start, end) == {"HALTED": 3 * 3600, "ACTIVE": 21 * 3600}


def test_the_desk_curve_sums_each_accounts_last_equity():
    a = m.AccountInputs(1, "a", [point(1, "100"), point(3, "90")])
    b = m.AccountInputs(2, "b", [point(2, "50")], equity_before=point(0, "40"))
    assert [p.equity for p in m.desk_equity_curve([a, b])] == [Decimal(140), Decimal(150), Decimal(140)]


def test_the_largest_risks_are_by_absolute_notional():
    risks = [m.Risk(1, s, "BOTH", Decimal(n), None, None) for s, n in (("A", 10), ("B", -30), ("C", 20))]
    assert [r.symbol for r in m.largest_risks(risks, 2)] == ["B", "C"]
