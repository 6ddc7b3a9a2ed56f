"""Order parameter validation with Binance's error codes.

Checks run in the order Binance's matching front-end appears to run them:
mandatory parameters, symbol, enums, precision, filters, then (in the
exchange) reduce-only and margin. Numbers are parsed from the raw strings so a
"0.0015" on a 0.001 step is a -1111 precision error, not silently rounded.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from .errors import BAD_SYMBOL, POSITION_SIDE, PRECISION, ApiError, api_error, missing
from .numbers import decimals_of, parse_plain
from .symbols import SymbolSpec

ORDER_TYPES = ("MARKET", "LIMIT")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


@dataclass(frozen=True)
class OrderRequest:
    spec: SymbolSpec
    side: str
    type: str
    position_side: str
    qty: Decimal
    price: Decimal  # 0 for MARKET
    time_in_force: str
    reduce_only: bool
    client_order_id: str
    result: bool  # newOrderRespType=RESULT

    @property
    def delta(self) -> Decimal:
        return self.qty if self.side == "BUY" else -self.qty


def symbol_spec(params: Mapping[str, str], symbols: Mapping[str, SymbolSpec]) -> SymbolSpec:
    symbol = params.get("symbol")
    if not symbol:
        raise missing("symbol")
    spec = symbols.get(symbol.upper())
    if spec is None:
        raise api_error(BAD_SYMBOL)
    return spec


def flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return value == "true"


def side_of(params: Mapping[str, str]) -> str:
    side = params.get("side")
    if not side:
        raise missing("side")
    if side not in ("BUY", "SELL"):
        raise ApiError(-1117, "Invalid side.")
    return side


def position_side_of(params: Mapping[str, str], hedge: bool) -> str:
    side = params.get("positionSide", "BOTH")
    if side not in (("LONG", "SHORT") if hedge else ("BOTH",)):
        raise api_error(POSITION_SIDE)
    return side


def quantity_of(params: Mapping[str, str], spec: SymbolSpec, *, market: bool, name: str = "quantity") -> Decimal:
    qty = parse_plain(params.get(name, ""))
    if qty is None or qty <= 0:
        raise missing(name)
    f = spec.filters
    if decimals_of(qty) > f.quantity_precision:
        raise api_error(PRECISION)
    if qty % f.step_size:
        raise ApiError(-1013, "Filter failure: LOT_SIZE")
    max_qty = f.market_max_qty if market else f.max_qty
    if qty < f.min_qty or qty > max_qty:
        raise ApiError(-1013, f"Filter failure: {'MARKET_LOT_SIZE' if market else 'LOT_SIZE'}")
    return qty


def price_of(params: Mapping[str, str], spec: SymbolSpec, name: str = "price") -> Decimal:
    price = parse_plain(params.get(name, ""))
    if price is None or price <= 0:
        raise missing(name)
    if decimals_of(price) > spec.filters.price_precision:
        raise api_error(PRECISION)
    if price % spec.filters.tick_size:
        raise ApiError(-1013, "Filter failure: PRICE_FILTER")
    return price


def client_id_of(params: Mapping[str, str], name: str = "newClientOrderId") -> str:
    value = params.get(name)
    if value is None:
        return "sim" + secrets.token_hex(11)  # like Binance's generated ids: 22 random characters
    if not CLIENT_ID.match(value):
        raise ApiError(-4015, "Client order id is not valid.")
    return value


def order_type_of(params: Mapping[str, str]) -> str:
    kind = params.get("type")
    if not kind:
        raise missing("type")
    if kind in CONDITIONAL_TYPES:
        # Since 2025-12-09 conditional orders live in the Algo service (reference §2.3.6).
        raise ApiError(
            -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
        )
    if kind not in ORDER_TYPES:
        raise ApiError(-1116, "Invalid orderType.")
    return kind


def parse_order(params: Mapping[str, str], *, symbols: Mapping[str, SymbolSpec], hedge: bool) -> OrderRequest:
    """Validate POST /fapi/v1/order parameters (state-independent checks only)."""
    spec = symbol_spec(params, symbols)
    side = side_of(params)
    kind = order_type_of(params)
    position_side = position_side_of(params, hedge)
    reduce_only = flag(params, "reduceOnly")
    if hedge and "reduceOnly" in params:
        raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
    qty = quantity_of(params, spec, market=kind == "MARKET")
    if kind == "LIMIT":
        price = price_of(params, spec)
        tif = params.get("timeInForce")
        if tif not in TIME_IN_FORCE:
            raise missing("timeInForce")
    else:
        if "price" in params:
            raise ApiError(-1106, "Parameter 'price' sent when not required.")
        price, tif = Decimal(0), "GTC"
    resp = params.get("newOrderRespType", "ACK")
    if resp not in ("ACK", "RESULT"):
        raise ApiError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
    return OrderRequest(
        spec, side, kind, position_side, qty, price, tif, reduce_only, client_id_of(params), resp == "RESULT"
    )


def check_min_notional(request: OrderRequest, reference_price: Decimal) -> None:
    """-4164 below the symbol's minimum notional; reduce-only orders are exempt, as on Binance."""
    minimum = request.spec.filters.min_notional
    if not request.reduce_only and request.qty * reference_price < minimum:
        raise ApiError(-4164, f"Order's notional must be no smaller than {minimum} (unless you choose reduce only).")


def would_take(side: str, price: Decimal, mark: Decimal) -> bool:
    """A LIMIT order priced through the mark executes at once (the simulator has no order book)."""
    return price >= mark if side == "BUY" else price <= mark
