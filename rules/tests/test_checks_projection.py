"""The gate's float projection equals the Decimal maths (positions.figures / positions.margin) to
the cent: position and gross notional, margin balance, margin ratio, liquidation price; ratios
to 1e-9. Random accounts (one-way and hedge, cross and isolated) and random orders that open,
add, reduce, close and flip positions."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from positions.book import BookPosition
from positions.figures import PositionInput, account_figures, position_liquidation
from positions.margin import RATIO_CAP, capped_ratio, liquidation_distance
from rules import checks as c
from rules.tests.test_checks import market, state
from rules.tests.test_gate_fixtures import TABLES

CENT = D("0.005")
OTHERS = ("ETHUSDT", "BNBUSDT", "SOLUSDT")
MARKS = {"BTCUSDT": D("50000"), "ETHUSDT": D("2500"), "BNBUSDT": D("590"), "SOLUSDT": D("170")}


def _fill(o: c.Order, mark: D) -> D:
    if o.price is None:
        return mark
    if o.market:
        return o.price
    return max(o.price, mark) if o.buy else min(o.price, mark)


def reference(o: c.Order, positions: list[BookPosition], wallet: D, hedge: bool) -> dict:
    """The projection in Decimal, from first principles and positions.figures/margin."""
    mark = MARKS["BTCUSDT"]
    side = o.position_side if hedge else "BOTH"
    leg = next((p for p in positions if p.symbol == "BTCUSDT" and p.side == side), None)
    others = [p for p in positions if p is not leg]
    held = D(0) if leg is None else (-leg.qty if side == "SHORT" else leg.qty)
    entry = D(0) if leg is None else leg.entry_price
    lev = 20 if leg is None else leg.leverage
    isolated = leg is not None and leg.margin_type == "isolated"
    iso = D(0) if leg is None else leg.isolated_wallet
    f = _fill(o, mark)
    delta = o.qty if o.buy else -o.qty
    new = held + delta
    if held == 0 or (held > 0) == o.buy:
        new_entry, realized = (abs(held) * entry + o.qty * f) / abs(new), D(0)
        new_iso = iso + o.qty * f / lev if isolated else D(0)
    elif abs(delta) <= abs(held):
        new_entry, realized = entry, (f - entry) * (o.qty if held > 0 else -o.qty)
        new_iso = iso * abs(new) / abs(held) if isolated else D(0)
    else:
        new_entry, realized = f, (f - entry) * held
        new_iso = abs(new) * f / lev if isolated else D(0)
    cross_wallet = wallet + realized - (new_iso - iso)
    after = [p.with_mark(MARKS[p.symbol]) for p in others]
    new_leg = None
    if new != 0:
        new_leg = PositionInput(
            symbol="BTCUSDT",
            side=side,
            qty=abs(new) if hedge else new,
            entry_price=new_entry,
            mark_price=mark,
            leverage=lev,
            margin_type="isolated" if isolated else "cross",
            isolated_wallet=new_iso,
        )
        after.append(new_leg)
    figs = account_figures(wallet_balances={"USDT": cross_wallet}, positions=after, brackets=TABLES)
    out = {
        "position_notional": abs(new) * mark,
        "account_gross_notional": figs.gross_exposure,
        "margin_balance": figs.margin_balance,
        "leverage": figs.gross_exposure / figs.margin_balance if figs.margin_balance > 0 else RATIO_CAP,
    }
    if isolated:
        from positions.figures import position_maint_margin, unrealized_pnl

        mm = position_maint_margin(new_leg, TABLES["BTCUSDT"]) if new_leg else D(0)
        out["margin_ratio"] = capped_ratio(mm, new_iso + (unrealized_pnl(new_leg) if new_leg else D(0)))
    else:
        out["margin_ratio"] = figs.per_asset["USDT"].cross_margin_ratio
    target = new_leg or next((p for p in after if p.symbol == "BTCUSDT"), None)
    point = None
    if target is not None:
        point = position_liquidation(
            position=target, positions=after, cross_wallet_balance=cross_wallet, brackets=TABLES
        )
    out["liquidation_price"] = point.price if point else None
    out["liquidation_distance"] = (
        liquidation_distance(mark=mark, liquidation=point.price, long=point.on_fall) if point else None
    )
    return out


def gate_projection(o: c.Order, positions: list[BookPosition], wallet: D, hedge: bool) -> c.Projection:
    live = state(wallet=str(wallet), positions=positions, marks={s: str(p) for s, p in MARKS.items()})
    account = c.account_view(account_id=1, trading_state="ACTIVE", hedge=hedge, state=live, user_feed_connected=True)
    decision = c.check_order(o, account, market(), c.compile_profile({}), c.Counters())
    assert decision.projection is not None, decision.failures
    return decision.projection


def assert_same(pr: c.Projection, ref: dict) -> None:
    for name in ("position_notional", "account_gross_notional", "margin_balance", "liquidation_price"):
        got, want = getattr(pr, name), ref[name]
        if want is None:
            assert got is None, (name, got)
        else:
            assert got is not None and abs(D(repr(got)) - want) <= CENT, (name, got, want)
    for name in ("leverage", "margin_ratio", "liquidation_distance"):
        got, want = getattr(pr, name), ref[name]
        if want is None:
            assert got is None, (name, got)
        else:
            assert abs(D(repr(got)) - want) <= D("1e-9") * max(1, abs(want)), (name, got, want)


def random_case(rng: random.Random, hedge: bool) -> tuple[c.Order, list[BookPosition], D]:
    wallet = D(rng.choice(["3000", "10000", "50000", "250000"]))
    positions = []
    for symbol in rng.sample(OTHERS, rng.randint(0, 3)):
        qty = D(rng.randint(1, 4000)) / 100 * rng.choice([1, -1])
        positions.append(
            BookPosition(
                symbol, "BOTH", qty, MARKS[symbol] * D(rng.choice(["0.9", "1", "1.1"])), rng.choice([5, 10, 20])
            )
        )
    isolated = not hedge and rng.random() < 0.3
    sides = ("LONG", "SHORT") if hedge else ("BOTH",)
    for side in sides:
        if rng.random() < 0.75:
            qty = D(rng.randint(1, 3000)) / 1000
            qty = -qty if side == "BOTH" and rng.random() < 0.5 else qty
            entry = D(rng.randint(42000, 58000))
            iso = (abs(qty) * entry / 10).quantize(D("0.01")) if isolated else D(0)
            positions.append(
                BookPosition(
                    "BTCUSDT",
                    side,
                    qty,
                    entry,
                    10,
                    margin_type="isolated" if isolated else "cross",
                    isolated_wallet=iso,
                )
            )
    buy = rng.random() < 0.5
    kind = rng.choice(["LIMIT", "LIMIT", "MARKET"])
    price = D(rng.randint(480000, 520000)) / 10 if kind == "LIMIT" or rng.random() < 0.5 else None
    leg = next((p for p in positions if p.symbol == "BTCUSDT"), None)
    position_side = rng.choice(sides)
    held = next((p.qty for p in positions if p.symbol == "BTCUSDT" and p.side == position_side), D(0))
    closing = hedge and (position_side == "LONG") != buy
    most = held if closing else D("3")
    if closing and held == 0:
        buy, closing = not buy, False  # nothing to close: open instead
    qty = max(D("0.001"), (D(rng.randint(1, 3000)) / 1000).min(most if most > 0 else D("3")))
    if leg is not None and not hedge and rng.random() < 0.3:
        qty = abs(leg.qty)  # close exactly
    o = c.Order.make(
        symbol="BTCUSDT", side="BUY" if buy else "SELL", type=kind, qty=qty, price=price, position_side=position_side
    )
    return o, positions, wallet


@pytest.mark.parametrize("hedge", [False, True])
def test_the_float_projection_equals_the_decimal_maths_to_the_cent(hedge):
    rng = random.Random(20260506 + hedge)
    for _ in range(300):
        o, positions, wallet = random_case(rng, hedge)
        assert_same(gate_projection(o, positions, wallet, hedge), reference(o, positions, wallet, hedge))


def test_the_faq_style_case_by_hand():
    """A 0.5 BTC long at 49,000, 10,000 wallet; buy 0.01 at 50,100 (above the 50,000 mark)."""
    positions = [BookPosition("BTCUSDT", "BOTH", D("0.5"), D("49000"), 20)]
    o = c.Order.make(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.01"), price=D("50100"))
    pr = gate_projection(o, positions, D("10000"), False)
    ref = reference(o, positions, D("10000"), False)
    assert_same(pr, ref)
    assert ref["position_notional"] == D("25500.00")
    # entry (0.5·49,000 + 0.01·50,100) / 0.51; the fill above the mark shows as an immediate loss
    assert abs(D(repr(pr.margin_balance)) - (D("10000") + D("0.51") * (D("50000") - D("25001") / D("0.51")))) < CENT
