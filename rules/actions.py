"""Automatic actions a profile may enable on a critical breach. Plain Python: plans only.

They only ever tighten: set the account to REDUCING or HALTED, cancel its open
orders, or cut positions with reduce-only market orders. "Just enough" for a
margin-ratio breach means the smallest common fraction of every cross position
whose removal brings the cross margin ratio under the target (the limit less the
hysteresis band), found by bisection on the exact Decimal figures and rounded up
to each symbol's step size. A daily-loss breach cannot be undone by trading, so
cutting positions there means closing them (the loss stops growing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_CEILING, Decimal

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
) -> ActionPlan:
    """The plan for one action. Nothing here talks to the exchange."""
    if kind not in KINDS:
        raise ValueError(f"unknown action {kind!r}; use one of {', '.join(KINDS)}")
    if kind in ("reducing", "halted"):
        return ActionPlan(kind=kind, trigger=trigger, trading_state=kind.upper())
    if kind == "cancel_orders":
        return ActionPlan(kind=kind, trigger=trigger, cancel_orders=True)
    before = cross_ratio(positions, cross_wallet, brackets)
    if trigger == "daily_loss" or target_ratio is None:
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
    return ActionPlan(kind=kind, trigger=trigger, cancel_orders=True, orders=tuple(orders), figures=figures)
