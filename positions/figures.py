"""Account-level risk figures in exact Decimal (no Django).

These are the reference definitions. ``positions.book.RiskBook`` computes the
same figures with NumPy for the whole desk and is tested against this module to
the cent. Every function states its formula; all are keyword-only except the
single-position helpers.

Public API
----------
``PositionInput``                         one position (or one hedge leg), validated
``notional(p)`` ``signed_notional(p)`` ``unrealized_pnl(p)`` ``initial_margin(p)``
``position_maint_margin(p, brackets)``
``margin_balance(*, wallet_balance, unrealized_pnl)``
``total_maint_margin(*, positions, brackets)`` ``total_unrealized_pnl(positions)``
``total_initial_margin(positions)``
``fund_utilization(*, initial_margin, margin_balance)``
``gross_exposure(positions)`` ``net_exposure(positions)`` ``symbol_exposures(positions)``
``largest_symbol_share(positions)`` ``herfindahl(positions)``
``position_liquidation(*, position, positions, cross_wallet_balance, brackets)``
``asset_figures(*, asset, cross_wallet_balance, positions, brackets) -> AssetFigures``
``account_figures(*, wallet_balances, positions, brackets) -> AccountFigures``

Scope: single-asset mode. Each margin asset (USDT, USDC) is its own cross pool
with its own wallet; liquidation maths never mixes pools. Account-wide totals
add the pools at face value (the USDⓈ-M margin assets are USD stablecoins);
use ``AccountFigures.per_asset`` where that approximation matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from positions.margin import (
    PRECISION,
    ZERO,
    Bracket,
    LiquidationPoint,
    _is_int,
    _require_decimal,
    _require_positive,
    capped_ratio,
    liquidation_point,
    maintenance_margin,
)

SIDES = ("BOTH", "LONG", "SHORT")
MARGIN_TYPES = ("cross", "isolated")
BracketTables = Mapping[str, Sequence[Bracket]]


@dataclass(frozen=True)
class PositionInput:
    """One open position: a one-way ``BOTH`` row or one hedge leg.

    ``qty`` is signed for BOTH (+long / −short) and absolute (> 0) for LONG/SHORT,
    exactly as Binance's positionRisk ``positionAmt`` except that hedge SHORT rows
    (which Binance reports negative) must be passed as absolute sizes. Zero rows
    are not positions: drop them at the edge.
    """

    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: int
    margin_type: str = "cross"
    isolated_wallet: Decimal = ZERO
    margin_asset: str = "USDT"

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"symbol must be a non-empty str, got {self.symbol!r}")
        if self.side not in SIDES:
            raise ValueError(f"{self.symbol}: side must be one of {SIDES}, got {self.side!r}")
        _require_decimal(f"{self.symbol} qty", self.qty)
        if self.qty == 0 or (self.side != "BOTH" and self.qty < 0):
            raise ValueError(
                f"{self.symbol} {self.side}: qty must be non-zero (and > 0 for a hedge leg), got {self.qty}"
            )
        _require_positive(f"{self.symbol} entry_price", self.entry_price)
        _require_positive(f"{self.symbol} mark_price", self.mark_price)
        if not _is_int(self.leverage) or self.leverage < 1:
            raise ValueError(f"{self.symbol}: leverage must be an int >= 1, got {self.leverage!r}")
        if self.margin_type not in MARGIN_TYPES:
            raise ValueError(f"{self.symbol}: margin_type must be one of {MARGIN_TYPES}, got {self.margin_type!r}")
        _require_decimal(f"{self.symbol} isolated_wallet", self.isolated_wallet)
        if self.margin_type == "cross" and self.isolated_wallet != 0:
            raise ValueError(f"{self.symbol}: a cross position has no isolated wallet")
        if not isinstance(self.margin_asset, str) or not self.margin_asset:
            raise ValueError(f"{self.symbol}: margin_asset must be a non-empty str")

    @property
    def is_long(self) -> bool:
        return self.side == "LONG" or (self.side == "BOTH" and self.qty > 0)

    @property
    def signed_qty(self) -> Decimal:
        return -self.qty if self.side == "SHORT" else self.qty


def _sum(values: Iterable[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return sum(values, ZERO)


# --------------------------------------------------------------------------- one position


def notional(position: PositionInput) -> Decimal:
    """|qty| × mark."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return abs(position.qty) * position.mark_price


def signed_notional(position: PositionInput) -> Decimal:
    """+|qty| × mark for a long exposure, −|qty| × mark for a short one."""
    value = notional(position)
    return value if position.is_long else -value


def unrealized_pnl(position: PositionInput) -> Decimal:
    """signed qty × (mark − entry); a hedge SHORT leg counts as −qty."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return position.signed_qty * (position.mark_price - position.entry_price)


def initial_margin(position: PositionInput) -> Decimal:
    """notional at mark / leverage (Binance's positionInitialMargin)."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return notional(position) / position.leverage


def position_maint_margin(position: PositionInput, brackets: Sequence[Bracket]) -> Decimal:
    """notional × mmr(tier) − cum(tier), tier chosen by the notional at mark."""
    return maintenance_margin(notional(position), brackets)


# --------------------------------------------------------------------------- sums


def margin_balance(*, wallet_balance: Decimal, unrealized_pnl: Decimal) -> Decimal:
    """wallet balance + unrealized PnL (Binance's Margin Balance)."""
    _require_decimal("wallet_balance", wallet_balance)
    _require_decimal("unrealized_pnl", unrealized_pnl)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return wallet_balance + unrealized_pnl


def _brackets_for(symbol: str, brackets: BracketTables) -> Sequence[Bracket]:
    try:
        return brackets[symbol]
    except KeyError:
        raise ValueError(f"no brackets for {symbol}") from None


def total_maint_margin(*, positions: Sequence[PositionInput], brackets: BracketTables) -> Decimal:
    """Σ maintenance margin of the positions (Binance's totalMaintMargin)."""
    return _sum(position_maint_margin(p, _brackets_for(p.symbol, brackets)) for p in positions)


def total_unrealized_pnl(positions: Sequence[PositionInput]) -> Decimal:
    """Σ unrealized PnL."""
    return _sum(unrealized_pnl(p) for p in positions)


def total_initial_margin(positions: Sequence[PositionInput]) -> Decimal:
    """Σ notional / leverage."""
    return _sum(initial_margin(p) for p in positions)


def fund_utilization(*, initial_margin: Decimal, margin_balance: Decimal) -> Decimal:
    """initial margin / margin balance; 0 with no initial margin, capped at RATIO_CAP
    (also when the margin balance is <= 0), like ``margin_ratio``."""
    return capped_ratio(initial_margin, margin_balance)


def gross_exposure(positions: Sequence[PositionInput]) -> Decimal:
    """Σ |qty| × mark over all positions and legs."""
    return _sum(notional(p) for p in positions)


def net_exposure(positions: Sequence[PositionInput]) -> Decimal:
    """Σ signed notional (longs +, shorts −); hedge legs offset each other."""
    return _sum(signed_notional(p) for p in positions)


def symbol_exposures(positions: Sequence[PositionInput]) -> dict[str, Decimal]:
    """Gross notional per symbol (both hedge legs add: each leg can be liquidated)."""
    totals: dict[str, Decimal] = {}
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for p in positions:
            totals[p.symbol] = totals.get(p.symbol, ZERO) + notional(p)
    return totals


def _shares(positions: Sequence[PositionInput]) -> list[Decimal]:
    exposures = symbol_exposures(positions)
    gross = _sum(exposures.values())
    if gross == 0:
        return []
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return [value / gross for value in exposures.values()]


def largest_symbol_share(positions: Sequence[PositionInput]) -> Decimal:
    """max over symbols of symbol gross / account gross; 0 with no exposure."""
    return max(_shares(positions), default=ZERO)


def herfindahl(positions: Sequence[PositionInput]) -> Decimal:
    """Herfindahl–Hirschman index Σ (symbol gross / account gross)², in (0, 1]; 0 with no exposure.

    1 means everything in one symbol; n equal symbols give 1/n.
    """
    return _sum(share * share for share in _shares(positions))


# --------------------------------------------------------------------------- liquidation


def check_positions(positions: Sequence[PositionInput]) -> None:
    """One row per (symbol, side); a symbol is one-way or hedged, never both; legs agree
    on margin type and asset (Binance sets both per symbol)."""
    seen: dict[str, PositionInput] = {}
    keys: set[tuple[str, str]] = set()
    for p in positions:
        if not isinstance(p, PositionInput):
            raise ValueError(f"expected PositionInput, got {type(p).__name__}")
        if (p.symbol, p.side) in keys:
            raise ValueError(f"{p.symbol} {p.side}: duplicate position row")
        keys.add((p.symbol, p.side))
        other = seen.setdefault(p.symbol, p)
        if other is not p and "BOTH" in (p.side, other.side):
            raise ValueError(f"{p.symbol}: a BOTH (one-way) row cannot coexist with hedge legs")
        if (other.margin_type, other.margin_asset) != (p.margin_type, p.margin_asset):
            raise ValueError(f"{p.symbol}: hedge legs disagree on margin type or asset")


def _leg_kwargs(legs: Sequence[PositionInput]) -> dict[str, Decimal]:
    kwargs: dict[str, Decimal] = {}
    for leg in legs:
        name = leg.side.lower()
        kwargs[f"qty_{name}"] = leg.qty
        kwargs[f"entry_{name}"] = leg.entry_price
    return kwargs


def position_liquidation(
    *,
    position: PositionInput,
    positions: Sequence[PositionInput],
    cross_wallet_balance: Decimal,
    brackets: BracketTables,
) -> LiquidationPoint | None:
    """Liquidation price of ``position`` within its account's ``positions``.

    Isolated: WB = its isolated wallet, only this leg. Cross: WB = the asset's
    cross wallet, both legs of the symbol together (they share one price), and
    TMM1/UPNL1 = Σ maint margin / uPnL of the *other cross* symbols in the same
    margin asset (isolated positions and other pools are excluded, per the FAQ).
    """
    check_positions(positions)
    table = _brackets_for(position.symbol, brackets)
    if position.margin_type == "isolated":
        return liquidation_point(wallet_balance=position.isolated_wallet, brackets=table, **_leg_kwargs([position]))
    pool = [p for p in positions if p.margin_type == "cross" and p.margin_asset == position.margin_asset]
    legs = [p for p in pool if p.symbol == position.symbol]
    if position not in legs:
        raise ValueError(f"{position.symbol} {position.side}: position is not in positions")
    others = [p for p in pool if p.symbol != position.symbol]
    return liquidation_point(
        wallet_balance=cross_wallet_balance,
        brackets=table,
        **_leg_kwargs(legs),
        other_maint_margin=total_maint_margin(positions=others, brackets=brackets),
        other_unrealized_pnl=total_unrealized_pnl(others),
    )


# --------------------------------------------------------------------------- account


@dataclass(frozen=True)
class AssetFigures:
    """One margin asset's pool. Formulas:

    wallet_balance       = cross_wallet_balance + Σ isolated wallets
    margin_balance       = wallet_balance + unrealized_pnl          (Binance totalMarginBalance)
    margin_ratio         = maint_margin / margin_balance            (Binance account-level figure)
    cross_margin_balance = cross_wallet_balance + cross uPnL
    cross_margin_ratio   = cross maint margin / cross_margin_balance (what liquidates the cross pool)
    utilization          = initial_margin / margin_balance
    """

    asset: str
    cross_wallet_balance: Decimal
    isolated_wallet_balance: Decimal
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    maint_margin: Decimal
    margin_ratio: Decimal
    cross_margin_balance: Decimal
    cross_maint_margin: Decimal
    cross_margin_ratio: Decimal
    initial_margin: Decimal
    utilization: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal


def asset_figures(
    *,
    asset: str,
    cross_wallet_balance: Decimal,
    positions: Sequence[PositionInput],
    brackets: BracketTables,
) -> AssetFigures:
    """Figures of one pool; ``positions`` are filtered to ``asset`` here."""
    _require_decimal(f"{asset} cross_wallet_balance", cross_wallet_balance)
    mine = [p for p in positions if p.margin_asset == asset]
    cross = [p for p in mine if p.margin_type == "cross"]
    with localcontext() as ctx:
        ctx.prec = PRECISION
        isolated_wallet = _sum(p.isolated_wallet for p in mine)
        wallet = cross_wallet_balance + isolated_wallet
        upnl = total_unrealized_pnl(mine)
        mm = total_maint_margin(positions=mine, brackets=brackets)
        im = total_initial_margin(mine)
        cross_mm = total_maint_margin(positions=cross, brackets=brackets)
        cross_mb = cross_wallet_balance + total_unrealized_pnl(cross)
        return AssetFigures(
            asset=asset,
            cross_wallet_balance=cross_wallet_balance,
            isolated_wallet_balance=isolated_wallet,
            wallet_balance=wallet,
            unrealized_pnl=upnl,
            margin_balance=wallet + upnl,
            maint_margin=mm,
            margin_ratio=capped_ratio(mm, wallet + upnl),
            cross_margin_balance=cross_mb,
            cross_maint_margin=cross_mm,
            cross_margin_ratio=capped_ratio(cross_mm, cross_mb),
            initial_margin=im,
            utilization=capped_ratio(im, wallet + upnl),
            gross_exposure=gross_exposure(mine),
            net_exposure=net_exposure(mine),
        )


@dataclass(frozen=True)
class AccountFigures:
    """Whole account: the ``AssetFigures`` fields summed over pools at face value and
    ratios recomputed from the sums, except ``cross_margin_ratio`` = the worst (max)
    pool's, because each asset's cross pool is liquidated on its own. Plus
    concentration over all positions."""

    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    maint_margin: Decimal
    margin_ratio: Decimal
    cross_margin_ratio: Decimal
    initial_margin: Decimal
    utilization: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    largest_symbol_share: Decimal
    herfindahl: Decimal
    symbol_exposures: dict[str, Decimal]
    per_asset: dict[str, AssetFigures]


def account_figures(
    *,
    wallet_balances: Mapping[str, Decimal],
    positions: Sequence[PositionInput],
    brackets: BracketTables,
) -> AccountFigures:
    """All figures of one account. ``wallet_balances`` maps margin asset → cross wallet
    balance; a position in an asset with no wallet raises (never guess a 0)."""
    check_positions(positions)
    missing = {p.margin_asset for p in positions} - set(wallet_balances)
    if missing:
        raise ValueError(f"no wallet balance for margin asset(s) {sorted(missing)}")
    per_asset = {
        asset: asset_figures(asset=asset, cross_wallet_balance=wallet, positions=positions, brackets=brackets)
        for asset, wallet in wallet_balances.items()
    }
    pools = list(per_asset.values())
    mb = _sum(a.margin_balance for a in pools)
    mm = _sum(a.maint_margin for a in pools)
    im = _sum(a.initial_margin for a in pools)
    return AccountFigures(
        wallet_balance=_sum(a.wallet_balance for a in pools),
        unrealized_pnl=_sum(a.unrealized_pnl for a in pools),
        margin_balance=mb,
        maint_margin=mm,
        margin_ratio=capped_ratio(mm, mb),
        cross_margin_ratio=max((a.cross_margin_ratio for a in pools), default=ZERO),
        initial_margin=im,
        utilization=capped_ratio(im, mb),
        gross_exposure=gross_exposure(positions),
        net_exposure=net_exposure(positions),
        largest_symbol_share=largest_symbol_share(positions),
        herfindahl=herfindahl(positions),
        symbol_exposures=symbol_exposures(positions),
        per_asset=per_asset,
    )
