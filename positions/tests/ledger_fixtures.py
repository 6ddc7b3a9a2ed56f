"""User-stream events in Binance's shape, for the ledger tests and the pages that show its rows."""

from __future__ import annotations

from typing import Any

T0_MS = 1_700_000_000_000


def order_update(
    *,
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    position_side: str = "BOTH",
    order_id: int = 1001,
    client_id: str = "desk-1",
    order_type: str = "MARKET",
    execution: str = "TRADE",
    status: str = "FILLED",
    last_qty: str = "0.5",
    cum_qty: str | None = None,
    price: str = "50000",
    realized: str = "0",
    commission: str = "0",
    commission_asset: str = "USDT",
    trade_id: int = 1,
    time_ms: int = T0_MS,
) -> dict[str, Any]:
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": time_ms,
        "T": time_ms,
        "o": {
            "s": symbol,
            "c": client_id,
            "S": side,
            "o": order_type,
            "q": cum_qty or last_qty,
            "p": "0",
            "ap": price,
            "x": execution,
            "X": status,
            "i": order_id,
            "l": last_qty,
            "z": cum_qty or last_qty,
            "L": price,
            "N": commission_asset,
            "n": commission,
            "T": time_ms,
            "t": trade_id,
            "ps": position_side,
            "rp": realized,
            "R": True,
        },
    }


def liquidation_update(**kwargs: Any) -> dict[str, Any]:
    """A liquidation fill as the simulator sends it: type LIQUIDATION, client id autoclose-…, trade id 0."""
    values = {
        "order_type": "LIQUIDATION",
        "client_id": f"autoclose-{kwargs.get('time_ms', T0_MS)}000001",
        "order_id": 9001,
        "trade_id": 0,
        "realized": "-480.25",
        "price": "47400",
    }
    return order_update(**{**values, **kwargs})


def funding_update(*, balances: list[tuple[str, str]], symbol: str = "", time_ms: int = T0_MS) -> dict[str, Any]:
    positions = [{"s": symbol, "pa": "0.5", "mt": "isolated", "ps": "BOTH"}] if symbol else []
    return {
        "e": "ACCOUNT_UPDATE",
        "E": time_ms,
        "T": time_ms,
        "a": {
            "m": "FUNDING_FEE",
            "B": [{"a": a, "wb": "1000", "cw": "1000", "bc": bc} for a, bc in balances],
            "P": positions,
        },
    }


BEFORE = {
    "liquidation_price": "47400.5",
    "liquidation_distance": "0.004",
    "mark": "47590",
    "qty": "0.5",
    "entry_price": "50000",
}
