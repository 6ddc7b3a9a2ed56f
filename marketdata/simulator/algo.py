"""Conditional (algo) orders: POST /fapi/v1/algoOrder, since 2025-12-09 the only home of
STOP/TAKE_PROFIT orders (reference §2.3.6).

They are kept as open algo orders and trigger on the mark (whatever the
``workingType``, since the simulator has no last price): STOP* when the mark
reaches the trigger in the adverse direction, TAKE_PROFIT* in the favourable one.
A triggered order becomes a MARKET (…_MARKET types) or LIMIT order through the
normal order path. TRAILING_STOP_MARKET is accepted but never triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from .clock import now_ms
from .errors import WOULD_TRIGGER, ApiError, api_error, missing
from .ledger import Account, AlgoOrder
from .orders import CONDITIONAL_TYPES, client_id_of, flag, position_side_of, price_of, quantity_of, side_of, symbol_spec
from .symbols import SymbolSpec

ZERO = Decimal(0)


def triggered(order: AlgoOrder, mark: Decimal) -> bool:
    if order.order_type == "TRAILING_STOP_MARKET":
        return False
    rising = order.side == "BUY" if order.order_type.startswith("STOP") else order.side == "SELL"
    return mark >= order.trigger_price if rising else mark <= order.trigger_price


def parse_algo(
    params: Mapping[str, str],
    *,
    account: Account,
    symbols: Mapping[str, SymbolSpec],
    mark_of: Callable[[str], Decimal],
    algo_id: int,
) -> AlgoOrder:
    if params.get("algoType") != "CONDITIONAL":
        raise missing("algoType")
    spec = symbol_spec(params, symbols)
    side = side_of(params)
    kind = params.get("type", "")
    if kind not in CONDITIONAL_TYPES:
        raise ApiError(-1116, "Invalid orderType.")
    close_position = flag(params, "closePosition")
    trailing = kind == "TRAILING_STOP_MARKET"
    qty = ZERO if close_position else quantity_of(params, spec, market=kind.endswith("MARKET"))
    trigger = ZERO if trailing else price_of(params, spec, "triggerPrice")
    price = price_of(params, spec) if kind in ("STOP", "TAKE_PROFIT") else ZERO
    stamp = now_ms()
    order = AlgoOrder(
        algo_id=algo_id,
        client_algo_id=client_id_of(params, "clientAlgoId"),
        symbol=spec.symbol,
        side=side,
        position_side=position_side_of(params, account.hedge),
        order_type=kind,
        qty=qty,
        price=price,
        trigger_price=trigger,
        time_in_force=params.get("timeInForce", "GTC"),
        working_type=params.get("workingType", "CONTRACT_PRICE"),
        reduce_only=flag(params, "reduceOnly"),
        close_position=close_position,
        price_protect=flag(params, "priceProtect"),
        create_ms=stamp,
        update_ms=stamp,
        activate_price=params.get("activationPrice", ""),
        callback_rate=params.get("callbackRate", ""),
    )
    if triggered(order, mark_of(spec.symbol)):
        raise api_error(WOULD_TRIGGER)
    return order


def order_params_for(order: AlgoOrder, account: Account) -> dict[str, str] | None:
    """POST /fapi/v1/order parameters for a triggered algo order; None if nothing is left to close."""
    qty = order.qty
    reduce_only = order.reduce_only or order.close_position
    if order.close_position:
        position = account.positions.get((order.symbol, order.position_side))
        qty = abs(position.qty) if position else ZERO
        if qty == 0:
            return None
    params = {
        "symbol": order.symbol,
        "side": order.side,
        "positionSide": order.position_side,
        "quantity": f"{qty:f}",
        "newClientOrderId": order.client_algo_id[:36],
    }
    if reduce_only and not account.hedge:
        params["reduceOnly"] = "true"
    if order.order_type in ("STOP", "TAKE_PROFIT"):
        params.update(type="LIMIT", price=f"{order.price:f}", timeInForce=order.time_in_force)
    else:
        params["type"] = "MARKET"
    return params
