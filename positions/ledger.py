"""The fill ledger: fills, funding and closed positions as the exchange reports them, and the
liquidation as an event the desk records and shouts about.

Every service here is idempotent. The stream process and the REST reconciliation may both report
the same fill, funding payment, close or liquidation (a reconnect replays, `forceOrders` finds what
the stream already told), and only the first report writes. The stream process calls these from
its sink thread, so each does a handful of statements at most.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum

from positions.models import ClosedPosition, CloseReason, Fill, FillKind, FundingFee, Position

log = logging.getLogger(__name__)

ZERO = Decimal(0)
FILL_EXECUTIONS = ("TRADE", "CALCULATED")  # CALCULATED: Binance's execution type of a liquidation fill
ADL_CLIENT_ID = "adl_autoclose"
LIQUIDATION_CLIENT_PREFIX = "autoclose-"
# A close reported without an order id (ACCOUNT_UPDATE pa=0) and a liquidation order of the same
# position are one event when this close in time: the user stream sends the two a few ms apart, in
# either order, and the sink may see them in different batches.
SAME_CLOSE_WINDOW = timedelta(seconds=10)


def _dec(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _time(ms: object) -> datetime:
    return datetime.fromtimestamp(int(ms or 0) / 1000, tz=UTC)


def fill_kind(order: dict[str, Any]) -> str:
    """trade, liquidation or adl, by Binance's marks: client id `adl_autoclose` for ADL, type
    LIQUIDATION or a client id starting `autoclose-` for a liquidation."""
    client_id = str(order.get("c") or "")
    if client_id == ADL_CLIENT_ID:
        return FillKind.ADL
    if order.get("o") == "LIQUIDATION" or client_id.startswith(LIQUIDATION_CLIENT_PREFIX):
        return FillKind.LIQUIDATION
    return FillKind.TRADE


def is_liquidation(event: dict[str, Any]) -> bool:
    return fill_kind(event.get("o") or {}) != FillKind.TRADE


# --------------------------------------------------------------------------- fills and funding


def fill_record(*, account_id: int, event: dict[str, Any]) -> Fill | None:
    """The fill an ORDER_TRADE_UPDATE carries (x == TRADE or CALCULATED), or None: not a fill,
    or already recorded."""
    order = event.get("o") or {}
    qty = _dec(order.get("l"))
    if order.get("x") not in FILL_EXECUTIONS or not order.get("s") or not qty:
        return None
    trade_id = int(order.get("t") or 0)
    cum_qty = _dec(order.get("z")) or qty
    key = f"t:{order['s']}:{trade_id}" if trade_id else f"o:{order.get('i')}:{cum_qty.normalize()}"
    if Fill.objects.filter(account_id=account_id, dedupe_key=key).exists():
        return None
    fill = Fill(
        account_id=account_id,
        symbol=order["s"],
        side=str(order.get("S") or ""),
        position_side=str(order.get("ps") or "BOTH"),
        order_id=str(order.get("i") or ""),
        client_order_id=str(order.get("c") or "")[:64],
        trade_id=trade_id,
        qty=qty,
        cum_qty=cum_qty,
        price=_dec(order.get("L")) or _dec(order.get("ap")) or ZERO,
        realized_pnl=_dec(order.get("rp")) or ZERO,
        commission=_dec(order.get("n")) or ZERO,
        commission_asset=str(order.get("N") or ""),
        kind=fill_kind(order),
        time=_time(order.get("T") or event.get("T") or event.get("E")),
        dedupe_key=key,
    )
    try:
        with transaction.atomic():  # a savepoint: the race loser must not poison the caller's transaction
            fill.save()
    except IntegrityError:  # the other reporter won between the check and the insert
        return None
    return fill


def funding_record(*, account_id: int, event: dict[str, Any]) -> list[FundingFee]:
    """The funding payments of an ACCOUNT_UPDATE with reason FUNDING_FEE: one per asset of `B`
    whose balance change `bc` is not zero. Binance sends a position row `P` only for an isolated
    position's funding, so a single `P` row names the symbol; cross funding has none."""
    update = event.get("a") or {}
    if update.get("m") != "FUNDING_FEE":
        return []
    positions = update.get("P") or []
    symbol = str(positions[0].get("s") or "") if len(positions) == 1 else ""
    at = _time(event.get("T") or event.get("E"))
    recorded = []
    for balance in update.get("B") or []:
        amount = _dec(balance.get("bc"))
        asset = str(balance.get("a") or "")
        if not amount or not asset:
            continue
        try:
            with transaction.atomic():
                fee, created = FundingFee.objects.get_or_create(
                    account_id=account_id, time=at, asset=asset, symbol=symbol, defaults={"amount": amount}
                )
        except IntegrityError:
            continue
        if created:
            recorded.append(fee)
    return recorded


# --------------------------------------------------------------------------- closes


def _order_totals(account_id: int, symbol: str, order_id: str) -> tuple[Decimal | None, Decimal]:
    sums = Fill.objects.filter(account_id=account_id, symbol=symbol, order_id=order_id).aggregate(
        rp=Sum("realized_pnl"), fee=Sum("commission")
    )
    return sums["rp"], sums["fee"] or ZERO


def _life_totals(account_id: int, symbol: str, side: str, closed_at: datetime) -> tuple[Decimal | None, Decimal]:
    """Without a closing order id: the realized PnL of every fill of this position since it was
    last closed (the fills of the closing order arrive before the ACCOUNT_UPDATE that says pa=0)."""
    previous = (
        ClosedPosition.objects.filter(account_id=account_id, symbol=symbol, side=side, closed_at__lt=closed_at)
        .order_by("-closed_at")
        .values_list("closed_at", flat=True)
        .first()
    )
    fills = Fill.objects.filter(account_id=account_id, symbol=symbol, position_side=side, time__lte=closed_at)
    if previous is not None:
        fills = fills.filter(time__gt=previous)
    sums = fills.aggregate(rp=Sum("realized_pnl"), fee=Sum("commission"))
    return sums["rp"], sums["fee"] or ZERO


def _before_details(before: dict[str, Any] | None) -> dict[str, str | None]:
    """The book's last plain row before the close, as strings (JSON keeps them exact)."""
    if not before:
        return {}
    keys = ("liquidation_price", "liquidation_distance", "mark", "qty", "entry_price")
    return {k: (str(before[k]) if before.get(k) is not None else None) for k in keys}


def _same_close(account_id: int, symbol: str, side: str, closed_at: datetime) -> ClosedPosition | None:
    return (
        ClosedPosition.objects.filter(
            account_id=account_id,
            symbol=symbol,
            side=side,
            closed_at__gte=closed_at - SAME_CLOSE_WINDOW,
            closed_at__lte=closed_at + SAME_CLOSE_WINDOW,
        )
        .order_by("-closed_at")
        .first()
    )


def position_close_record(
    *,
    account_id: int,
    symbol: str,
    side: str,
    reason: str,
    time_ms: int,
    qty: Decimal,
    entry_price: Decimal | None,
    exit_price: Decimal | None = None,
    before: dict[str, Any] | None = None,
    order_id: str = "",
    commission: Decimal | None = None,
) -> ClosedPosition | None:
    """A position the exchange reported closed, or None when this close is already recorded.

    The realized result is the `rp` sum of the closing order's fills when the order is known,
    else of the position's fills since its last close. The position's open alerts end
    `position_closed` or `liquidated`, and the account's pending risk actions expire when it is
    now flat or liquidated: their plans describe an account that no longer exists.
    """
    if reason not in CloseReason.values:
        raise ValueError(f"unknown close reason {reason!r}")
    closed_at = _time(time_ms)
    order_id = str(order_id or "")
    before_qty = _dec((before or {}).get("qty")) or ZERO
    # One-way (BOTH) quantities are signed as Binance reports them: the sign is the direction.
    short = side == "SHORT" or (side == "BOTH" and (qty < 0 or before_qty < 0))
    row, created = _close_row(
        account_id=account_id,
        symbol=symbol,
        side=side,
        reason=reason,
        closed_at=closed_at,
        qty=abs(qty),
        entry_price=entry_price,
        exit_price=exit_price,
        before=before,
        order_id=order_id,
        commission=commission,
        direction="short" if short else "long",
    )
    if not created:
        return None
    _after_close(row)
    return row


def _close_row(
    *,
    account_id: int,
    symbol: str,
    side: str,
    reason: str,
    closed_at: datetime,
    qty: Decimal,
    entry_price: Decimal | None,
    exit_price: Decimal | None,
    before: dict[str, Any] | None,
    order_id: str,
    commission: Decimal | None,
    direction: str,
) -> tuple[ClosedPosition, bool]:
    """The row and whether this report is the first of its close (the one that acts)."""
    if order_id:
        realized, fees = _order_totals(account_id, symbol, order_id)
    else:
        realized, fees = _life_totals(account_id, symbol, side, closed_at)
    values = {
        "qty": qty,
        "entry_price": entry_price,
        "exit_price": exit_price,
        "realized_pnl": realized,
        "commission": commission if commission is not None else fees,
        "reason": reason,
        "closed_at": closed_at,
        "details": {**_before_details(before), "direction": direction},
        "exchange_order_id": order_id,
    }
    with transaction.atomic():
        same = _same_close(account_id, symbol, side, closed_at)
        if same is not None and not order_id:
            return same, False  # the liquidation (or the same pa=0, replayed) is already here
        if same is not None and same.exchange_order_id == order_id:
            return _refresh_totals(same, realized, fees, qty, exit_price), False
        if same is not None and not same.exchange_order_id:
            # The pa=0 came first, without an order id: this report names the order (and may say it
            # was a liquidation). One close, one row; act again only if the ending changed.
            upgraded = same.reason != reason and reason != CloseReason.CLOSED
            for name, value in values.items():
                setattr(same, name, value)
            same.close_key = order_id
            same.save()
            return same, upgraded
        key = order_id or f"t{int(closed_at.timestamp() * 1000)}"
        try:
            with transaction.atomic():
                row = ClosedPosition.objects.create(
                    account_id=account_id, symbol=symbol, side=side, close_key=key, **values
                )
        except IntegrityError:
            return ClosedPosition.objects.get(account_id=account_id, symbol=symbol, side=side, close_key=key), False
    return row, True


def _refresh_totals(
    row: ClosedPosition, realized: Decimal | None, fees: Decimal, qty: Decimal, exit_price: Decimal | None
) -> ClosedPosition:
    """A later partial fill of the same closing order: the row's sums follow the order's fills."""
    row.realized_pnl = realized
    row.commission = fees
    row.qty = max(row.qty, qty)
    if exit_price is not None:
        row.exit_price = exit_price
    row.save(update_fields=["realized_pnl", "commission", "qty", "exit_price"])
    return row


def _after_close(row: ClosedPosition) -> None:
    from alerts.services import alerts_resolve_for_position
    from rules.services import actions_expire

    liquidated = row.is_liquidation
    alerts_resolve_for_position(
        account_id=row.account_id,
        symbol=row.symbol,
        side=row.side,
        resolution="liquidated" if liquidated else "position_closed",
    )
    if liquidated:
        actions_expire(account_id=row.account_id, reason=f"{row.symbol} {row.side} {row.get_reason_display()}")
    elif _flat(row):
        actions_expire(account_id=row.account_id, reason=f"flat after {row.symbol} {row.side} closed")


def _flat(row: ClosedPosition) -> bool:
    """No other position open. The row of the position just closed may still be in the table
    (the sink writes it within a second), so it does not count."""
    others = Position.objects.filter(account_id=row.account_id).exclude(quantity=0)
    return not others.exclude(symbol__name=row.symbol, side=row.side).exists()


# --------------------------------------------------------------------------- liquidations


def liquidation_record(*, account_id: int, event: dict[str, Any], before: dict[str, Any] | None):
    """The ORDER_TRADE_UPDATE of a liquidation or an ADL: the fill, the closed position (with the
    desk's last liquidation price and distance before the event), the LIQUIDATED emergency alert,
    the position's other alerts resolved `liquidated`, the pending risk actions expired.

    Returns the new Alert, or None when this is not a liquidation fill or the liquidation was
    already raised. The alert is raised on every report: `alert_liquidated` is idempotent per
    exchange order id, so a report that crashed after the ledger rows still raises it on replay.
    """
    from alerts.services import alert_liquidated

    order = event.get("o") or {}
    kind = fill_kind(order)
    if kind == FillKind.TRADE or order.get("x") not in FILL_EXECUTIONS or not order.get("s"):
        return None
    fill_record(account_id=account_id, event=event)
    symbol, side, order_id = order["s"], str(order.get("ps") or "BOTH"), str(order.get("i") or "")
    time_ms = int(order.get("T") or event.get("T") or event.get("E") or 0)
    qty = _dec(order.get("z")) or _dec(order.get("l")) or ZERO
    price = _dec(order.get("ap")) or _dec(order.get("L"))
    row, created = _close_row(
        account_id=account_id,
        symbol=symbol,
        side=side,
        reason=CloseReason.ADL if kind == FillKind.ADL else CloseReason.LIQUIDATED,
        closed_at=_time(time_ms),
        qty=qty,
        entry_price=_dec((before or {}).get("entry_price")),
        exit_price=price,
        before=before,
        order_id=order_id,
        commission=None,
        direction="long" if order.get("S") == "SELL" else "short",  # a SELL closes a long
    )
    # The emergency first: it is what must reach people within seconds; resolving the position's
    # other alerts and expiring actions follow.
    alert = alert_liquidated(
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_id=order_id,
        qty=qty,
        price=price,
        realized_pnl=row.realized_pnl if row.realized_pnl is not None else ZERO,
        time_ms=time_ms,
        last_liquidation_price=_dec((before or {}).get("liquidation_price")),
        last_distance=_dec((before or {}).get("liquidation_distance")),
        mark_price=_dec((before or {}).get("mark")) or price,
    )
    if created:
        _after_close(row)
    return alert
