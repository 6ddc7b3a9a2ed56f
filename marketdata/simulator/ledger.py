"""Account state: wallets, positions, settings and orders, and the arithmetic of a fill.

Quantities follow Binance: a one-way (BOTH) position's ``qty`` is signed, a
hedge leg's is its size (> 0); ``signed_qty`` gives the exposure either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from .config import DEFAULT_LEVERAGE, AccountSpec
from .numbers import ZERO, quantize

CROSS, ISOLATED = "cross", "isolated"


@dataclass
class Position:
    symbol: str
    side: str  # BOTH, LONG or SHORT
    qty: Decimal = ZERO
    entry_price: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    realized: Decimal = ZERO  # accumulated realized PnL, ACCOUNT_UPDATE "cr"
    update_ms: int = 0

    @property
    def signed_qty(self) -> Decimal:
        return -self.qty if self.side == "SHORT" else self.qty

    def unrealized(self, mark: Decimal) -> Decimal:
        return self.signed_qty * (mark - self.entry_price)


@dataclass
class SymbolSetting:
    leverage: int = DEFAULT_LEVERAGE
    margin_type: str = CROSS


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    position_side: str
    type: str  # MARKET, LIMIT, LIQUIDATION
    time_in_force: str
    orig_qty: Decimal
    price: Decimal  # 0 for MARKET
    reduce_only: bool
    time_ms: int
    update_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    close_position: bool = False

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def signed_remaining(self) -> Decimal:
        return self.remaining if self.side == "BUY" else -self.remaining


@dataclass
class AlgoOrder:
    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    position_side: str
    order_type: str  # STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET
    qty: Decimal
    price: Decimal
    trigger_price: Decimal
    time_in_force: str
    working_type: str
    reduce_only: bool
    close_position: bool
    price_protect: bool
    create_ms: int
    update_ms: int
    status: str = "NEW"
    trigger_ms: int = 0
    activate_price: str = ""
    callback_rate: str = ""


@dataclass
class Account:
    spec: AccountSpec
    wallets: dict[str, Decimal]  # cross wallet per margin asset
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    settings: dict[str, SymbolSetting] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)  # open orders only
    algo_orders: dict[int, AlgoOrder] = field(default_factory=dict)  # open algo orders only
    listen_key: str | None = None
    order_stamps: deque[float] = field(default_factory=deque)  # monotonic times, for X-MBX-ORDER-COUNT-*
    margin_calls: set[tuple[str, str]] = field(default_factory=set)  # pools/positions above the call level
    screen: object | None = None  # risk.Screen of the last exact check; None forces the next one
    liquidations: int = 0
    multi_assets: bool = False  # POST /fapi/v1/multiAssetsMargin: reported only, the margin maths stay single-asset
    update_ms: int = 0

    @property
    def api_key(self) -> str:
        return self.spec.api_key

    @property
    def hedge(self) -> bool:
        return self.spec.hedge

    def setting(self, symbol: str) -> SymbolSetting:
        if symbol not in self.settings:
            self.settings[symbol] = SymbolSetting()
        return self.settings[symbol]

    def position(self, symbol: str, side: str) -> Position:
        key = (symbol, side)
        if key not in self.positions:
            self.positions[key] = Position(symbol, side)
        return self.positions[key]

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.qty != 0]

    def sides(self) -> tuple[str, ...]:
        return ("LONG", "SHORT") if self.hedge else ("BOTH",)

    @classmethod
    def from_spec(cls, spec: AccountSpec) -> Account:
        account = cls(spec=spec, wallets=dict(spec.wallet))
        for symbol, leverage in spec.leverage.items():
            account.setting(symbol).leverage = leverage
        for symbol, margin_type in spec.margin_type.items():
            account.setting(symbol).margin_type = margin_type
        for p in spec.positions:
            account.positions[(p.symbol, p.side)] = Position(p.symbol, p.side, p.qty, p.entry_price, p.isolated_wallet)
        return account


@dataclass(frozen=True)
class FillResult:
    realized: Decimal  # PnL realized on the closed part
    closed: Decimal  # size closed (>= 0)
    opened: Decimal  # size opened or added (>= 0)
    size_before: Decimal  # |qty| before the fill


def apply_fill(position: Position, delta: Decimal, price: Decimal) -> FillResult:
    """Move ``position`` by the signed ``delta`` (BUY +, SELL -) at ``price``.

    Adding averages the entry price; reducing realizes (price - entry) on the
    closed size; crossing zero (one-way only) opens the rest at ``price``.
    """
    before = position.signed_qty
    size_before = abs(before)
    if before == 0 or (before > 0) == (delta > 0):
        after = before + delta
        # Stored at 8 decimals, as positionRisk prints it, so a client re-deriving figures from
        # the strings works from exactly the simulator's state.
        position.entry_price = quantize((size_before * position.entry_price + abs(delta) * price) / abs(after))
        _set_signed(position, after)
        return FillResult(ZERO, ZERO, abs(delta), size_before)
    closed = min(abs(delta), size_before)
    realized = quantize(closed * (price - position.entry_price) * (1 if before > 0 else -1))
    after = before + delta
    opened = ZERO
    if after == 0:
        position.entry_price = ZERO
    elif (after > 0) != (before > 0):
        position.entry_price, opened = price, abs(after)
    _set_signed(position, after)
    position.realized += realized
    return FillResult(realized, closed, opened, size_before)


def _set_signed(position: Position, signed: Decimal) -> None:
    position.qty = -signed if position.side == "SHORT" else signed
