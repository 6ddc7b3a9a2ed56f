"""Rows in, figures' inputs out: the only part of the report maths that reads the database.

Sources (docs/REPORTS.md): equity, unrealized PnL, margin ratio and drawdown from AccountSnapshot;
realized PnL and fees from Fill, funding from FundingFee (par assets only, like
positions.selectors.realized_pnl_today); trading states from ExchangeAccount's history
(django-simple-history); alerts by opened_at; liquidations from ClosedPosition; gate decisions
from OrderLog; risk actions from RiskAction; leverage and liquidation distance from the
"leverage" and "liq_distance" alerts' values in the period plus the positions held at generation.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Sum

from accounts.models import ExchangeAccount
from alerts.models import Alert
from alerts.reports import archived
from alerts.reports.figures import ZERO, AccountInputs, Point, Risk
from positions.models import AccountSnapshot, ClosedPosition, CloseReason, Fill, FundingFee, OrderLog, Position
from positions.selectors import PAR_ASSETS
from rules.models import RiskAction


def _day(at: datetime) -> str:
    return at.astimezone(ZoneInfo(settings.TRADING_DAY_TZ)).date().isoformat()


SNAPSHOT = ["time", "margin_balance", "unrealized_pnl", "margin_ratio"]
# How far back the equity carried into a period is looked for in the archive (snapshots are
# written every few seconds while the stream runs; a month covers any pause).
CARRY_IN = timedelta(days=31)


def _point(row: dict) -> Point:
    return Point(
        time=row["time"],
        equity=row["margin_balance"],
        unrealized_pnl=row["unrealized_pnl"],
        margin_ratio=row["margin_ratio"],
        day=_day(row["time"]),
    )


def _points(account: ExchangeAccount, start: datetime, end: datetime) -> tuple[list[Point], Point | None]:
    snapshots = AccountSnapshot.objects.filter(account=account).order_by("time")
    hot = list(snapshots.filter(time__gte=start, time__lt=end).values(*SNAPSHOT))
    cold = archived.rows("accountsnapshot", start, end, account.id, SNAPSHOT)
    before = snapshots.filter(time__lt=start).order_by("-time").values(*SNAPSHOT).first()
    if before is None:
        earlier = archived.rows("accountsnapshot", start - CARRY_IN, start, account.id, SNAPSHOT)
        before = earlier[-1] if earlier else None
    points = sorted((_point(r) for r in hot + cold), key=lambda p: p.time)
    return points, _point(before) if before else None


def account_inputs(account: ExchangeAccount, start: datetime, end: datetime) -> AccountInputs:
    points, before = _points(account, start, end)
    inputs = AccountInputs(account_id=account.id, name=account.name, points=points, equity_before=before)
    _money(inputs, account, start, end)
    _states(inputs, account, start, end)
    _events(inputs, account, start, end)
    return inputs


def _money(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    fills = Fill.objects.filter(account=account, time__gte=start, time__lt=end)
    inputs.realized_pnl = fills.aggregate(v=Sum("realized_pnl"))["v"] or ZERO
    inputs.fees = fills.filter(commission_asset__in=PAR_ASSETS).aggregate(v=Sum("commission"))["v"] or ZERO
    funding = FundingFee.objects.filter(account=account, time__gte=start, time__lt=end, asset__in=PAR_ASSETS)
    inputs.funding = funding.aggregate(v=Sum("amount"))["v"] or ZERO
    for row in archived.rows("fill", start, end, account.id, ["realized_pnl", "commission", "commission_asset"]):
        inputs.realized_pnl += row["realized_pnl"]
        if row["commission_asset"] in PAR_ASSETS:
            inputs.fees += row["commission"]
    for row in archived.rows("fundingfee", start, end, account.id, ["amount", "asset"]):
        if row["asset"] in PAR_ASSETS:
            inputs.funding += row["amount"]


def _states(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    history = account.history.order_by("history_date").values_list("history_date", "trading_state")
    first = history.filter(history_date__lte=start).last()
    later = list(history.filter(history_date__gt=start, history_date__lt=end))
    # No row before the period: the account was created in it, or history began later; the state
    # it was created in (or the current one) stands for the period's start.
    inputs.state_at_start = first[1] if first else (later[0][1] if later else account.trading_state)
    inputs.state_changes = later


def _events(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    _alerts(inputs, account, start, end)
    _liquidations(inputs, account, start, end)
    _gate(inputs, account, start, end)
    _actions(inputs, account, start, end)


ALERT = ["opened_at", "level", "reason_code", "rule", "value_at_open", "peak_value"]


def _alerts(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    opened = Alert.objects.filter(account=account, opened_at__gte=start, opened_at__lt=end)
    cold = archived.rows("alert", start, end, account.id, ALERT)
    inputs.alerts = list(opened.values_list("level", "reason_code")) + [(r["level"], r["reason_code"]) for r in cold]
    # Leverage and distance alerts open at any time in the period; archived ones (resolved) count
    # when they opened in it.
    measured = Alert.objects.filter(account=account, opened_at__lt=end).exclude(resolved_at__lt=start)
    rows = list(measured.filter(rule__in=["leverage", "liq_distance"]).values(*ALERT)) + cold
    seen = {"leverage": inputs.leverage_seen, "liq_distance": inputs.liq_distance_seen}
    for row in rows:
        value = row["peak_value"] if row["peak_value"] is not None else row["value_at_open"]
        if row["rule"] in seen and value is not None:
            seen[row["rule"]].append((row["opened_at"], value))


CLOSE = ["closed_at", "symbol", "side", "qty", "exit_price", "realized_pnl", "reason"]


def _liquidations(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    ended = (CloseReason.LIQUIDATED, CloseReason.ADL)
    hot = ClosedPosition.objects.filter(account=account, closed_at__gte=start, closed_at__lt=end, reason__in=ended)
    rows = list(hot.values(*CLOSE)) + [
        r for r in archived.rows("closedposition", start, end, account.id, CLOSE) if r["reason"] in ended
    ]
    inputs.liquidations = [
        {
            "symbol": r["symbol"],
            "side": r["side"],
            "qty": r["qty"],
            "price": r["exit_price"],
            "realized_pnl": r["realized_pnl"],
            "reason": r["reason"],
            "at": r["closed_at"],
        }
        for r in sorted(rows, key=lambda r: r["closed_at"])
    ]


def _gate(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    logs = OrderLog.objects.filter(account=account, created_at__gte=start, created_at__lt=end)
    # Counted in the database: a day can hold millions of checks; only denials are read row by row.
    counts = Counter({row["decision"]: row["n"] for row in logs.order_by().values("decision").annotate(n=Count("id"))})
    counts.update(archived.decision_counts(start, end, account.id))
    inputs.gate_decisions = dict(counts)
    denied = logs.filter(decision="denied").order_by().values_list("reason_codes", flat=True)
    inputs.denied_codes = list(denied.iterator(chunk_size=20000)) + archived.denied_codes(start, end, account.id)


def _actions(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    actions = RiskAction.objects.filter(account=account)
    inputs.actions_proposed = actions.filter(created_at__gte=start, created_at__lt=end).count()
    executed = RiskAction.Status.EXECUTED
    inputs.actions_executed = actions.filter(status=executed, executed_at__gte=start, executed_at__lt=end).count()
    # Archived by the day they were created: those created in the period.
    cold = archived.rows("riskaction", start, end, account.id, ["status", "executed_at"])
    inputs.actions_proposed += len(cold)
    inputs.actions_executed += sum(
        1 for r in cold if r["status"] == executed and r["executed_at"] and start <= r["executed_at"] < end
    )


def positions_at_close(inputs: AccountInputs, at: datetime) -> None:
    """The positions held now stand for the close: the scheduled run starts just after it.
    Their leverage and distance to liquidation count towards the peaks too."""
    for p in Position.objects.filter(account_id=inputs.account_id).exclude(quantity=0).select_related("symbol"):
        mark = p.mark_price or p.entry_price
        size = abs(p.quantity * mark)
        notional = size if p.is_long else -size
        distance = abs(mark - p.liquidation_price) / mark if p.liquidation_price and mark else None
        inputs.risks.append(
            Risk(
                account_id=inputs.account_id,
                symbol=p.symbol.name,
                side=p.side,
                notional=notional,
                leverage=Decimal(p.leverage),
                liq_distance=distance,
            )
        )
        inputs.leverage_seen.append((at, Decimal(p.leverage)))
        if distance is not None:
            inputs.liq_distance_seen.append((at, distance))
