"""Account figures and liquidation checks, with riskdesk's own maths.

Every figure the simulator reports or acts on comes from positions.figures /
positions.margin, so the exchange and the desk can only disagree where the
desk's inputs (marks, wallets) lag behind, which is what a risk desk must cope
with anyway.

Liquidation runs on every mark change. An exact check costs ~15 µs per position
(Decimal maths), too much for a benchmark with thousands of positions at 50
frames/s, so each account keeps a ``Screen``: its headroom to the margin-call
level at the last exact check, and the marks then. Margin balance minus
maintenance margin moves by at most 2·|qty|·|Δmark| per position (uPnL slope 1,
maintenance slope = mmr < 1), so while that bound stays below the headroom no
threshold can have been crossed and the exact check is skipped. The bound is a
float: it only decides whether to look, never what is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from positions.figures import (
    PositionInput,
    initial_margin,
    position_liquidation,
    position_maint_margin,
    unrealized_pnl,
)
from positions.margin import margin_ratio

from .ledger import CROSS, ISOLATED, Account, Position
from .numbers import ZERO
from .symbols import SymbolSpec

SCREEN_SLOPE = 2.0  # bound on |d(margin balance − maintenance)| / (|qty|·|Δmark|)
# Hysteresis for MARGIN_CALL: sent when a ratio reaches the call level (0.8 by
# default), re-armed only once it is back below this fraction of that level, so
# a mark jittering around 80 % does not spam the user stream.
REARM_FRACTION = Decimal("0.9375")  # 0.8 -> re-arm below 0.75


@dataclass(frozen=True)
class PositionView:
    position: Position
    spec: SymbolSpec
    mark: Decimal
    leverage: int
    margin_type: str
    upnl: Decimal
    notional: Decimal  # |qty| × mark
    im: Decimal
    mm: Decimal
    inputs: PositionInput

    @property
    def signed_notional(self) -> Decimal:
        return self.notional if self.position.signed_qty > 0 else -self.notional


@dataclass(frozen=True)
class AssetView:
    asset: str
    cross_wallet: Decimal
    isolated_wallet: Decimal
    cross_upnl: Decimal
    upnl: Decimal
    cross_mm: Decimal
    mm: Decimal
    position_im: Decimal  # all positions
    cross_position_im: Decimal
    order_im: Decimal

    @property
    def wallet(self) -> Decimal:
        return self.cross_wallet + self.isolated_wallet

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet + self.upnl

    @property
    def available(self) -> Decimal:
        """What new orders may use: cross margin balance less the margin already committed."""
        return self.cross_wallet + self.cross_upnl - self.cross_position_im - self.order_im

    @property
    def max_withdraw(self) -> Decimal:
        return max(ZERO, min(self.available, self.cross_wallet))


@dataclass(frozen=True)
class AccountView:
    account: Account
    positions: list[PositionView]
    assets: dict[str, AssetView]

    def position(self, symbol: str, side: str) -> PositionView | None:
        return next((v for v in self.positions if (v.position.symbol, v.position.side) == (symbol, side)), None)

    def liquidation_price(self, view: PositionView, symbols: Mapping[str, SymbolSpec]) -> Decimal | None:
        """Binance's liquidationPrice via positions.figures (cross: with the other cross symbols)."""
        point = position_liquidation(
            position=view.inputs,
            positions=[v.inputs for v in self.positions],
            cross_wallet_balance=self.account.wallets.get(view.spec.margin_asset, ZERO),
            brackets={v.spec.symbol: v.spec.brackets for v in self.positions},
        )
        return None if point is None else point.price


def position_view(account: Account, position: Position, spec: SymbolSpec, mark: Decimal) -> PositionView:
    setting = account.setting(position.symbol)
    inputs = PositionInput(
        symbol=position.symbol,
        side=position.side,
        qty=position.qty,
        entry_price=position.entry_price,
        mark_price=mark,
        leverage=setting.leverage,
        margin_type=setting.margin_type,
        isolated_wallet=position.isolated_wallet if setting.margin_type == ISOLATED else ZERO,
        margin_asset=spec.margin_asset,
    )
    return PositionView(
        position=position,
        spec=spec,
        mark=mark,
        leverage=setting.leverage,
        margin_type=setting.margin_type,
        upnl=unrealized_pnl(inputs),
        notional=abs(position.qty) * mark,
        im=initial_margin(inputs),
        mm=position_maint_margin(inputs, spec.brackets),
        inputs=inputs,
    )


def order_initial_margin(account: Account, symbol: str | None = None) -> Decimal:
    """Margin held by open non-reduce-only orders: remaining × price / leverage."""
    total = ZERO
    for order in account.orders.values():
        if order.reduce_only or (symbol and order.symbol != symbol):
            continue
        total += order.remaining * order.price / account.setting(order.symbol).leverage
    return total


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)


def account_view(account: Account, marks: Mapping[str, Decimal], symbols: Mapping[str, SymbolSpec]) -> AccountView:
    views = [position_view(account, p, symbols[p.symbol], marks[p.symbol]) for p in account.open_positions()]
    assets = {}
    for asset in sorted(set(account.wallets) | {v.spec.margin_asset for v in views}):
        mine = [v for v in views if v.spec.margin_asset == asset]
        cross = [v for v in mine if v.margin_type == CROSS]
        assets[asset] = AssetView(
            asset=asset,
            cross_wallet=account.wallets.get(asset, ZERO),
            isolated_wallet=_sum(v.position.isolated_wallet for v in mine if v.margin_type == ISOLATED),
            cross_upnl=_sum(v.upnl for v in cross),
            upnl=_sum(v.upnl for v in mine),
            cross_mm=_sum(v.mm for v in cross),
            mm=_sum(v.mm for v in mine),
            position_im=_sum(v.im for v in mine),
            cross_position_im=_sum(v.im for v in cross),
            order_im=order_initial_margin(account) if asset == "USDT" else ZERO,
        )
    return AccountView(account=account, positions=views, assets=assets)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Pool:
    """One thing that is liquidated as a unit: an asset's cross pool, or one isolated position."""

    key: tuple[str, str]  # ("cross", asset) or ("isolated", "SYMBOL:SIDE")
    views: list[PositionView]
    margin_balance: Decimal
    maint_margin: Decimal

    @property
    def ratio(self) -> Decimal:
        return margin_ratio(maint_margin=self.maint_margin, margin_balance=self.margin_balance)

    @property
    def breached(self) -> bool:
        return self.maint_margin > 0 and self.margin_balance <= self.maint_margin


def pools(view: AccountView) -> list[Pool]:
    result = []
    for asset, figures in view.assets.items():
        cross = [v for v in view.positions if v.margin_type == CROSS and v.spec.margin_asset == asset]
        if cross:
            result.append(Pool((CROSS, asset), cross, figures.cross_wallet + figures.cross_upnl, figures.cross_mm))
    for v in view.positions:
        if v.margin_type == ISOLATED:
            key = (ISOLATED, f"{v.position.symbol}:{v.position.side}")
            result.append(Pool(key, [v], v.position.isolated_wallet + v.upnl, v.mm))
    return result


@dataclass(frozen=True)
class Screen:
    marks: dict[str, float]
    sizes: dict[str, float]  # symbol -> Σ |qty| of its legs
    headroom: float  # min over pools of (call_ratio × margin balance − maintenance margin)


def make_screen(view: AccountView, all_pools: list[Pool], call_ratio: Decimal) -> Screen | None:
    """None when some pool is already at the call level (then every mark change is checked exactly)."""
    headroom = min((float(call_ratio * p.margin_balance - p.maint_margin) for p in all_pools), default=float("inf"))
    if headroom <= 0:
        return None
    sizes: dict[str, float] = {}
    for v in view.positions:
        sizes[v.position.symbol] = sizes.get(v.position.symbol, 0.0) + float(abs(v.position.qty))
    return Screen({v.position.symbol: float(v.mark) for v in view.positions}, sizes, headroom)


def screen_passes(screen: Screen, marks: Mapping[str, Decimal]) -> bool:
    """True when the marks cannot have moved any pool to the call level since the screen was made."""
    bound = 0.0
    for symbol, size in screen.sizes.items():
        bound += size * abs(float(marks[symbol]) - screen.marks[symbol])
    return bound * SCREEN_SLOPE < screen.headroom
