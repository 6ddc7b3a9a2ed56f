from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import ExchangeAccount
from marketdata.models import Symbol
from positions.book import AccountRisk, PositionRisk
from positions.models import AccountSnapshot, OrderDecision, OrderLog, OrderSource, Position

SNAPSHOT_EVERY_S = 10  # AccountSnapshot rows per account are at least this far apart


@transaction.atomic
def positions_write(*, account_id: int, positions: list[PositionRisk]) -> None:
    """Make the account's Position rows mirror the book: update, create, and delete closed ones."""
    symbols = {s.name: s for s in Symbol.objects.filter(name__in={p.symbol for p in positions})}
    keep = []
    for p in positions:
        symbol = symbols.get(p.symbol)
        if symbol is None:
            continue  # unknown to the desk until refresh_symbols runs; the book still watches it
        row, _ = Position.objects.update_or_create(
            account_id=account_id,
            symbol=symbol,
            side=p.side,
            defaults=dict(
                quantity=p.qty,
                entry_price=p.entry_price,
                leverage=p.leverage,
                margin_type=p.margin_type,
                isolated_wallet=p.isolated_wallet,
                mark_price=p.mark,
                unrealized_pnl=p.unrealized_pnl or Decimal(0),
                liquidation_price=p.liquidation_price,
            ),
        )
        keep.append(row.pk)
    Position.objects.filter(account_id=account_id).exclude(pk__in=keep).delete()


def snapshot_write(*, account_id: int, risk: AccountRisk, force: bool = False) -> AccountSnapshot | None:
    """An AccountSnapshot, at most one per SNAPSHOT_EVERY_S per account; incomplete figures are not snapshotted."""
    if not risk.complete or risk.wallet_balance is None or risk.margin_balance is None:
        return None
    now = timezone.now()
    recent = AccountSnapshot.objects.filter(account_id=account_id, time__gt=now - timedelta(seconds=SNAPSHOT_EVERY_S))
    if not force and recent.exists():
        return None
    return AccountSnapshot.objects.create(
        account_id=account_id,
        time=now,
        wallet_balance=risk.wallet_balance,
        margin_balance=risk.margin_balance,
        maint_margin=risk.maint_margin or Decimal(0),
        unrealized_pnl=risk.unrealized_pnl or Decimal(0),
        margin_ratio=risk.margin_ratio,
    )


def order_event_record(*, account_id: int, event: dict) -> OrderLog | None:
    """An ORDER_TRADE_UPDATE seen on the exchange, as an OrderLog row (source 'exchange')."""
    order = event.get("o") or {}
    if not order.get("s"):
        return None
    if not ExchangeAccount.objects.filter(pk=account_id).exists():
        return None
    return OrderLog.objects.create(
        account_id=account_id,
        source=OrderSource.EXCHANGE,
        symbol=order["s"],
        side=order.get("S", ""),
        position_side=order.get("ps", "BOTH"),
        order_type=order.get("o", ""),
        quantity=_dec(order.get("q")),
        price=_dec(order.get("p")),
        reduce_only=bool(order.get("R")),
        client_order_id=str(order.get("c", ""))[:64],
        decision=OrderDecision.OBSERVED,
        exchange_order_id=str(order.get("i", "")),
        exchange_status=str(order.get("X", "")),
        details={
            "execution": order.get("x"),
            "filled": order.get("z"),
            "avg_price": order.get("ap"),
            "realized_pnl": order.get("rp"),
            "event_time": event.get("E"),
            "time": datetime.fromtimestamp(int(event.get("E", 0)) / 1000, tz=UTC).isoformat(),
        },
    )


def _dec(value: object) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None
