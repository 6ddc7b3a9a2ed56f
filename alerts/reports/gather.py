"""Rows in, figures' inputs out: the only part of the report maths that reads the database.

Sources (docs/REPORTS.md): equity, unrealized PnL, margin ratio and drawdown from AccountSnapshot;
realized PnL and fees from Fill, funding from FundingFee (par assets only, like
positions.selectors.realized_pnl_today); trading states from ExchangeAccount's history
(django-simple-history); alerts by opened_at; liquidations from ClosedPosition; gate decisions
from OrderLog; risk actions from RiskAction; leverage and liquidation distance from the
"leverage" and "liq_distance" alerts' values in the period plus the positions held at generation.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Sum

from accounts.models import ExchangeAccount
from alerts.models import Alert
from alerts.reports.figures import ZERO, AccountInputs, Point, Risk
from positions.models import AccountSnapshot, ClosedPosition, CloseReason, Fill, FundingFee, OrderLog, Position
from positions.selectors import PAR_ASSETS
from rules.models import RiskAction


def _day(at: datetime) -> str:
    return at.astimezone(ZoneInfo(settings.TRADING_DAY_TZ)).date().isoformat()


def _point(row: AccountSnapshot) -> Point:
    return Point(
        time=row.time,
        equity=row.margin_balance,
        unrealized_pnl=row.unrealized_pnl,
        margin_ratio=row.margin_ratio,
        day=_day(row.time),
    )


def account_inputs(account: ExchangeAccount, start: datetime, end: datetime) -> AccountInputs:
    snapshots = AccountSnapshot.objects.filter(account=account)
    before = snapshots.filter(time__lt=start).order_by("-time").first()
    inputs = AccountInputs(
        account_id=account.id,
        name=account.name,
        points=[_point(s) for s in snapshots.filter(time__gte=start, time__lt=end).order_by("time")],
        equity_before=_point(before) if before else None,
    )
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


def _states(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    history = account.history.order_by("history_date").values_list("history_date", "trading_state")
    first = history.filter(history_date__lte=start).last()
    later = list(history.filter(history_date__gt=start, history_date__lt=end))
    # No row before the period: the account was created in it, or history began later; the state
    # it was created in (or the current one) stands for the period's start.
    inputs.state_at_start = first[1] if first else (later[0][1] if later else account.trading_state)
    inputs.state_changes = later


def _events(inputs: AccountInputs, account: ExchangeAccount, start: datetime, end: datetime) -> None:
    alerts = Alert.objects.filter(account=account, opened_at__gte=start, opened_at__lt=end)
    inputs.alerts = list(alerts.values_list("level", "reason_code"))
    measured = Alert.objects.filter(account=account, opened_at__lt=end).exclude(resolved_at__lt=start)
    for rule, seen in (("leverage", inputs.leverage_seen), ("liq_distance", inputs.liq_distance_seen)):
        for opened, open_value, worst in measured.filter(rule=rule).values_list(
            "opened_at", "value_at_open", "peak_value"
        ):
            value = worst if worst is not None else open_value
            if value is not None:
                seen.append((opened, value))
    closes = ClosedPosition.objects.filter(
        account=account, closed_at__gte=start, closed_at__lt=end, reason__in=[CloseReason.LIQUIDATED, CloseReason.ADL]
    ).order_by("closed_at")
    inputs.liquidations = [
        {
            "symbol": c.symbol,
            "side": c.side,
            "qty": c.qty,
            "price": c.exit_price,
            "realized_pnl": c.realized_pnl,
            "reason": c.reason,
            "at": c.closed_at,
        }
        for c in closes
    ]
    logs = OrderLog.objects.filter(account=account, created_at__gte=start, created_at__lt=end)
    # Counted in the database: a day can hold millions of checks; only denials are read row by row.
    counts = logs.order_by().values("decision").annotate(n=Count("id"))
    inputs.gate_decisions = {row["decision"]: row["n"] for row in counts}
    denied = logs.filter(decision="denied").order_by().values_list("reason_codes", flat=True)
    inputs.denied_codes = list(denied.iterator(chunk_size=20000))
    actions = RiskAction.objects.filter(account=account)
    inputs.actions_proposed = actions.filter(created_at__gte=start, created_at__lt=end).count()
    inputs.actions_executed = actions.filter(
        status=RiskAction.Status.EXECUTED, executed_at__gte=start, executed_at__lt=end
    ).count()


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
