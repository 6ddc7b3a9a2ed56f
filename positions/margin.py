"""Exact Binance USDⓈ-M margin maths in Decimal (no Django, no floats).

Reference: shared/reference/binance-usdm.md §1. Everything here is single-asset
mode (USDT- or USDC-margined pools); Multi-Assets mode and Portfolio Margin use
other maths and must be refused upstream.

Public API
----------
``Bracket``                         one row of ``GET /fapi/v1/leverageBracket``
``brackets_from_binance(rows)``     parse + validate one symbol's ``brackets`` list
``check_brackets(brackets)``        validate a bracket sequence you built yourself
``maintenance_margin(notional, brackets)``
``liquidation_price(*, wallet_balance, brackets, qty_*, entry_*, other_*)``
``liquidation_point(...)``          same arguments; also says which way the price must move
``margin_ratio(*, maint_margin, margin_balance)``
``liquidation_distance(*, mark, liquidation, long)``

Conventions
-----------
* Money and prices are ``Decimal``; anything else (bool, int, float, str, NaN,
  Infinity) raises ``ValueError``. Results are not rounded: callers quantize for
  display. All arithmetic runs in a local context of ``PRECISION`` digits, so
  results are exact to ~1e-30 relative, far below a cent.
* Tier edges: a notional exactly on an edge uses the upper tier (``[floor, cap)``).
  The ``cum`` recurrence makes the maintenance margin continuous there, so the
  choice never changes a number.
* Notionals beyond the last ``cap``: Binance will not open them, but a mark move
  can push an open position past the cap. We keep using the last tier (its line
  continues the same convex curve) rather than refuse, because refusing would
  blind the risk desk exactly when a position is at its most dangerous.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

ZERO = Decimal(0)
ONE = Decimal(1)
PRECISION = 40

# Binance sends bracket numbers as JSON floats. str(float) restores the decimal
# they meant (shortest repr), so any cum mismatch larger than float noise is a
# broken or hand-edited table, not rounding.
CUM_TOLERANCE = Decimal("1e-6")

# margin_ratio / utilisation saturate here instead of returning Infinity (which
# JSON cannot carry) or a negative number (which would read as "safe").
# 100 = 10,000 %: far beyond liquidation (1 = 100 %), so no threshold a rule
# could sensibly use is ever crossed "from above" by the cap.
RATIO_CAP = Decimal(100)

# Roots found in adjacent tier intervals can differ from the interval edge by a
# rounding step of the 40-digit context; accept them within this relative slack.
_EDGE_SLACK = Decimal("1e-30")


@dataclass(frozen=True)
class Bracket:
    """One leverage bracket; validated on construction."""

    floor: Decimal  # notionalFloor
    cap: Decimal  # notionalCap
    mmr: Decimal  # maintMarginRatio
    cum: Decimal  # maintenance amount
    max_leverage: int  # initialLeverage

    def __post_init__(self) -> None:
        for name in ("floor", "cap", "mmr", "cum"):
            _require_decimal(f"Bracket.{name}", getattr(self, name))
        if self.floor < 0 or self.cap <= self.floor:
            raise ValueError(f"Bracket needs 0 <= floor < cap, got floor={self.floor} cap={self.cap}")
        # mmr >= 1 would make a long's liquidation equation degenerate (slope <= 0).
        if not ZERO < self.mmr < ONE:
            raise ValueError(f"Bracket.mmr must be in (0, 1), got {self.mmr}")
        if self.cum < 0:
            raise ValueError(f"Bracket.cum must be >= 0, got {self.cum}")
        if not _is_int(self.max_leverage) or self.max_leverage < 1:
            raise ValueError(f"Bracket.max_leverage must be an int >= 1, got {self.max_leverage!r}")


@dataclass(frozen=True)
class LiquidationPoint:
    """A liquidation price and the direction that reaches it.

    ``on_fall`` is True when the position is liquidated if the mark *falls* to
    ``price`` (a long, or a net-long hedge), False when it must *rise* to it.
    """

    price: Decimal
    on_fall: bool


# --------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_decimal(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal):
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _require_non_negative(name: str, value: object) -> Decimal:
    if _require_decimal(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value  # type: ignore[return-value]


def _require_positive(name: str, value: object) -> Decimal:
    if _require_decimal(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value  # type: ignore[return-value]


def check_brackets(brackets: Sequence[Bracket]) -> tuple[Bracket, ...]:
    """Validate a bracket table: starts at 0, contiguous, mmr non-decreasing, cum recurrence.

    Returns the table as a tuple. The recurrence ``cum_n = floor_n·(mmr_n − mmr_{n−1}) + cum_{n−1}``
    is what makes maintenance margin continuous at every edge, and the book's
    vectorised maths relies on it (MM is then the max of the tier lines).
    """
    if isinstance(brackets, (str, bytes)) or not isinstance(brackets, Sequence) or not brackets:
        raise ValueError("brackets must be a non-empty sequence of Bracket")
    table = tuple(brackets)
    for i, b in enumerate(table):
        if not isinstance(b, Bracket):
            raise ValueError(f"bracket {i + 1}: expected Bracket, got {type(b).__name__}")
    if table[0].floor != 0 or table[0].cum != 0:
        raise ValueError(f"bracket 1: floor and cum must be 0, got floor={table[0].floor} cum={table[0].cum}")
    for i in range(1, len(table)):
        _check_step(i + 1, table[i - 1], table[i])
    return table


def _check_step(number: int, prev: Bracket, cur: Bracket) -> None:
    if cur.floor != prev.cap:
        raise ValueError(f"bracket {number}: floor {cur.floor} != previous cap {prev.cap} (gap or overlap)")
    if cur.mmr < prev.mmr:
        raise ValueError(f"bracket {number}: maintMarginRatio {cur.mmr} < previous {prev.mmr}")
    with localcontext() as ctx:
        ctx.prec = PRECISION
        expected = cur.floor * (cur.mmr - prev.mmr) + prev.cum
        if abs(cur.cum - expected) > CUM_TOLERANCE:
            raise ValueError(f"bracket {number}: cum {cur.cum} breaks the recurrence, expected {expected}")


def _json_decimal(row_label: str, field: str, value: object) -> Decimal:
    # Binance sends JSON numbers; via str() so 0.0065 stays 0.0065 and does not
    # become 0.00649999999999999994...
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"{row_label}: {field} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{row_label}: {field} must be finite, got {value!r}")
    try:
        result = Decimal(str(value))
    except ArithmeticError as exc:
        raise ValueError(f"{row_label}: {field} is not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{row_label}: {field} must be finite, got {value!r}")
    return result


def _bracket_from_row(index: int, row: object) -> Bracket:
    label = f"bracket row {index}"
    if not isinstance(row, dict):
        raise ValueError(f"{label}: expected a dict, got {type(row).__name__}")
    label = f"bracket row {index} (bracket={row.get('bracket')!r})"
    missing = {"notionalFloor", "notionalCap", "maintMarginRatio", "cum", "initialLeverage"} - row.keys()
    if missing:
        raise ValueError(f"{label}: missing fields {sorted(missing)}")
    leverage = row["initialLeverage"]
    if not _is_int(leverage):
        raise ValueError(f"{label}: initialLeverage must be an int, got {leverage!r}")
    try:
        return Bracket(
            floor=_json_decimal(label, "notionalFloor", row["notionalFloor"]),
            cap=_json_decimal(label, "notionalCap", row["notionalCap"]),
            mmr=_json_decimal(label, "maintMarginRatio", row["maintMarginRatio"]),
            cum=_json_decimal(label, "cum", row["cum"]),
            max_leverage=leverage,
        )
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc


def brackets_from_binance(rows: list[dict]) -> list[Bracket]:
    """Parse one symbol's ``brackets`` list from ``/fapi/v1/leverageBracket``.

    Rows must come in ascending order (``bracket`` 1, 2, … when present), start
    at notional 0, be contiguous (floor = previous cap) and satisfy the cum
    recurrence; otherwise ``ValueError`` names the offending row.
    """
    if not isinstance(rows, list) or not rows:
        raise ValueError("brackets must be a non-empty list of dicts")
    table = [_bracket_from_row(i + 1, row) for i, row in enumerate(rows)]
    for i, row in enumerate(rows):
        number = row.get("bracket")
        if number is not None and number != i + 1:
            raise ValueError(f"bracket row {i + 1}: bracket number {number!r} out of order (expected {i + 1})")
    check_brackets(table)
    return table


# --------------------------------------------------------------------------- maintenance margin


def _tier(notional: Decimal, table: Sequence[Bracket]) -> Bracket:
    """The bracket whose [floor, cap) holds the notional; the last one beyond its cap."""
    chosen = table[0]
    for b in table:
        if b.floor > notional:
            break
        chosen = b
    return chosen


def maintenance_margin(notional: Decimal, brackets: Sequence[Bracket]) -> Decimal:
    """MM = |notional| × mmr(tier) − cum(tier), tier chosen by the notional at mark.

    ``notional`` is the absolute position notional (|qty| × mark); a negative
    value raises so a signed Binance ``notional`` cannot slip through.
    """
    _require_non_negative("notional", notional)
    table = check_brackets(brackets)
    b = _tier(notional, table)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return notional * b.mmr - b.cum


# --------------------------------------------------------------------------- liquidation price


@dataclass(frozen=True)
class _Leg:
    qty: Decimal  # absolute size
    entry: Decimal
    sign: int  # +1 long, -1 short


def _legs(
    *,
    qty_both: Decimal,
    entry_both: Decimal,
    qty_long: Decimal,
    entry_long: Decimal,
    qty_short: Decimal,
    entry_short: Decimal,
) -> list[_Leg]:
    for name, value in (
        ("qty_both", qty_both),
        ("entry_both", entry_both),
        ("entry_long", entry_long),
        ("entry_short", entry_short),
    ):
        _require_decimal(name, value)
    _require_non_negative("qty_long", qty_long)
    _require_non_negative("qty_short", qty_short)
    if qty_both != 0 and (qty_long != 0 or qty_short != 0):
        raise ValueError("pass either qty_both (one-way) or qty_long/qty_short (hedge), not both")
    if qty_both != 0:
        return [_Leg(abs(qty_both), _require_positive("entry_both", entry_both), 1 if qty_both > 0 else -1)]
    legs = []
    if qty_long != 0:
        legs.append(_Leg(qty_long, _require_positive("entry_long", entry_long), 1))
    if qty_short != 0:
        legs.append(_Leg(qty_short, _require_positive("entry_short", entry_short), -1))
    if not legs:
        raise ValueError("no position: qty_both, qty_long and qty_short are all zero")
    return legs


_Interval = tuple[Decimal, Decimal | None, list[int]]


def _tier_intervals(legs: Sequence[_Leg], table: Sequence[Bracket]) -> list[_Interval]:
    """Split price (0, ∞) where any leg changes tier: [(low, high or None, tier index per leg)].

    A tier combination can only be "consistent at the resulting price" if that
    price lies inside every leg's tier, i.e. inside one of these intervals; all
    other combinations of the up-to 12 × 12 possible ones are never consistent,
    so sweeping these (at most 2·12 − 1) intervals is the complete search.
    """
    events = sorted((b.floor / leg.qty, li, k) for li, leg in enumerate(legs) for k, b in enumerate(table[1:], 1))
    tiers = [0] * len(legs)
    intervals: list[_Interval] = []
    low = ZERO
    for price, li, k in events:
        if price > low:
            intervals.append((low, price, list(tiers)))
            low = price
        tiers[li] = k
    intervals.append((low, None, list(tiers)))
    return intervals


def _root_in(low: Decimal, high: Decimal | None, slope: Decimal, const: Decimal) -> Decimal | None:
    """Root of const + slope·P inside [low, high] (None = unbounded), or None."""
    if slope == 0:
        return None  # flat segment: f is constant here; any root shows up at a neighbouring edge
    root = -const / slope
    slack = _EDGE_SLACK * (abs(root) + 1)
    if root < low - slack or (high is not None and root > high + slack):
        return None
    return root


def _solve(wallet: Decimal, legs: Sequence[_Leg], table: Sequence[Bracket]) -> LiquidationPoint | None:
    """Lowest positive price where equity equals maintenance margin.

    f(P) = W' + Σ sign·Q·(P − EP) − Σ (Q·P·mmr_k − cum_k) is linear inside each
    tier interval. For a one-way position f is monotone, so there is at most one
    root (the FAQ's re-selection loop finds the same one). A net-long hedge can
    have two roots (f is concave because mmr grows with notional): we return the
    lower one, the price a falling market reaches first from the safe side; the
    upper one only exists at notionals in the 25–50 % mmr tiers.
    """
    for low, high, tiers in _tier_intervals(legs, table):
        slope = const = ZERO
        for leg, k in zip(legs, tiers, strict=True):
            b = table[k]
            slope += leg.qty * (leg.sign - b.mmr)
            const += b.cum - leg.sign * leg.qty * leg.entry
        root = _root_in(low, high, slope, wallet + const)
        if root is not None and root > 0:
            return LiquidationPoint(price=root, on_fall=slope > 0)
    return None


def liquidation_point(
    *,
    wallet_balance: Decimal,
    brackets: Sequence[Bracket],
    qty_both: Decimal = ZERO,
    entry_both: Decimal = ZERO,
    qty_long: Decimal = ZERO,
    entry_long: Decimal = ZERO,
    qty_short: Decimal = ZERO,
    entry_short: Decimal = ZERO,
    other_maint_margin: Decimal = ZERO,
    other_unrealized_pnl: Decimal = ZERO,
) -> LiquidationPoint | None:
    """Like ``liquidation_price`` but also says whether a fall or a rise reaches it."""
    _require_decimal("wallet_balance", wallet_balance)
    _require_non_negative("other_maint_margin", other_maint_margin)
    _require_decimal("other_unrealized_pnl", other_unrealized_pnl)
    table = check_brackets(brackets)
    legs = _legs(
        qty_both=qty_both,
        entry_both=entry_both,
        qty_long=qty_long,
        entry_long=entry_long,
        qty_short=qty_short,
        entry_short=entry_short,
    )
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _solve(wallet_balance - other_maint_margin + other_unrealized_pnl, legs, table)


def liquidation_price(
    *,
    wallet_balance: Decimal,
    brackets: Sequence[Bracket],
    qty_both: Decimal = ZERO,
    entry_both: Decimal = ZERO,
    qty_long: Decimal = ZERO,
    entry_long: Decimal = ZERO,
    qty_short: Decimal = ZERO,
    entry_short: Decimal = ZERO,
    other_maint_margin: Decimal = ZERO,
    other_unrealized_pnl: Decimal = ZERO,
) -> Decimal | None:
    """Binance's liquidation price (FAQ closed form with tier re-selection), unrounded.

    One-way: signed ``qty_both``. Hedge: absolute ``qty_long``/``qty_short``; in
    cross margin pass both legs (they share one price), in isolated margin pass
    one leg and its isolated wallet. ``other_*`` are TMM1/UPNL1 of the account's
    other *cross* positions in the same margin asset (0 for isolated).

    Returns None where Binance shows "--": no positive price liquidates the
    position (e.g. a long whose wallet covers the whole notional), or, for a
    short, the account is already below maintenance at every price.
    """
    point = liquidation_point(
        wallet_balance=wallet_balance,
        brackets=brackets,
        qty_both=qty_both,
        entry_both=entry_both,
        qty_long=qty_long,
        entry_long=entry_long,
        qty_short=qty_short,
        entry_short=entry_short,
        other_maint_margin=other_maint_margin,
        other_unrealized_pnl=other_unrealized_pnl,
    )
    return None if point is None else point.price


# --------------------------------------------------------------------------- ratios


def capped_ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator for a non-negative numerator, saturated at ``RATIO_CAP``.

    0 when the numerator is 0 (nothing at risk), ``RATIO_CAP`` when the
    denominator is <= 0 (no margin left), otherwise min(ratio, RATIO_CAP) so the
    figure stays monotone as the denominator shrinks towards 0.
    """
    _require_non_negative("numerator", numerator)
    _require_decimal("denominator", denominator)
    if numerator == 0:
        return ZERO
    if denominator <= 0:
        return RATIO_CAP
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return min(numerator / denominator, RATIO_CAP)


def margin_ratio(*, maint_margin: Decimal, margin_balance: Decimal) -> Decimal:
    """Maintenance margin / margin balance; 1 (100 %) means liquidation.

    Defined for every finite input: 0 with no maintenance margin (no position,
    whatever the balance), ``RATIO_CAP`` (100 = 10,000 %) when the margin balance
    is <= 0 while positions are open (at or past liquidation), and the plain
    ratio capped at ``RATIO_CAP`` otherwise. Never Infinity, never negative.
    """
    _require_non_negative("maint_margin", maint_margin)
    _require_decimal("margin_balance", margin_balance)
    return capped_ratio(maint_margin, margin_balance)


def liquidation_distance(*, mark: Decimal, liquidation: Decimal | None, long: bool) -> Decimal | None:
    """Fraction of the mark price left before liquidation (<= 0: due).

    long: (mark − LP) / mark; short: (LP − mark) / mark. None when there is no
    liquidation price. For a cross hedge pair pass ``long=LiquidationPoint.on_fall``
    (both legs share one LP, and the direction is the pair's, not the leg's).
    """
    _require_positive("mark", mark)
    if not isinstance(long, bool):
        raise ValueError(f"long must be a bool, got {long!r}")
    if liquidation is None:
        return None
    _require_positive("liquidation", liquidation)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        gap = mark - liquidation if long else liquidation - mark
        return gap / mark
