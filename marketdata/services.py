from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from accounts.models import ExchangeAccount
from marketdata.models import LeverageBracket, Symbol
from positions.margin import Bracket, brackets_from_binance


def exchange_max_leverage() -> int:
    """The highest leverage any known symbol allows (its first bracket), or the
    configured exchange maximum when no bracket table has been loaded yet."""
    top = LeverageBracket.objects.filter(account__isnull=True).aggregate(m=Max("initial_leverage"))["m"]
    return int(top or settings.EXCHANGE_MAX_LEVERAGE)


@transaction.atomic
def brackets_replace(*, symbol: Symbol, rows: list[dict], account: ExchangeAccount | None = None) -> int:
    """Replace one symbol's bracket table (the default, or one account's scaled copy)
    with the rows Binance sent. The table is validated first (order, contiguity, cum
    recurrence), so a bad table never replaces a good one."""
    brackets = brackets_from_binance(rows)
    coef = _coef(rows)
    LeverageBracket.objects.filter(symbol=symbol, account=account).delete()
    LeverageBracket.objects.bulk_create(
        LeverageBracket(
            symbol=symbol,
            account=account,
            bracket=number,
            initial_leverage=b.max_leverage,
            notional_floor=b.floor,
            notional_cap=b.cap,
            maint_margin_ratio=b.mmr,
            cum=b.cum,
            notional_coef=coef,
        )
        for number, b in enumerate(brackets, start=1)
    )
    return len(brackets)


def _coef(rows: list[dict]) -> Decimal | None:
    value = rows[0].get("notionalCoef") if rows and isinstance(rows[0], dict) else None
    return Decimal(str(value)) if value is not None else None


def brackets_for(*, symbol: Symbol, account: ExchangeAccount | None = None) -> list[Bracket]:
    """The table that applies: the account's own when the exchange scaled it, else the symbol's."""
    rows = list(LeverageBracket.objects.filter(symbol=symbol, account=account).order_by("bracket"))
    if not rows and account is not None:
        rows = list(LeverageBracket.objects.filter(symbol=symbol, account__isnull=True).order_by("bracket"))
    return [
        Bracket(
            floor=r.notional_floor,
            cap=r.notional_cap,
            mmr=r.maint_margin_ratio,
            cum=r.cum,
            max_leverage=r.initial_leverage,
        )
        for r in rows
    ]
