"""Binance USDⓈ-M through python-binance's AsyncClient and BinanceSocketManager.

Plain asyncio, no Django: the stream process, the Celery tasks and the order
gate build a `BinanceFutures` from an account's decrypted credentials and the
base URLs in settings. Pointing at the simulator, the testnet or production is
configuration only (`rest_url`, `ws_url`).

What python-binance leaves to us (reference §3.5–3.6) and this module adds:
- typed errors carrying Binance's code and message (`ExchangeError` and kin);
- 429/418 back-off using Retry-After, and slowing down near the used-weight cap;
- a 503 "Unknown error" on an order, or a timeout, is `OutcomeUnknown`: the
  order may have executed, so the caller reconciles instead of resending;
- every number parsed to Decimal from the exchange's strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from binance.async_client import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException
from binance.ws.streams import BinanceSocketManager

from positions.margin import Bracket, brackets_from_binance

log = logging.getLogger(__name__)

WEIGHT_LIMIT_1M = 2400  # Binance's REQUEST_WEIGHT per minute per IP
WEIGHT_SLOWDOWN_AT = 0.9  # above this share of the limit, reads wait for the next minute
# Bulk reads (the stream engine's re-syncs after a reconnect: 55 weight an account) stop at this
# fraction of WEIGHT_SLOWDOWN_AT, so that 2,000 of them queued after a blip cannot spend the minute
# that listen keys, the marks' gap fill, the kill switch's reads and an operator's request need.
BULK_WEIGHT_FRACTION = 2 / 3
_WEIGHT_CLASS: contextvars.ContextVar[str] = contextvars.ContextVar("weight_class", default="normal")


@contextlib.contextmanager
def bulk_weight():
    """Reads made inside (in this task) are bulk: they wait at BULK_WEIGHT_FRACTION of the cap."""
    token = _WEIGHT_CLASS.set("bulk")
    try:
        yield
    finally:
        _WEIGHT_CLASS.reset(token)


MAX_BACKOFF_WAIT_S = 30.0  # a longer ban is raised to the caller instead of waited out
UNKNOWN_OUTCOME_MESSAGE = "Unknown error, please check your request or try again later."
AUTH_CODES = {-2014, -2015, -1022, -1021}


class ExchangeError(Exception):
    """An answer from the exchange that is not success. `code` is Binance's (negative) code."""

    def __init__(self, message: str, *, code: int = 0, status: int = 0):
        super().__init__(f"[{code}] {message}" if code else message)
        self.code, self.message, self.status = code, message, status


class ExchangeRejected(ExchangeError):
    """The exchange refused the request (4xx with a Binance code): do not resend as is."""


class ExchangeAuthError(ExchangeRejected):
    """Bad key, bad signature or clock skew (-2014, -2015, -1022, -1021)."""


class RateLimited(ExchangeError):
    """429 (or 418, an IP ban). `retry_after_s` is how long the exchange asked us to wait."""

    def __init__(self, message: str, *, code: int, status: int, retry_after_s: float):
        super().__init__(message, code=code, status=status)
        self.retry_after_s = retry_after_s


class ExchangeUnavailable(ExchangeError):
    """The request failed on the exchange's side or in transit; nothing happened, retry later."""


class OutcomeUnknown(ExchangeError):
    """The exchange may or may not have executed the request: reconcile, never resend blindly."""


def dec(value: Any) -> Decimal:
    """A Decimal from an exchange value. Strings are exact; JSON floats (bracket tables)
    go through their shortest repr, which is what Binance wrote."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number from the exchange, got {value!r}")
    return Decimal(str(value))


@dataclass(frozen=True)
class SymbolFilters:
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal | None
    min_notional: Decimal
    price_precision: int
    quantity_precision: int


@dataclass(frozen=True)
class ExchangePosition:
    symbol: str
    side: str  # BOTH / LONG / SHORT
    qty: Decimal  # signed, as positionAmt
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal | None
    margin_type: str  # cross / isolated
    isolated_wallet: Decimal
    leverage: int | None
    maint_margin: Decimal | None
    update_time_ms: int


@dataclass(frozen=True)
class ExchangeAccountState:
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    maint_margin: Decimal
    initial_margin: Decimal
    available_balance: Decimal
    cross_wallet_balance: Decimal
    assets: dict[str, Decimal] = field(default_factory=dict)  # asset -> wallet balance
    cross_wallets: dict[str, Decimal] = field(default_factory=dict)  # asset -> crossWalletBalance


@dataclass(frozen=True)
class MarkPrice:
    symbol: str
    price: Decimal
    index_price: Decimal | None
    funding_rate: Decimal | None
    time_ms: int


@dataclass(frozen=True)
class Kline:
    """One row of GET /fapi/v1/klines (trade prices), exact."""

    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time_ms: int


KLINES_MAX_LIMIT = 1500


def kline_weight(limit: int) -> int:
    """Binance's request weight of a klines call: it grows with ``limit``."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


@dataclass
class _RateState:
    """Shared by every adapter on one REST base URL: Binance limits by IP, not by key."""

    blocked_until: float = 0.0
    used_weight: int = 0
    weight_minute: int = 0


_RATE_STATES: dict[str, _RateState] = {}


class BinanceFutures:
    """One account's connection to Binance USDⓈ-M (or anything that speaks it)."""

    def __init__(self, *, api_key: str, api_secret: str, rest_url: str, ws_url: str, timeout_s: float = 10.0):
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url.rstrip("/") + "/"  # python-binance appends market/… and private/…
        self.client = AsyncClient(api_key, api_secret, requests_params={"timeout": timeout_s})
        # Class-level defaults point at binance.com; instance attributes survive __init__ (reference §3.2).
        self.client.FUTURES_URL = f"{self.rest_url}/fapi"
        self.client.API_URL = f"{self.rest_url}/api"
        # /sapi (the key's restrictions) is on Binance's spot host: api.binance.com beside fapi.binance.com.
        self.client.MARGIN_API_URL = f"{self.rest_url.replace('://fapi.', '://api.', 1)}/sapi"
        self.rate = _RATE_STATES.setdefault(self.rest_url, _RateState())

    async def close(self) -> None:
        await self.client.close_connection()

    async def __aenter__(self) -> BinanceFutures:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def socket_manager(self, *, max_queue_size: int = 1000) -> BinanceSocketManager:
        # A queue of 100 (the default) overflows on a burst and kills the read loop (issues #1016/#1295).
        bsm = BinanceSocketManager(self.client, max_queue_size=max_queue_size)
        bsm.FSTREAM_URL = self.ws_url
        return bsm

    # --- the call wrapper -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Awaitable[Any]], *, is_order: bool = False, **params: Any) -> Any:
        await self._respect_limits(is_order=is_order)
        try:
            result = await fn(**params)
        except BinanceAPIException as exc:
            raise self._translate(exc, is_order=is_order) from None
        except BinanceRequestException as exc:
            raise (OutcomeUnknown if is_order else ExchangeUnavailable)(str(exc)) from None
        except TimeoutError as exc:
            raise (OutcomeUnknown if is_order else ExchangeUnavailable)(f"timeout: {exc}") from None
        except aiohttp.ClientError as exc:
            # A connection refused before sending is harmless, but aiohttp cannot always tell
            # us whether the request left, so an order in doubt is reconciled.
            raise (OutcomeUnknown if is_order else ExchangeUnavailable)(f"{type(exc).__name__}: {exc}") from None
        self._note_weight()
        return result

    async def _respect_limits(self, *, is_order: bool) -> None:
        wait = self.rate.blocked_until - time.monotonic()
        if wait > MAX_BACKOFF_WAIT_S:
            raise RateLimited("backing off after a rate-limit answer", code=-1003, status=429, retry_after_s=wait)
        if wait > 0:
            await asyncio.sleep(wait)
        minute = int(time.time() // 60)
        share = WEIGHT_SLOWDOWN_AT * (BULK_WEIGHT_FRACTION if _WEIGHT_CLASS.get() == "bulk" else 1)
        near_cap = self.rate.used_weight >= WEIGHT_LIMIT_1M * share
        if not is_order and near_cap and minute == self.rate.weight_minute:
            # Orders do not spend IP weight; reads wait for the window to roll over.
            await asyncio.sleep(60 - time.time() % 60)

    def _note_weight(self) -> None:
        response = getattr(self.client, "response", None)
        used = response.headers.get("X-MBX-USED-WEIGHT-1M") if response is not None else None
        if used and used.isdigit():
            self.rate.used_weight, self.rate.weight_minute = int(used), int(time.time() // 60)

    def _translate(self, exc: BinanceAPIException, *, is_order: bool) -> ExchangeError:
        status, code, message = exc.status_code, exc.code, exc.message
        if status in (429, 418):
            retry_after = _retry_after(exc)
            self.rate.blocked_until = max(self.rate.blocked_until, time.monotonic() + retry_after)
            log.warning("exchange answered %s; backing off %.1f s", status, retry_after)
            return RateLimited(message, code=code, status=status, retry_after_s=retry_after)
        if status == 503 and UNKNOWN_OUTCOME_MESSAGE.split(",")[0] in message:
            return (
                OutcomeUnknown(message, code=code, status=status)
                if is_order
                else ExchangeUnavailable(message, code=code, status=status)
            )
        if status >= 500:
            return ExchangeUnavailable(message, code=code, status=status)
        if code in AUTH_CODES or status == 401:
            return ExchangeAuthError(message, code=code, status=status)
        return ExchangeRejected(message, code=code, status=status)

    # --- reads ----------------------------------------------------------------------------

    async def server_time_ms(self) -> int:
        return int((await self._call(self.client.futures_time))["serverTime"])

    async def account(self) -> ExchangeAccountState:
        raw = await self._call(self.client.futures_account, version=3)
        return ExchangeAccountState(
            wallet_balance=dec(raw["totalWalletBalance"]),
            unrealized_pnl=dec(raw["totalUnrealizedProfit"]),
            margin_balance=dec(raw["totalMarginBalance"]),
            maint_margin=dec(raw["totalMaintMargin"]),
            initial_margin=dec(raw["totalInitialMargin"]),
            available_balance=dec(raw["availableBalance"]),
            cross_wallet_balance=dec(raw["totalCrossWalletBalance"]),
            assets={a["asset"]: dec(a["walletBalance"]) for a in raw.get("assets", [])},
            cross_wallets={
                a["asset"]: dec(a.get("crossWalletBalance", a["walletBalance"])) for a in raw.get("assets", [])
            },
        )

    async def balances(self) -> dict[str, Decimal]:
        rows = await self._call(self.client.futures_account_balance)
        return {row["asset"]: dec(row["balance"]) for row in rows}

    async def positions(self) -> list[ExchangePosition]:
        """Open positions: v3 positionRisk joined with symbolConfig for leverage and margin type."""
        rows = await self._call(self.client.futures_position_information, version=3)
        config = {c["symbol"]: c for c in await self._call(self.client.futures_symbol_config)}
        return [_position(row, config.get(row["symbol"], {})) for row in rows if dec(row["positionAmt"]) != 0]

    async def brackets(self, symbol: str | None = None) -> dict[str, list[Bracket]]:
        params = {"symbol": symbol} if symbol else {}
        raw = await self._call(self.client.futures_leverage_bracket, **params)
        rows = [raw] if isinstance(raw, dict) else raw  # one object when a symbol is given (reference §2.3.4)
        return {row["symbol"]: brackets_from_binance(row["brackets"]) for row in rows}

    async def exchange_info(self) -> list[SymbolFilters]:
        raw = await self._call(self.client.futures_exchange_info)
        return [_filters(s) for s in raw["symbols"]]

    async def mark_prices(self) -> dict[str, MarkPrice]:
        rows = await self._call(self.client.futures_mark_price)
        rows = [rows] if isinstance(rows, dict) else rows
        return {row["symbol"]: _mark(row) for row in rows}

    async def klines(
        self,
        *,
        symbol: str,
        interval: str = "1m",
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = KLINES_MAX_LIMIT,
    ) -> list[Kline]:
        """GET /fapi/v1/klines: at most ``limit`` (<= 1500) bars opening in [start, end], oldest first.
        The last may still be open (its close time in the future). Public: no key needed."""
        if not 1 <= limit <= KLINES_MAX_LIMIT:
            raise ValueError(f"klines limit must be 1..{KLINES_MAX_LIMIT}, got {limit}")
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_time_ms is not None:
            params["startTime"] = int(start_time_ms)
        if end_time_ms is not None:
            params["endTime"] = int(end_time_ms)
        rows = await self._call(self.client.futures_klines, **params)
        return [_kline(row) for row in rows]

    async def open_orders(self, symbol: str | None = None) -> list[dict]:
        params = {"symbol": symbol} if symbol else {}
        return await self._call(self.client.futures_get_open_orders, **params)

    async def open_conditional_orders(self, symbol: str | None = None) -> list[dict]:
        """GET /fapi/v1/openAlgoOrders: since 2025-12-09 stop and take-profit orders live in Binance's
        algo service, invisible to /openOrders, so a kill switch must ask for them separately."""
        params = {"symbol": symbol} if symbol else {}
        return await self._call(self.client.futures_get_open_orders, conditional=True, **params)

    async def query_order(self, *, symbol: str, client_order_id: str) -> dict:
        """GET /fapi/v1/order by clientOrderId: how an order in doubt is reconciled (-2013: never placed)."""
        return await self._call(self.client.futures_get_order, symbol=symbol, origClientOrderId=client_order_id)

    async def force_orders(
        self,
        *,
        symbol: str | None = None,
        auto_close_type: str | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """GET /fapi/v1/forceOrders: the account's own liquidation (``autoCloseType`` LIQUIDATION)
        and ADL orders, in Binance's REST order shape. Weight 20 with a symbol, 50 without; Binance
        answers at most 7 days and 100 rows a call. python-binance names it ``futures_liquidation_orders``."""
        params: dict[str, Any] = {
            "symbol": symbol,
            "autoCloseType": auto_close_type,
            "startTime": start_time_ms,
            "endTime": end_time_ms,
            "limit": limit,
        }
        return await self._call(self.client.futures_liquidation_orders, **{k: v for k, v in params.items() if v})

    async def api_restrictions(self) -> dict:
        """GET /sapi/v1/account/apiRestrictions: what the key may do (``enableWithdrawals``,
        ``ipRestrict``, ``enableFutures``, ...), as Binance answers it. KEY_PERMISSIONS reads it."""
        return await self._call(self.client.get_account_api_permissions)

    async def position_mode_is_hedge(self) -> bool:
        return bool((await self._call(self.client.futures_get_position_mode))["dualSidePosition"])

    async def asset_index(self, symbol: str | None = None) -> list[dict]:
        """GET /fapi/v1/assetIndex (multi-assets mode: index prices and haircuts; weight 1 with a
        symbol such as "BTCUSD", 10 without). Rows as Binance sends them: positions/collateral.py
        parse_asset_index reads them."""
        params = {"symbol": symbol} if symbol else {}
        rows = await self._call(self.client.futures_v1_get_asset_index, **params)
        return [rows] if isinstance(rows, dict) else list(rows)

    async def multi_assets_mode(self) -> bool:
        return bool((await self._call(self.client.futures_get_multi_assets_mode))["multiAssetsMargin"])

    # --- writes ----------------------------------------------------------------------------

    async def place_order(self, **params: Any) -> dict:
        """POST /fapi/v1/order with Binance's parameter names. Decimals are sent as plain strings."""
        clean = {k: _wire(v) for k, v in params.items() if v is not None}
        return await self._call(self.client.futures_create_order, is_order=True, **clean)

    async def cancel_order(self, *, symbol: str, order_id: int | None = None, client_order_id: str | None = None):
        params: dict[str, Any] = {"symbol": symbol}
        if order_id is not None:
            params["orderId"] = order_id
        if client_order_id:
            params["origClientOrderId"] = client_order_id
        return await self._call(self.client.futures_cancel_order, is_order=True, **params)

    async def cancel_all(self, *, symbol: str) -> dict:
        return await self._call(self.client.futures_cancel_all_open_orders, is_order=True, symbol=symbol)

    async def cancel_all_conditional(self, *, symbol: str) -> dict:
        """DELETE /fapi/v1/algoOpenOrders: the algo service's orders, which /allOpenOrders leaves alone."""
        return await self._call(
            self.client.futures_cancel_all_open_orders, is_order=True, conditional=True, symbol=symbol
        )

    async def change_leverage(self, *, symbol: str, leverage: int) -> dict:
        return await self._call(self.client.futures_change_leverage, symbol=symbol, leverage=leverage)

    async def change_margin_type(self, *, symbol: str, margin_type: str) -> dict:
        """``margin_type`` cross / isolated (Binance's CROSSED / ISOLATED); -4046 when already so."""
        wire = {"cross": "CROSSED", "isolated": "ISOLATED"}.get(margin_type.lower(), margin_type.upper())
        return await self._call(self.client.futures_change_margin_type, symbol=symbol, marginType=wire)

    async def change_multi_assets_mode(self, *, enabled: bool) -> dict:
        return await self._call(self.client.futures_change_multi_assets_mode, multiAssetsMargin=enabled)

    async def countdown_cancel_all(self, *, symbol: str, countdown_ms: int) -> dict:
        """The exchange's dead-man switch: cancel the symbol's open orders unless renewed in time (0 stops it)."""
        return await self._call(self.client.futures_countdown_cancel_all, symbol=symbol, countdownTime=countdown_ms)

    async def new_listen_key(self) -> str:
        return await self._call(self.client.futures_stream_get_listen_key)

    async def keepalive_listen_key(self, listen_key: str) -> None:
        await self._call(self.client.futures_stream_keepalive, listenKey=listen_key)

    async def close_listen_key(self, listen_key: str) -> None:
        await self._call(self.client.futures_stream_close, listenKey=listen_key)


def _retry_after(exc: BinanceAPIException) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(1.0, float(value)) if value is not None else 60.0
    except ValueError:
        return 60.0


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, bool):
        return "true" if value else "false"  # python-binance would send "True" (reference §3.3)
    return value


def _position(row: dict, config: dict) -> ExchangePosition:
    liq = dec(row.get("liquidationPrice", "0"))
    margin_type = config.get("marginType") or row.get("marginType") or "cross"
    leverage = config.get("leverage") or row.get("leverage")
    return ExchangePosition(
        symbol=row["symbol"],
        side=row.get("positionSide", "BOTH"),
        qty=dec(row["positionAmt"]),
        entry_price=dec(row["entryPrice"]),
        mark_price=dec(row["markPrice"]),
        unrealized_pnl=dec(row.get("unRealizedProfit", "0")),
        liquidation_price=liq if liq > 0 else None,  # Binance sends "0" where its UI shows "--"
        margin_type="isolated" if margin_type.lower().startswith("isolated") else "cross",
        isolated_wallet=dec(row.get("isolatedWallet", "0")),
        leverage=int(leverage) if leverage is not None else None,
        maint_margin=dec(row["maintMargin"]) if "maintMargin" in row else None,
        update_time_ms=int(row.get("updateTime", 0)),
    )


def _filters(raw: dict) -> SymbolFilters:
    by_type = {f["filterType"]: f for f in raw.get("filters", [])}
    lot, price = by_type.get("LOT_SIZE", {}), by_type.get("PRICE_FILTER", {})
    market = by_type.get("MARKET_LOT_SIZE")
    notional = by_type.get("MIN_NOTIONAL", {})
    return SymbolFilters(
        symbol=raw["symbol"],
        status=raw.get("status", "TRADING"),
        base_asset=raw.get("baseAsset", ""),
        quote_asset=raw.get("quoteAsset", "USDT"),
        margin_asset=raw.get("marginAsset", "USDT"),
        tick_size=dec(price.get("tickSize", "0")),
        step_size=dec(lot.get("stepSize", "0")),
        min_qty=dec(lot.get("minQty", "0")),
        max_qty=dec(lot.get("maxQty", "0")),
        market_max_qty=dec(market["maxQty"]) if market else None,
        min_notional=dec(notional.get("notional", notional.get("minNotional", "0"))),
        price_precision=int(raw.get("pricePrecision", 8)),
        quantity_precision=int(raw.get("quantityPrecision", 8)),
    )


def _kline(row: list) -> Kline:
    return Kline(
        open_time_ms=int(row[0]),
        open=dec(row[1]),
        high=dec(row[2]),
        low=dec(row[3]),
        close=dec(row[4]),
        volume=dec(row[5]),
        close_time_ms=int(row[6]),
    )


def _mark(row: dict) -> MarkPrice:
    return MarkPrice(
        symbol=row["symbol"],
        price=dec(row["markPrice"]),
        index_price=dec(row["indexPrice"]) if row.get("indexPrice") else None,
        funding_rate=dec(row["lastFundingRate"]) if row.get("lastFundingRate") not in (None, "") else None,
        time_ms=int(row.get("time", 0)),
    )
