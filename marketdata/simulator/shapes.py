"""REST response bodies, field for field as Binance USDⓈ-M sends them (reference §2.3).

Amounts are strings with 8 decimals, quantities and prices at the symbol's
precision, entry prices without trailing zeros; ids, times and flags stay JSON
numbers/booleans. The single-asset ``total*`` figures are for USDT only, as the
docs say.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from .clock import now_ms
from .ledger import ISOLATED, Account, Position
from .numbers import ZERO, fmt, fmt_trim
from .risk import AccountView, AssetView, PositionView
from .symbols import SymbolSpec
from .ws import FUNDING_RATE, next_funding_ms

TOTALS_ASSET = "USDT"
ALIAS = "SimuLated"  # Binance returns an opaque per-account alias; constant here


def _order_notionals(account: Account, symbol: str) -> tuple[Decimal, Decimal]:
    bid = ask = ZERO
    for order in account.orders.values():
        if order.symbol == symbol:
            value = order.remaining * order.price
            bid, ask = (bid + value, ask) if order.side == "BUY" else (bid, ask + value)
    return bid, ask


def _qty(position: Position, spec: SymbolSpec) -> str:
    return fmt(position.signed_qty, spec.filters.quantity_precision)


def _liq(view: AccountView, pv: PositionView, symbols: Mapping[str, SymbolSpec]) -> str:
    price = view.liquidation_price(pv, symbols)
    return "0" if price is None else fmt(price)  # Binance shows "0" where the UI shows "--"


def _order_im(account: Account, symbol: str) -> Decimal:
    leverage = account.setting(symbol).leverage
    return sum(
        (o.remaining * o.price / leverage for o in account.orders.values() if o.symbol == symbol and not o.reduce_only),
        ZERO,
    )


def _rows(
    account: Account, view: AccountView, symbols: Mapping[str, SymbolSpec], *, all_symbols: bool, symbol: str | None
) -> list[tuple[SymbolSpec, Position, PositionView | None]]:
    """(spec, position, view or None when flat), one per (symbol, side) the endpoint lists."""
    if all_symbols:
        pairs = [(s, side) for s in symbols for side in account.sides()]
    else:
        active = {p.symbol for p in account.open_positions()} | {o.symbol for o in account.orders.values()}
        pairs = [(s, side) for s in sorted(active) for side in account.sides()]
    rows = []
    for s, side in pairs:
        if symbol and s != symbol:
            continue
        pv = view.position(s, side)
        position = pv.position if pv else account.positions.get((s, side)) or Position(s, side)
        if (
            pv is None
            and not all_symbols
            and not any(o.symbol == s and o.position_side == side for o in account.orders.values())
        ):
            continue
        rows.append((symbols[s], position, pv))
    return rows


# --------------------------------------------------------------------------- positionRisk


def position_risk_v3(
    account: Account, view: AccountView, symbols: Mapping[str, SymbolSpec], marks: Mapping, symbol: str | None
) -> list[dict]:
    out = []
    for spec, position, pv in _rows(account, view, symbols, all_symbols=False, symbol=symbol):
        bid, ask = _order_notionals(account, spec.symbol)
        order_im = _order_im(account, spec.symbol)
        iw = position.isolated_wallet if pv and pv.margin_type == ISOLATED else ZERO
        out.append(
            {
                "symbol": spec.symbol,
                "positionSide": position.side,
                "positionAmt": _qty(position, spec),
                "entryPrice": fmt_trim(position.entry_price),
                "breakEvenPrice": fmt_trim(position.entry_price),
                "markPrice": fmt(marks[spec.symbol]),
                "unRealizedProfit": fmt(pv.upnl if pv else ZERO),
                "liquidationPrice": _liq(view, pv, symbols) if pv else "0",
                "isolatedMargin": fmt(iw + pv.upnl if iw and pv else ZERO),
                "notional": fmt(pv.signed_notional if pv else ZERO),
                "marginAsset": spec.margin_asset,
                "isolatedWallet": fmt(iw),
                "initialMargin": fmt((pv.im if pv else ZERO) + order_im),
                "maintMargin": fmt(pv.mm if pv else ZERO),
                "positionInitialMargin": fmt(pv.im if pv else ZERO),
                "openOrderInitialMargin": fmt(order_im),
                "adl": 1 if pv else 0,
                "bidNotional": fmt(bid),
                "askNotional": fmt(ask),
                "updateTime": position.update_ms,
            }
        )
    return out


def position_risk_v2(
    account: Account, view: AccountView, symbols: Mapping[str, SymbolSpec], marks: Mapping, symbol: str | None
) -> list[dict]:
    out = []
    for spec, position, pv in _rows(account, view, symbols, all_symbols=True, symbol=symbol):
        setting = account.setting(spec.symbol)
        iw = position.isolated_wallet if setting.margin_type == ISOLATED else ZERO
        out.append(
            {
                "symbol": spec.symbol,
                "positionAmt": _qty(position, spec),
                "entryPrice": fmt_trim(position.entry_price),
                "breakEvenPrice": fmt_trim(position.entry_price),
                "markPrice": fmt(marks[spec.symbol]),
                "unRealizedProfit": fmt(pv.upnl if pv else ZERO),
                "liquidationPrice": _liq(view, pv, symbols) if pv else "0",
                "leverage": str(setting.leverage),
                "maxNotionalValue": f"{spec.max_notional_for(setting.leverage).normalize():f}",
                "marginType": setting.margin_type,
                "isolatedMargin": fmt(iw + pv.upnl if iw and pv else ZERO),
                "isAutoAddMargin": "false",
                "positionSide": position.side,
                "notional": fmt(pv.signed_notional if pv else ZERO),
                "isolatedWallet": fmt(iw),
                "updateTime": position.update_ms,
            }
        )
    return out


# --------------------------------------------------------------------------- account and balance


def _asset_fields(a: AssetView) -> dict:
    return {
        "asset": a.asset,
        "walletBalance": fmt(a.wallet),
        "unrealizedProfit": fmt(a.upnl),
        "marginBalance": fmt(a.margin_balance),
        "maintMargin": fmt(a.mm),
        "initialMargin": fmt(a.position_im + a.order_im),
        "positionInitialMargin": fmt(a.position_im),
        "openOrderInitialMargin": fmt(a.order_im),
        "crossWalletBalance": fmt(a.cross_wallet),
        "crossUnPnl": fmt(a.cross_upnl),
        "availableBalance": fmt(a.available),
        "maxWithdrawAmount": fmt(a.max_withdraw),
    }


def _totals(view: AccountView) -> dict:
    a = view.assets.get(TOTALS_ASSET)
    if a is None:
        a = AssetView(TOTALS_ASSET, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO)
    return {
        "totalInitialMargin": fmt(a.position_im + a.order_im),
        "totalMaintMargin": fmt(a.mm),
        "totalWalletBalance": fmt(a.wallet),
        "totalUnrealizedProfit": fmt(a.upnl),
        "totalMarginBalance": fmt(a.margin_balance),
        "totalPositionInitialMargin": fmt(a.position_im),
        "totalOpenOrderInitialMargin": fmt(a.order_im),
        "totalCrossWalletBalance": fmt(a.cross_wallet),
        "totalCrossUnPnl": fmt(a.cross_upnl),
        "availableBalance": fmt(a.available),
        "maxWithdrawAmount": fmt(a.max_withdraw),
    }


def account_v3(account: Account, view: AccountView, symbols: Mapping[str, SymbolSpec]) -> dict:
    positions = []
    for spec, position, pv in _rows(account, view, symbols, all_symbols=False, symbol=None):
        iw = position.isolated_wallet if pv and pv.margin_type == ISOLATED else ZERO
        positions.append(
            {
                "symbol": spec.symbol,
                "positionSide": position.side,
                "positionAmt": _qty(position, spec),
                "unrealizedProfit": fmt(pv.upnl if pv else ZERO),
                "isolatedMargin": fmt(iw + pv.upnl if iw and pv else ZERO),
                "notional": fmt(pv.signed_notional if pv else ZERO),
                "isolatedWallet": fmt(iw),
                "initialMargin": fmt(pv.im if pv else ZERO),
                "maintMargin": fmt(pv.mm if pv else ZERO),
                "updateTime": position.update_ms,
            }
        )
    assets = [{**_asset_fields(a), "updateTime": account.update_ms} for a in view.assets.values()]
    return {**_totals(view), "assets": assets, "positions": positions}


def account_v2(account: Account, view: AccountView, symbols: Mapping[str, SymbolSpec]) -> dict:
    positions = []
    for spec, position, pv in _rows(account, view, symbols, all_symbols=True, symbol=None):
        setting = account.setting(spec.symbol)
        bid, ask = _order_notionals(account, spec.symbol)
        order_im = _order_im(account, spec.symbol)
        positions.append(
            {
                "symbol": spec.symbol,
                "initialMargin": fmt((pv.im if pv else ZERO) + order_im),
                "maintMargin": fmt(pv.mm if pv else ZERO),
                "unrealizedProfit": fmt(pv.upnl if pv else ZERO),
                "positionInitialMargin": fmt(pv.im if pv else ZERO),
                "openOrderInitialMargin": fmt(order_im),
                "leverage": str(setting.leverage),
                "isolated": setting.margin_type == ISOLATED,
                "entryPrice": fmt_trim(position.entry_price),
                "breakEvenPrice": fmt_trim(position.entry_price),
                "maxNotional": f"{spec.max_notional_for(setting.leverage).normalize():f}",
                "bidNotional": fmt(bid),
                "askNotional": fmt(ask),
                "positionSide": position.side,
                "positionAmt": _qty(position, spec),
                "isolatedWallet": fmt(position.isolated_wallet if setting.margin_type == ISOLATED else ZERO),
                "updateTime": position.update_ms,
            }
        )
    assets = [
        {**_asset_fields(a), "marginAvailable": True, "updateTime": account.update_ms} for a in view.assets.values()
    ]
    return {
        "feeTier": 0,
        "feeBurn": False,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": account.multi_assets,
        "tradeGroupId": -1,
        **_totals(view),
        "assets": assets,
        "positions": positions,
    }


def balances(account: Account, view: AccountView) -> list[dict]:
    return [
        {
            "accountAlias": ALIAS,
            "asset": a.asset,
            "balance": fmt(a.wallet),
            "crossWalletBalance": fmt(a.cross_wallet),
            "crossUnPnl": fmt(a.cross_upnl),
            "availableBalance": fmt(a.available),
            "maxWithdrawAmount": fmt(a.max_withdraw),
            "marginAvailable": True,
            "updateTime": account.update_ms,
        }
        for a in view.assets.values()
    ]


def symbol_config(account: Account, symbols: Mapping[str, SymbolSpec], symbol: str | None) -> list[dict]:
    rows = []
    for spec in symbols.values():
        if symbol and spec.symbol != symbol:
            continue
        setting = account.setting(spec.symbol)
        rows.append(
            {
                "symbol": spec.symbol,
                "marginType": "ISOLATED" if setting.margin_type == ISOLATED else "CROSSED",
                "isAutoAddMargin": "false",
                "leverage": setting.leverage,
                "maxNotionalValue": f"{spec.max_notional_for(setting.leverage).normalize():f}",
            }
        )
    return rows


# --------------------------------------------------------------------------- market data


def premium_index(spec: SymbolSpec, mark: Decimal) -> dict:
    stamp = now_ms()
    return {
        "symbol": spec.symbol,
        "markPrice": fmt(mark),
        "indexPrice": fmt(mark),
        "estimatedSettlePrice": fmt(mark),
        "lastFundingRate": FUNDING_RATE,
        "interestRate": "0.00010000",
        "nextFundingTime": next_funding_ms(stamp),
        "time": stamp,
    }


# GET /fapi/v1/assetIndex: (bidBuffer, askBuffer, autoExchangeBidBuffer, autoExchangeAskBuffer) per asset.
# Binance's haircuts move; these are of their order. An asset not listed gets the default.
ASSET_BUFFERS = {
    "USDC": ("0", "0", "0", "0"),
    "FDUSD": ("0", "0", "0", "0"),
    "BTC": ("0.05", "0.05", "0.025", "0.025"),
    "ETH": ("0.05", "0.05", "0.025", "0.025"),
    "BNB": ("0.1", "0.1", "0.05", "0.05"),
}
DEFAULT_BUFFERS = ("0.1", "0.1", "0.05", "0.05")
RATE_PLACES = Decimal("0.00000001")


def asset_index(asset: str, index: Decimal, stamp: int) -> dict:
    """One row as Binance sends it: symbol "<asset>USD", the index in USD, and each rate the index
    times (1 - bid buffer) or (1 + ask buffer), to 8 places."""
    bid, ask, auto_bid, auto_ask = (Decimal(b) for b in ASSET_BUFFERS.get(asset, DEFAULT_BUFFERS))

    def at(value: Decimal) -> str:
        return f"{value.quantize(RATE_PLACES):f}"

    return {
        "symbol": f"{asset}USD",
        "time": stamp,
        "index": at(index),
        "bidBuffer": at(bid),
        "askBuffer": at(ask),
        "bidRate": at(index * (1 - bid)),
        "askRate": at(index * (1 + ask)),
        "autoExchangeBidBuffer": at(auto_bid),
        "autoExchangeAskBuffer": at(auto_ask),
        "autoExchangeBidRate": at(index * (1 - auto_bid)),
        "autoExchangeAskRate": at(index * (1 + auto_ask)),
    }


def _filters(spec: SymbolSpec) -> list[dict]:
    f = spec.filters
    places = f.price_precision
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fmt(f.tick_size, places),
            "maxPrice": "4529764",
            "tickSize": fmt(f.tick_size, places),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": _plain(f.min_qty),
            "maxQty": _plain(f.max_qty),
            "stepSize": _plain(f.step_size),
        },
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": _plain(f.min_qty),
            "maxQty": _plain(f.market_max_qty),
            "stepSize": _plain(f.step_size),
        },
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": _plain(f.min_notional)},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"},
    ]


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def exchange_symbol(spec: SymbolSpec) -> dict:
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.margin_asset,
        "pricePrecision": spec.filters.price_precision,
        "quantityPrecision": spec.filters.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": _filters(spec),
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def exchange_info(symbol_rows: list[dict]) -> dict:
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbol_rows,
    }
