"""Every wallet asset, and its worth as margin (issue 17 item 3). Plain Python, no Django.

Binance USDⓈ-M accounts hold wallets in several assets (USDT, USDC, BTC, BNB, ...).

- Single-asset mode: each margin asset backs its own symbols; USDT backs the USDT symbols. Other
  assets (BTC, BNB) are no margin at all. The desk's account totals count the stablecoin margin
  assets at par (``PAR_ASSETS``), the others not (their balances are still tracked, capped and shown).
- Multi-assets mode: every asset is collateral for every position, valued in USD with Binance's
  haircut, from ``GET /fapi/v1/assetIndex``: a positive balance at ``bidRate = index x (1 - bidBuffer)``,
  a negative one (a loss not yet auto-exchanged) at ``askRate = index x (1 + askBuffer)``. USDT, absent
  from the index, counts at 1. An asset held with no index row cannot be valued: the total is None
  and the asset is listed (the desk fails closed rather than guessing).

``collateral(balances, index, multi_assets=...)`` gives the figures per asset and the total; the stream
engine puts the total into the book's USDT pool of a multi-assets account (one shared pool, as on the
exchange) and every asset's own balance into a pool of its own that does not count in the totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

PAR_ASSETS = frozenset({"USDT", "USDC", "FDUSD"})  # stablecoin margin assets, at par in single-asset mode
ONE, ZERO = Decimal(1), Decimal(0)
USD_SUFFIX = "USD"


@dataclass(frozen=True)
class AssetIndex:
    """One row of GET /fapi/v1/assetIndex (symbol "BTCUSD" -> asset "BTC")."""

    asset: str
    index: Decimal
    bid_buffer: Decimal
    ask_buffer: Decimal
    bid_rate: Decimal
    ask_rate: Decimal
    time_ms: int

    def plain(self) -> dict[str, str | int]:
        return {
            "asset": self.asset,
            "index": str(self.index),
            "bid_buffer": str(self.bid_buffer),
            "ask_buffer": str(self.ask_buffer),
            "bid_rate": str(self.bid_rate),
            "ask_rate": str(self.ask_rate),
            "time_ms": self.time_ms,
        }


def parse_asset_index(rows: Iterable[Mapping] | Mapping) -> dict[str, AssetIndex]:
    """Binance's rows (a list, or one object when a symbol was asked for) by asset. The exchange's
    rates are taken as given; when absent they are computed from the index and the buffers."""
    if isinstance(rows, Mapping):
        rows = [rows]
    out: dict[str, AssetIndex] = {}
    for row in rows:
        symbol = str(row["symbol"])
        asset = symbol[: -len(USD_SUFFIX)] if symbol.endswith(USD_SUFFIX) else symbol
        index = Decimal(str(row["index"]))
        bid_buffer, ask_buffer = Decimal(str(row.get("bidBuffer", 0))), Decimal(str(row.get("askBuffer", 0)))
        bid_rate = Decimal(str(row["bidRate"])) if row.get("bidRate") is not None else index * (ONE - bid_buffer)
        ask_rate = Decimal(str(row["askRate"])) if row.get("askRate") is not None else index * (ONE + ask_buffer)
        out[asset] = AssetIndex(asset, index, bid_buffer, ask_buffer, bid_rate, ask_rate, int(row.get("time") or 0))
    return out


def rate(asset: str, balance: Decimal, index: Mapping[str, AssetIndex], *, multi_assets: bool) -> Decimal | None:
    """USD per unit of ``asset`` as margin: None when it cannot be valued (multi-assets, no index row)."""
    if not multi_assets:
        return ONE if asset in PAR_ASSETS else ZERO
    row = index.get(asset)
    if row is None:
        return ONE if asset == "USDT" else None
    return row.bid_rate if balance >= 0 else row.ask_rate


@dataclass(frozen=True)
class AssetValue:
    asset: str
    balance: Decimal
    rate: Decimal | None  # USD per unit as margin (after the haircut); None: no index row
    value: Decimal | None  # balance x rate
    index: Decimal | None  # the asset's index price in USD, when known
    haircut: Decimal | None  # the buffer applied (bid for a balance >= 0, ask below)


@dataclass(frozen=True)
class Collateral:
    multi_assets: bool
    assets: tuple[AssetValue, ...]
    total: Decimal | None  # USD; None when an asset held could not be valued
    missing: tuple[str, ...]  # assets held with no index row (multi-assets mode)


def collateral(balances: Mapping[str, Decimal], index: Mapping[str, AssetIndex], *, multi_assets: bool) -> Collateral:
    rows, missing, total = [], [], ZERO
    for asset, balance in sorted(balances.items()):
        r = rate(asset, balance, index, multi_assets=multi_assets)
        row = index.get(asset)
        haircut = None if row is None else (row.bid_buffer if balance >= 0 else row.ask_buffer)
        value = None if r is None else balance * r
        if value is None:
            if balance != 0:
                missing.append(asset)
        else:
            total += value
        rows.append(AssetValue(asset, balance, r, value, row.index if row else None, haircut))
    return Collateral(multi_assets, tuple(rows), None if missing else total, tuple(missing))
