"""User-data stream payloads, shaped as Binance USDⓈ-M sends them (reference §2.4)."""

from __future__ import annotations

from decimal import Decimal

from .ledger import AlgoOrder, Order, Position
from .numbers import MONEY_PLACES, ZERO, fmt, fmt_trim
from .risk import PositionView
from .symbols import SymbolSpec


def price_str(value: Decimal, spec: SymbolSpec) -> str:
    """An order price as Binance echoes it: "0" when unset, else at the symbol's price precision."""
    return "0" if value == 0 else fmt(value, spec.filters.price_precision)


def qty_str(value: Decimal, spec: SymbolSpec) -> str:
    return fmt(value, spec.filters.quantity_precision)


def avg_str(value: Decimal) -> str:
    return "0" if value == 0 else fmt_trim(value, MONEY_PLACES)


def order_trade_update(
    order: Order,
    spec: SymbolSpec,
    *,
    exec_type: str,
    now_ms: int,
    last_qty: Decimal = ZERO,
    last_price: Decimal = ZERO,
    commission: Decimal = ZERO,
    realized: Decimal = ZERO,
    trade_id: int = 0,
    maker: bool = False,
    margin_asset: str = "USDT",
) -> dict:
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": now_ms,
        "T": now_ms,
        "o": {
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": qty_str(order.orig_qty, spec),
            "p": price_str(order.price, spec),
            "ap": avg_str(order.avg_price),
            "sp": "0",
            "x": exec_type,
            "X": order.status,
            "i": order.order_id,
            "l": qty_str(last_qty, spec),
            "z": qty_str(order.executed_qty, spec),
            "L": avg_str(last_price),
            "N": margin_asset,
            "n": fmt(commission),
            "T": now_ms,
            "t": trade_id,
            "b": "0",
            "a": "0",
            "m": maker,
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": order.type,
            "ps": order.position_side,
            "cp": order.close_position,
            "rp": fmt(realized),
            "pP": False,
            "si": 0,
            "ss": 0,
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
        },
    }


def balance_row(asset: str, wallet: Decimal, cross_wallet: Decimal, change: Decimal = ZERO) -> dict:
    return {"a": asset, "wb": fmt(wallet), "cw": fmt(cross_wallet), "bc": fmt(change)}


def position_row(position: Position, spec: SymbolSpec, margin_type: str, mark: Decimal) -> dict:
    """One ``P`` entry; ``mt`` is lower-case cross/isolated here (upper-case in MARGIN_CALL)."""
    return {
        "s": position.symbol,
        "pa": qty_str(position.signed_qty, spec),
        "ep": fmt_trim(position.entry_price),
        "bep": fmt_trim(position.entry_price),
        "cr": fmt(position.realized),
        "up": fmt(position.unrealized(mark)),
        "mt": margin_type,
        "iw": fmt(position.isolated_wallet),
        "ps": position.side,
        "ma": spec.margin_asset,
    }


def account_update(reason: str, balances: list[dict], positions: list[dict], now_ms: int) -> dict:
    return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms, "a": {"m": reason, "B": balances, "P": positions}}


def margin_call(views: list[PositionView], *, cross_wallet: Decimal | None, now_ms: int) -> dict:
    """``cw`` only for a cross call; ``mt`` upper-case CROSSED/ISOLATED, unlike ACCOUNT_UPDATE."""
    event: dict = {"e": "MARGIN_CALL", "E": now_ms}
    if cross_wallet is not None:
        event["cw"] = fmt(cross_wallet)
    event["p"] = [
        {
            "s": v.position.symbol,
            "ps": v.position.side,
            "pa": qty_str(v.position.signed_qty, v.spec),
            "mt": "CROSSED" if v.margin_type == "cross" else "ISOLATED",
            "iw": fmt(v.position.isolated_wallet),
            "mp": fmt(v.mark),
            "up": fmt(v.upnl),
            "mm": fmt(v.mm),
        }
        for v in views
    ]
    return event


def listen_key_expired(listen_key: str, now_ms: int) -> dict:
    # E as a string, as captured from the live exchange (reference §2.4), so clients parse it leniently.
    return {"e": "listenKeyExpired", "E": str(now_ms), "listenKey": listen_key}


def account_config_update(symbol: str, leverage: int, now_ms: int) -> dict:
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms, "ac": {"s": symbol, "l": leverage}}


def multi_assets_update(enabled: bool, now_ms: int) -> dict:
    """Binance's other ACCOUNT_CONFIG_UPDATE form: ``ai.j`` is the new multi-assets mode."""
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms, "ai": {"j": enabled}}


def force_order_shape(order: Order, spec: SymbolSpec) -> dict:
    """One row of GET /fapi/v1/forceOrders. Binance lists its liquidation orders there as IOC
    LIMIT orders (type and origType "LIMIT"), unlike the user stream's ``o`` LIQUIDATION: the
    client id (``autoclose-…`` or ``adl_autoclose``) is what marks them in both."""
    return {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": price_str(order.price, spec),
        "avgPrice": avg_str(order.avg_price) if order.executed_qty else "0",
        "origQty": qty_str(order.orig_qty, spec),
        "executedQty": qty_str(order.executed_qty, spec),
        "cumQuote": fmt(order.cum_quote),
        "timeInForce": order.time_in_force,
        "type": "LIMIT",
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": order.position_side,
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "origType": "LIMIT",
        "time": order.time_ms,
        "updateTime": order.update_ms,
    }


def algo_shape(order: AlgoOrder, spec: SymbolSpec) -> dict:
    """REST shape of an algo (conditional) order, as POST/GET /fapi/v1/algoOrder answer."""
    return {
        "algoId": order.algo_id,
        "clientAlgoId": order.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": order.order_type,
        "symbol": order.symbol,
        "side": order.side,
        "positionSide": order.position_side,
        "timeInForce": order.time_in_force,
        "quantity": qty_str(order.qty, spec),
        "algoStatus": order.status,
        "triggerPrice": price_str(order.trigger_price, spec),
        "price": price_str(order.price, spec),
        "icebergQuantity": None,
        "selfTradePreventionMode": "NONE",
        "workingType": order.working_type,
        "priceMatch": "NONE",
        "closePosition": order.close_position,
        "priceProtect": order.price_protect,
        "reduceOnly": order.reduce_only,
        "activatePrice": order.activate_price,
        "callbackRate": order.callback_rate,
        "createTime": order.create_ms,
        "updateTime": order.update_ms,
        "triggerTime": order.trigger_ms,
        "goodTillDate": 0,
    }


def order_shape(order: Order, spec: SymbolSpec, *, with_time: bool = False) -> dict:
    """REST shape of an order (POST/DELETE/GET /fapi/v1/order, openOrders)."""
    shape = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": price_str(order.price, spec),
        "avgPrice": avg_str(order.avg_price) if order.executed_qty else fmt(ZERO, spec.filters.price_precision),
        "origQty": qty_str(order.orig_qty, spec),
        "executedQty": qty_str(order.executed_qty, spec),
        "cumQty": qty_str(order.executed_qty, spec),
        "cumQuote": fmt(order.cum_quote),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": order.close_position,
        "side": order.side,
        "positionSide": order.position_side,
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "updateTime": order.update_ms,
    }
    if with_time:
        shape["time"] = order.time_ms
    return shape
