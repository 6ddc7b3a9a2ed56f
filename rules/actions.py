"""Automatic actions a profile may enable on a critical breach. Plain Python: plans only.

They only ever tighten: set the account to REDUCING or HALTED, cancel its open
orders, or cut positions with reduce-only market orders. "Just enough" for a
margin-ratio breach means the smallest common fraction of every cross position
whose removal brings the cross margin ratio under the target (the limit less the
hysteresis band), found by bisection on the exact Decimal figures and rounded up
to each symbol's step size. A liquidation-distance breach is cured the same way:
the smallest common fraction of the cross positions after which every cross
position is at least the target distance from its liquidation price. A daily-loss
breach cannot be undone by trading, so cutting positions there means closing them
(the loss stops growing).

A per-symbol breach (a position's notional above its cap) is that position's,
not the account's: the plan cuts only the offending position (its symbol and side,
the breach's subject "BTCUSDT:LONG"), and only by the excess, down to a little
under the cap (SYMBOL_CAP_MARGIN), the kept size rounded down to the step so the
rest is within the cap; reduce-only. Without the subject and the cap it plans no
cut at all rather than close every position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from positions.figures import (
    BracketTables,
    PositionInput,
    position_liquidation,
    total_maint_margin,
    total_unrealized_pnl,
)

KINDS = ("reducing", "halted", "cancel_orders", "reduce_positions")
# A critical liquidation distance is a margin breach seen per position: it triggers too.
TRIGGERS = ("daily_loss", "margin_ratio", "risk_degree", "liq_distance")
# Breaches of one position's limit (subject "SYMBOL:SIDE"): a cut there touches that position only.
SYMBOL_TRIGGERS = ("position_notional",)
# Cut a little under the cap, not onto it, so the next mark tick does not re-trigger (as the
# margin-ratio target sits at 95 % of its limit).
SYMBOL_CAP_MARGIN = Decimal("0.05")
BISECTION_STEPS = 40  # 2^-40 of a position: far below any exchange step size


@dataclass(frozen=True)
class PlannedOrder:
    symbol: str
    side: str  # BUY / SELL
    position_side: str  # BOTH / LONG / SHORT
    quantity: Decimal
    type: str = "MARKET"
    reduce_only: bool = True


@dataclass(frozen=True)
class ActionPlan:
    kind: str
    trigger: str
    trading_state: str | None = None
    cancel_orders: bool = False
    orders: tuple[PlannedOrder, ...] = ()
    figures: dict[str, str | None] = field(default_factory=dict)  # before/after numbers behind the plan

    def as_json(self) -> dict:
        body = asdict(self)
        body["orders"] = [{**o, "quantity": str(o["quantity"])} for o in body["orders"]]
        return body


def closing_order(p: PositionInput, quantity: Decimal) -> PlannedOrder:
    long = p.side == "LONG" or (p.side == "BOTH" and p.qty > 0)
    return PlannedOrder(symbol=p.symbol, side="SELL" if long else "BUY", position_side=p.side, quantity=quantity)


def cross_ratio(positions: Sequence[PositionInput], wallet: Decimal, brackets: BracketTables) -> Decimal:
    cross = [p for p in positions if p.margin_type == "cross"]
    balance = wallet + total_unrealized_pnl(cross)
    mm = total_maint_margin(positions=cross, brackets=brackets)
    return mm / balance if balance > 0 else Decimal(1)


def _scaled(positions: Sequence[PositionInput], keep: Decimal) -> list[PositionInput]:
    # Reducing realises PnL into the wallet and removes it from uPnL: the margin balance stays.
    return [replace(p, qty=p.qty * keep) for p in positions if p.margin_type == "cross" and p.qty * keep != 0]


def _smallest_cut(ok) -> Decimal:
    """Smallest f in [0, 1] with ok(f), for a predicate that is monotone in f (cutting more never hurts)."""
    if ok(Decimal(0)):
        return Decimal(0)
    low, high = Decimal(0), Decimal(1)
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


def fraction_to_cut(
    *, positions: Sequence[PositionInput], cross_wallet: Decimal, brackets: BracketTables, target: Decimal
) -> Decimal:
    """Smallest f in [0, 1] with cross ratio(positions × (1 − f)) ≤ target."""
    cross = [p for p in positions if p.margin_type == "cross"]
    balance = cross_wallet + total_unrealized_pnl(cross)
    if balance <= 0:
        return Decimal(1)  # past liquidation: only closing everything helps

    def ok(f: Decimal) -> bool:
        kept = _scaled(cross, Decimal(1) - f)
        return not kept or total_maint_margin(positions=kept, brackets=brackets) / balance <= target

    return _smallest_cut(ok)


def fraction_for_distance(
    *, positions: Sequence[PositionInput], cross_wallet: Decimal, brackets: BracketTables, target: Decimal
) -> Decimal:
    """Smallest f with every cross position's liquidation distance ≥ target after cutting f of each."""
    cross = [p for p in positions if p.margin_type == "cross"]
    upnl = total_unrealized_pnl(cross)

    def ok(f: Decimal) -> bool:
        kept = _scaled(cross, Decimal(1) - f)
        wallet = cross_wallet + upnl * f  # the closed part's PnL is realised into the wallet
        for p in kept:
            point = position_liquidation(position=p, positions=kept, cross_wallet_balance=wallet, brackets=brackets)
            if point is not None and abs(p.mark_price - point.price) / p.mark_price < target:
                return False
        return True

    return _smallest_cut(ok)


def _round_up(qty: Decimal, step: Decimal | None) -> Decimal:
    if not step:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_CEILING) * step


def _round_down(qty: Decimal, step: Decimal | None) -> Decimal:
    if not step:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _subject_position(positions: Sequence[PositionInput], subject: str) -> PositionInput | None:
    """The position a per-symbol breach is about: "BTCUSDT:LONG" (hedge leg) or "BTCUSDT:BOTH"."""
    symbol, _, side = subject.partition(":")
    for p in positions:
        if p.symbol == symbol and (not side or p.side == side) and p.qty:
            return p
    return None


def symbol_cut(
    *, position: PositionInput, cap: Decimal, step: Decimal | None, margin: Decimal = SYMBOL_CAP_MARGIN
) -> tuple[Decimal, Decimal]:
    """(quantity to cut, target notional): the position is kept at the largest step multiple whose
    notional at the mark is within cap × (1 − margin); nothing to cut when it already is."""
    size = abs(position.qty)
    target = cap * (Decimal(1) - margin)
    if position.mark_price <= 0 or size * position.mark_price <= target:
        return Decimal(0), target
    keep = max(Decimal(0), _round_down(target / position.mark_price, step))
    return min(size, size - keep), target


def _plan_symbol_cut(
    *,
    kind: str,
    trigger: str,
    positions: Sequence[PositionInput],
    subject: str | None,
    limit: Decimal | None,
    step_sizes: Mapping[str, Decimal],
) -> ActionPlan:
    position = _subject_position(positions, subject) if subject else None
    figures: dict[str, str | None] = {"subject": subject, "limit": None if limit is None else str(limit)}
    orders: tuple[PlannedOrder, ...] = ()
    if position is None or limit is None or limit <= 0:
        # Which position, or to what size, is unknown: cutting every position instead would
        # punish the account for one symbol. Open orders are still cancelled; people decide the rest.
        figures["not_planned"] = "no position or cap for the breach's subject"
    else:
        qty, target = symbol_cut(position=position, cap=limit, step=step_sizes.get(position.symbol))
        before = abs(position.qty) * position.mark_price
        figures.update(
            notional_before=str(before),
            target_notional=str(target),
            notional_after=str((abs(position.qty) - qty) * position.mark_price),
        )
        if qty > 0:
            orders = (closing_order(position, qty),)
    return ActionPlan(kind=kind, trigger=trigger, cancel_orders=True, orders=orders, figures=figures)


def plan_action(
    *,
    kind: str,
    trigger: str,
    positions: Sequence[PositionInput],
    cross_wallet: Decimal,
    brackets: BracketTables,
    target_ratio: Decimal | None,
    step_sizes: Mapping[str, Decimal],
    target_distance: Decimal | None = None,
    subject: str | None = None,
    limit: Decimal | None = None,
) -> ActionPlan:
    """The plan for one action. Nothing here talks to the exchange. `subject` and `limit` (the
    breach's "SYMBOL:SIDE" and its critical level) size a per-symbol cut (SYMBOL_TRIGGERS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown action {kind!r}; use one of {', '.join(KINDS)}")
    if kind in ("reducing", "halted"):
        return ActionPlan(kind=kind, trigger=trigger, trading_state=kind.upper())
    if kind == "cancel_orders":
        return ActionPlan(kind=kind, trigger=trigger, cancel_orders=True)
    if trigger in SYMBOL_TRIGGERS:
        return _plan_symbol_cut(
            kind=kind, trigger=trigger, positions=positions, subject=subject, limit=limit, step_sizes=step_sizes
        )
    before = cross_ratio(positions, cross_wallet, brackets)
    if trigger == "liq_distance" and target_distance is not None:
        # Just enough for every cross position to stand the target distance from liquidation
        # (the evaluator passes it; before, a fraction of 1 closed every cross position).
        fraction = fraction_for_distance(
            positions=positions, cross_wallet=cross_wallet, brackets=brackets, target=target_distance
        )
    elif trigger == "daily_loss" or target_ratio is None:
        fraction = Decimal(1)
    else:
        fraction = fraction_to_cut(
            positions=positions, cross_wallet=cross_wallet, brackets=brackets, target=target_ratio
        )
    orders = []
    for p in positions:
        if p.margin_type != "cross" and trigger != "daily_loss":
            continue  # an isolated position does not feed the cross ratio
        size = abs(p.qty)
        qty = min(size, _round_up(size * fraction, step_sizes.get(p.symbol)))
        if qty > 0:
            orders.append(closing_order(p, qty))
    figures = {
        "cross_margin_ratio_before": str(before),
        "fraction_cut": str(fraction),
        "target_ratio": None if target_ratio is None else str(target_ratio),
    }
    if target_distance is not None:
        figures["target_distance"] = str(target_distance)
    return ActionPlan(kind=kind, trigger=trigger, cancel_orders=True, orders=tuple(orders), figures=figures)
