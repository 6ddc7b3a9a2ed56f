"""A risk report's figures in plain Python: dataclasses in, results out (no Django here).

`alerts/reports/gather.py` reads the rows at the edge and hands them over as the values below;
docs/REPORTS.md says which table each figure comes from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Point:
    """One account snapshot: equity is the margin balance (wallet + unrealized PnL)."""

    time: datetime
    equity: Decimal
    unrealized_pnl: Decimal
    margin_ratio: Decimal | None
    day: str  # the trading day (TRADING_DAY_TZ) the point belongs to: drawdown restarts each day


@dataclass(frozen=True)
class Risk:
    """A position at the close: what may hurt most."""

    account_id: int
    symbol: str
    side: str
    notional: Decimal  # signed: negative for a short
    leverage: Decimal | None
    liq_distance: Decimal | None  # |mark - liquidation| / mark


@dataclass
class AccountInputs:
    account_id: int
    name: str
    points: list[Point]
    equity_before: Point | None = None  # the last snapshot before the period (its start equity)
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    state_at_start: str = "ACTIVE"
    state_changes: list[tuple[datetime, str]] = field(default_factory=list)
    alerts: list[tuple[int, str]] = field(default_factory=list)  # (level, reason code)
    leverage_seen: list[tuple[datetime, Decimal]] = field(default_factory=list)
    liq_distance_seen: list[tuple[datetime, Decimal]] = field(default_factory=list)
    liquidations: list[dict] = field(default_factory=list)
    gate_decisions: dict[str, int] = field(default_factory=dict)  # OrderLog rows per decision
    denied_codes: list[list[str]] = field(default_factory=list)  # each denied row's reason codes
    actions_proposed: int = 0
    actions_executed: int = 0
    risks: list[Risk] = field(default_factory=list)


@dataclass
class AccountFigures:
    account_id: int
    name: str
    start_equity: Decimal | None
    end_equity: Decimal | None
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    net_realized: Decimal
    unrealized_pnl: Decimal | None
    max_drawdown: Decimal
    max_drawdown_at: datetime | None
    peak_leverage: Decimal | None
    peak_leverage_at: datetime | None
    peak_margin_ratio: Decimal | None
    peak_margin_ratio_at: datetime | None
    min_liq_distance: Decimal | None
    min_liq_distance_at: datetime | None
    state_seconds: dict[str, float]
    alerts_by_level: dict[int, int]
    alerts_by_code: dict[str, int]
    liquidations: list[dict]
    gate_checks: int
    gate_denials: int
    denials_by_reason: dict[str, int]
    actions_proposed: int
    actions_executed: int


def start_equity(inputs: AccountInputs) -> Decimal | None:
    if inputs.equity_before is not None:
        return inputs.equity_before.equity
    return inputs.points[0].equity if inputs.points else None


def end_equity(inputs: AccountInputs) -> Decimal | None:
    if inputs.points:
        return inputs.points[-1].equity
    return inputs.equity_before.equity if inputs.equity_before else None


def intraday_max_drawdown(points: list[Point], before: Point | None = None) -> tuple[Decimal, datetime | None]:
    """The largest fall from a running peak of equity within one trading day (the peak restarts
    each day at the day's first point, or at the equity carried in from before the period)."""
    worst, worst_at = ZERO, None
    day, peak = None, None
    if before is not None:
        day, peak = None, before.equity
    for p in points:
        if day is not None and p.day != day:
            peak = p.equity
        day = p.day
        peak = p.equity if peak is None else max(peak, p.equity)
        fall = peak - p.equity
        if fall > worst:
            worst, worst_at = fall, p.time
    return worst, worst_at


def peak(
    seen: Iterable[tuple[datetime, Decimal | None]], *, lowest: bool = False
) -> tuple[Decimal | None, datetime | None]:
    best, best_at = None, None
    for at, value in seen:
        if value is None:
            continue
        if best is None or (value < best if lowest else value > best):
            best, best_at = value, at
    return best, best_at


def time_in_states(
    state_at_start: str, changes: list[tuple[datetime, str]], start: datetime, end: datetime
) -> dict[str, float]:
    """Seconds spent in each trading state between start and end, from the state history."""
    seconds: dict[str, float] = {}
    state, since = state_at_start, start
    for at, new_state in sorted(changes):
        if at <= start:
            state = new_state
            continue
        if at >= end:
            break
        seconds[state] = seconds.get(state, 0.0) + (at - since).total_seconds()
        state, since = new_state, at
    seconds[state] = seconds.get(state, 0.0) + (end - since).total_seconds()
    return {k: v for k, v in seconds.items() if v > 0}


def account_figures(inputs: AccountInputs, start: datetime, end: datetime) -> AccountFigures:
    drawdown, drawdown_at = intraday_max_drawdown(inputs.points, inputs.equity_before)
    lev, lev_at = peak(inputs.leverage_seen)
    mr, mr_at = peak((p.time, p.margin_ratio) for p in inputs.points)
    dist, dist_at = peak(inputs.liq_distance_seen, lowest=True)
    denials = Counter(code for codes in inputs.denied_codes for code in (codes or ["-"]))
    last = inputs.points[-1] if inputs.points else inputs.equity_before
    return AccountFigures(
        account_id=inputs.account_id,
        name=inputs.name,
        start_equity=start_equity(inputs),
        end_equity=end_equity(inputs),
        realized_pnl=inputs.realized_pnl,
        fees=inputs.fees,
        funding=inputs.funding,
        net_realized=inputs.realized_pnl - inputs.fees + inputs.funding,
        unrealized_pnl=last.unrealized_pnl if last else None,
        max_drawdown=drawdown,
        max_drawdown_at=drawdown_at,
        peak_leverage=lev,
        peak_leverage_at=lev_at,
        peak_margin_ratio=mr,
        peak_margin_ratio_at=mr_at,
        min_liq_distance=dist,
        min_liq_distance_at=dist_at,
        state_seconds=time_in_states(inputs.state_at_start, inputs.state_changes, start, end),
        alerts_by_level=dict(sorted(Counter(level for level, _ in inputs.alerts).items())),
        alerts_by_code=dict(sorted(Counter(code for _, code in inputs.alerts).items())),
        liquidations=list(inputs.liquidations),
        # Every row the gate wrote (allowed, later submitted/rejected/unknown, or denied); orders only
        # seen on the exchange were never checked.
        gate_checks=sum(n for decision, n in inputs.gate_decisions.items() if decision != "observed"),
        gate_denials=inputs.gate_decisions.get("denied", 0),
        denials_by_reason=dict(sorted(denials.items())),
        actions_proposed=inputs.actions_proposed,
        actions_executed=inputs.actions_executed,
    )


def desk_equity_curve(accounts: list[AccountInputs]) -> list[Point]:
    """The desk's equity as the sum of every account's last known equity at each snapshot time."""
    last: dict[int, Point] = {a.account_id: a.equity_before for a in accounts if a.equity_before is not None}
    events = sorted((p.time, a.account_id, p) for a in accounts for p in a.points)
    curve = []
    for at, account_id, p in events:
        last[account_id] = p
        ratios = [q.margin_ratio for q in last.values() if q.margin_ratio is not None]
        curve.append(
            Point(
                time=at,
                equity=sum((q.equity for q in last.values()), ZERO),
                unrealized_pnl=sum((q.unrealized_pnl for q in last.values()), ZERO),
                margin_ratio=max(ratios) if ratios else None,
                day=p.day,
            )
        )
    return curve


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return sum(present, ZERO) if present else None


def _merge(dicts: Iterable[dict]) -> dict:
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(sorted(total.items()))


def desk_figures(
    accounts: list[AccountInputs], per_account: list[AccountFigures], start: datetime, end: datetime
) -> AccountFigures:
    """The desk as one book: sums of money, the worst of peaks, the desk curve's own drawdown."""
    curve = desk_equity_curve(accounts)
    before = [a.equity_before for a in accounts if a.equity_before is not None]
    drawdown, drawdown_at = intraday_max_drawdown(curve, None)
    lev, lev_at = peak((f.peak_leverage_at, f.peak_leverage) for f in per_account)
    mr, mr_at = peak((f.peak_margin_ratio_at, f.peak_margin_ratio) for f in per_account)
    dist, dist_at = peak(((f.min_liq_distance_at, f.min_liq_distance) for f in per_account), lowest=True)
    states: Counter = Counter()
    for f in per_account:
        states.update(f.state_seconds)
    return AccountFigures(
        account_id=0,
        name="desk",
        start_equity=_sum(f.start_equity for f in per_account),
        end_equity=_sum(f.end_equity for f in per_account),
        realized_pnl=sum((f.realized_pnl for f in per_account), ZERO),
        fees=sum((f.fees for f in per_account), ZERO),
        funding=sum((f.funding for f in per_account), ZERO),
        net_realized=sum((f.net_realized for f in per_account), ZERO),
        unrealized_pnl=_sum(f.unrealized_pnl for f in per_account),
        max_drawdown=drawdown if before or curve else ZERO,
        max_drawdown_at=drawdown_at,
        peak_leverage=lev,
        peak_leverage_at=lev_at,
        peak_margin_ratio=mr,
        peak_margin_ratio_at=mr_at,
        min_liq_distance=dist,
        min_liq_distance_at=dist_at,
        state_seconds=dict(states),  # account-seconds
        alerts_by_level=_merge(f.alerts_by_level for f in per_account),
        alerts_by_code=_merge(f.alerts_by_code for f in per_account),
        liquidations=[liq for f in per_account for liq in f.liquidations],
        gate_checks=sum(f.gate_checks for f in per_account),
        gate_denials=sum(f.gate_denials for f in per_account),
        denials_by_reason=_merge(f.denials_by_reason for f in per_account),
        actions_proposed=sum(f.actions_proposed for f in per_account),
        actions_executed=sum(f.actions_executed for f in per_account),
    )


def largest_risks(risks: Iterable[Risk], n: int = 5) -> list[Risk]:
    """The n largest positions at the close by absolute notional (closest to liquidation first on ties)."""
    return sorted(
        risks, key=lambda r: (-abs(r.notional), r.liq_distance if r.liq_distance is not None else Decimal(9))
    )[:n]


def exposure_by_symbol(risks: Iterable[Risk]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for r in risks:
        total[r.symbol] = total.get(r.symbol, ZERO) + r.notional
    return dict(sorted(total.items(), key=lambda kv: -abs(kv[1])))


def cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT, ROUND_HALF_UP)
