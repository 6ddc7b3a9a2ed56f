from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from accounts.models import ExchangeAccount
from marketdata.exchange import BinanceFutures, ExchangePosition, SymbolFilters
from marketdata.models import LeverageBracket, Symbol, TickerHistory
from positions.margin import Bracket, brackets_from_binance

log = logging.getLogger(__name__)


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


def symbols_refresh(*, filters: list[SymbolFilters]) -> int:
    """Create or update symbols from exchangeInfo; returns how many were written."""
    for f in filters:
        Symbol.objects.update_or_create(
            name=f.symbol,
            defaults=dict(
                status=f.status,
                base_asset=f.base_asset,
                quote_asset=f.quote_asset,
                margin_asset=f.margin_asset,
                tick_size=f.tick_size,
                step_size=f.step_size,
                min_qty=f.min_qty,
                max_qty=f.max_qty,
                market_max_qty=f.market_max_qty,
                min_notional=f.min_notional,
                price_precision=f.price_precision,
                quantity_precision=f.quantity_precision,
            ),
        )
    return len(filters)


def brackets_store(*, tables: dict[str, list[Bracket]], account: ExchangeAccount | None = None) -> int:
    """Store bracket tables for known symbols. For an account, only tables that differ from
    the symbol default are kept (the exchange scaled them); equal ones are dropped."""
    written = 0
    symbols = {s.name: s for s in Symbol.objects.filter(name__in=tables)}
    for name, table in tables.items():
        symbol = symbols.get(name)
        if symbol is None:
            continue
        if account is not None and brackets_for(symbol=symbol) == table:
            LeverageBracket.objects.filter(symbol=symbol, account=account).delete()
            continue
        rows = [
            {
                "bracket": i,
                "initialLeverage": b.max_leverage,
                "notionalFloor": str(b.floor),
                "notionalCap": str(b.cap),
                "maintMarginRatio": str(b.mmr),
                "cum": str(b.cum),
            }
            for i, b in enumerate(table, start=1)
        ]
        written += brackets_replace(symbol=symbol, rows=rows, account=account)
    return written


MARK_HISTORY_EVERY_S = 60  # TickerHistory keeps one mark per symbol per minute


def marks_write(*, marks: dict[str, tuple[Decimal, int]]) -> None:
    """Latest marks onto Symbol, and one TickerHistory row per symbol per minute."""
    symbols = {s.name: s for s in Symbol.objects.filter(name__in=marks)}
    history = []
    for name, (price, ts_ms) in marks.items():
        symbol = symbols.get(name)
        if symbol is None:
            continue
        at = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        minute_changed = symbol.mark_price_at is None or (
            symbol.mark_price_at.replace(second=0, microsecond=0) != at.replace(second=0, microsecond=0)
        )
        if minute_changed:
            history.append(TickerHistory(symbol=symbol, time=at, mark_price=price))
        symbol.mark_price, symbol.mark_price_at = price, at
    Symbol.objects.bulk_update(list(symbols.values()), ["mark_price", "mark_price_at"])
    TickerHistory.objects.bulk_create(history)


def exchange_for(account: ExchangeAccount | None) -> BinanceFutures:
    """An adapter for the account (or a keyless one for public data), on the configured base URLs."""
    key, secret = account.credentials() if account is not None and account.has_credentials else ("", "")
    return BinanceFutures(
        api_key=key,
        api_secret=secret,
        rest_url=settings.BINANCE_FUTURES_REST_URL,
        ws_url=settings.BINANCE_FUTURES_WS_URL,
    )


def symbols_sync() -> int:
    """Refresh every symbol's filters from exchangeInfo. It is public data: read without any
    account's key, so a revoked key (the first account's, as it used to be) cannot stop it."""

    async def fetch() -> list[SymbolFilters]:
        # The adapter is built inside the loop: aiohttp binds its session to the loop it was made in.
        async with exchange_for(None) as exchange:
            return await exchange.exchange_info()

    return symbols_refresh(filters=asyncio.run(fetch()))


def brackets_sync() -> int:
    """Refresh the default bracket tables (from the first account the exchange answers), then
    each account's scaled copies. An account the exchange refuses (a revoked key, a wrong secret,
    credentials that no longer decrypt) is logged and skipped: one bad key used to fail the whole
    refresh, leaving every account's tables stale. Raises only when no account answered, so the
    task retries."""
    accounts = list(ExchangeAccount.objects.filter(enabled=True).exclude(api_key_encrypted="").order_by("pk"))
    if not accounts:
        return 0

    async def fetch(account: ExchangeAccount) -> dict[str, list[Bracket]]:
        async with exchange_for(account) as exchange:
            return await exchange.brackets()

    written: int | None = None
    failure: Exception | None = None
    for account in accounts:
        try:
            tables = asyncio.run(fetch(account))
        except Exception as exc:  # this account only; the others still refresh
            log.warning(
                "bracket refresh: account %r (id %s) skipped: %s: %s", account.name, account.id, type(exc).__name__, exc
            )
            failure = exc
            continue
        if written is None:
            written = brackets_store(tables=tables)
        else:
            brackets_store(tables=tables, account=account)
    if written is None:
        raise failure
    return written


def positions_reconcile(*, account: ExchangeAccount, recheck_after_s: float = 2.0) -> list[dict]:
    """Compare the exchange's positions (REST) with the desk's stream state: the live state the
    stream engine publishes twice a second, or the Position rows when there is none. A difference
    is re-checked once after `recheck_after_s`, because a fill can land between the REST answer
    and the stream's next flush; what still differs is returned."""
    from marketdata import live
    from positions.models import Position

    def desk_positions() -> dict[tuple[str, str], Decimal]:
        state = live.account_get(account.id)
        if state is not None and live.now_ms() - int(state.get("published_ms", 0)) < 10_000:
            return {(p["symbol"], p["side"]): Decimal(p["qty"]) for p in state["positions"]}
        rows = Position.objects.filter(account=account).select_related("symbol")
        return {(r.symbol.name, r.side): r.quantity for r in rows}

    async def fetch() -> list[ExchangePosition]:
        async with exchange_for(account) as exchange:
            return await exchange.positions()

    def differences() -> list[dict]:
        exchange = {(p.symbol, p.side): (abs(p.qty) if p.side != "BOTH" else p.qty) for p in asyncio.run(fetch())}
        desk = desk_positions()
        return [
            {
                "symbol": s,
                "side": side,
                "exchange_qty": str(exchange.get((s, side), 0)),
                "desk_qty": str(desk.get((s, side), 0)),
            }
            for (s, side) in sorted(set(exchange) | set(desk))
            if exchange.get((s, side), 0) != desk.get((s, side), 0)
        ]

    found = differences()
    if found and recheck_after_s:
        time.sleep(recheck_after_s)
        found = differences()
    return found
