"""What-if: shock mark prices and project each account's figures (plain Python, no Django).

The projection is a snapshot at the shocked marks, computed with the reference maths in
positions.figures: margin ratios, liquidation prices and which accounts or isolated positions
would be liquidated. It is not a path: a move that recovers before reaching the shocked level
is not modelled, which is why the crash replay uses each symbol's worst move of the day.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from positions.figures import (
    BracketTables,
    PositionInput,
    account_figures,
    position_liquidation,
    unrealized_pnl,
)
from positions.margin import ONE, liquidation_distance

# A mark cannot reach zero (PositionInput refuses it, and no perpetual trades at zero).
MIN_FACTOR = Decimal("0.0001")


@dataclass(frozen=True)
class WhatIfAccount:
    account_id: int
    name: str
    wallet_balances: Mapping[str, Decimal]  # margin asset -> cross wallet balance
    positions: Sequence[PositionInput]  # at the current marks


@dataclass(frozen=True)
class PositionProjection:
    symbol: str
    side: str
    qty: Decimal
    mark_now: Decimal
    mark_after: Decimal
    unrealized_pnl_after: Decimal
    liquidation_now: Decimal | None
    liquidation_after: Decimal | None
    distance_after: Decimal | None
    liquidated: bool


@dataclass(frozen=True)
class Projection:
    account_id: int
    name: str
    margin_balance_now: Decimal
    margin_balance_after: Decimal
    margin_ratio_now: Decimal
    margin_ratio_after: Decimal
    liquidated: bool  # a cross pool at or past maintenance (margin ratio >= 100 %)
    positions: tuple[PositionProjection, ...]

    @property
    def any_liquidation(self) -> bool:
        return self.liquidated or any(p.liquidated for p in self.positions)


def shocked_marks(marks: Mapping[str, Decimal], shocks: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """mark × (1 + shock) per symbol; symbols without a shock keep their mark. −100 % stops just above 0."""
    out = {}
    for symbol, mark in marks.items():
        factor = ONE + shocks.get(symbol, Decimal(0))
        out[symbol] = mark * max(factor, MIN_FACTOR)
    return out


def uniform_shock(symbols: Iterable[str], shock: Decimal) -> dict[str, Decimal]:
    return dict.fromkeys(symbols, shock)


def _with_mark(p: PositionInput, mark: Decimal) -> PositionInput:
    return PositionInput(
        symbol=p.symbol,
        side=p.side,
        qty=p.qty,
        entry_price=p.entry_price,
        mark_price=mark,
        leverage=p.leverage,
        margin_type=p.margin_type,
        isolated_wallet=p.isolated_wallet,
        margin_asset=p.margin_asset,
    )


def _liquidation(p: PositionInput, book: Sequence[PositionInput], account: WhatIfAccount, brackets: BracketTables):
    wallet = account.wallet_balances.get(p.margin_asset, Decimal(0))
    return position_liquidation(position=p, positions=book, cross_wallet_balance=wallet, brackets=brackets)


def _isolated_liquidated(p: PositionInput, point) -> bool:
    """An isolated position is liquidated on its own once the mark crosses its liquidation price."""
    if p.margin_type != "isolated" or point is None:
        return False
    return p.mark_price <= point.price if point.on_fall else p.mark_price >= point.price


def project(account: WhatIfAccount, shocks: Mapping[str, Decimal], brackets: BracketTables) -> Projection:
    now = list(account.positions)
    marks_after = shocked_marks({p.symbol: p.mark_price for p in now}, shocks)
    after = [_with_mark(p, marks_after[p.symbol]) for p in now]
    before_figures = account_figures(wallet_balances=account.wallet_balances, positions=now, brackets=brackets)
    after_figures = account_figures(wallet_balances=account.wallet_balances, positions=after, brackets=brackets)
    cross_liquidated = after_figures.cross_margin_ratio >= ONE
    rows = []
    for p_now, p_after in zip(now, after, strict=True):
        point_now = _liquidation(p_now, now, account, brackets)
        point_after = _liquidation(p_after, after, account, brackets)
        distance = None
        if point_after is not None:
            distance = liquidation_distance(
                mark=p_after.mark_price, liquidation=point_after.price, long=point_after.on_fall
            )
        rows.append(
            PositionProjection(
                symbol=p_now.symbol,
                side=p_now.side,
                qty=p_now.qty,
                mark_now=p_now.mark_price,
                mark_after=p_after.mark_price,
                unrealized_pnl_after=unrealized_pnl(p_after),
                liquidation_now=point_now.price if point_now else None,
                liquidation_after=point_after.price if point_after else None,
                distance_after=distance,
                liquidated=_isolated_liquidated(p_after, point_now)
                or (p_now.margin_type == "cross" and cross_liquidated),
            )
        )
    return Projection(
        account_id=account.account_id,
        name=account.name,
        margin_balance_now=before_figures.margin_balance,
        margin_balance_after=after_figures.margin_balance,
        margin_ratio_now=before_figures.margin_ratio,
        margin_ratio_after=after_figures.margin_ratio,
        liquidated=cross_liquidated,
        positions=tuple(rows),
    )


# --------------------------------------------------------------------------- the stored crash day


@dataclass(frozen=True)
class WorstMove:
    symbol: str
    peak: Decimal
    trough: Decimal
    peak_ms: int
    trough_ms: int

    @property
    def shock(self) -> Decimal:
        """The fall from the day's peak to the lowest low after it, as a fraction (negative)."""
        return self.trough / self.peak - ONE


def worst_move(symbol: str, path: Path) -> WorstMove:
    """The largest peak-to-later-trough fall in a 1-minute kline CSV (open_time,open,high,low,close,…)."""
    best: WorstMove | None = None
    peak, peak_ms = Decimal(0), 0
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            high, low, at = Decimal(row["high"]), Decimal(row["low"]), int(row["open_time"])
            if high > peak:
                peak, peak_ms = high, at
            candidate = WorstMove(symbol, peak, low, peak_ms, at)
            if best is None or candidate.shock < best.shock:
                best = candidate
    if best is None:
        raise ValueError(f"{path}: no bars")
    return best
