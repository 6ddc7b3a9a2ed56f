"""A per-symbol breach cuts that symbol's position, and only by the excess (h18c's finding: the plan
used to close every cross position of the account); account-level breaches keep their plans; a
liquidation-distance breach cuts just enough, with the target distance the evaluator passes."""

from __future__ import annotations

from decimal import Decimal as D

from positions.figures import position_liquidation
from rules.actions import SYMBOL_CAP_MARGIN, plan_action
from rules.tests.test_actions import STEPS, TABLES, pos


def plan(trigger, positions, **kw):
    args = dict(
        kind="reduce_positions",
        trigger=trigger,
        positions=positions,
        cross_wallet=D("20000"),
        brackets=TABLES,
        target_ratio=None,
        step_sizes=STEPS,
    )
    return plan_action(**{**args, **kw})


def test_a_notional_breach_cuts_only_that_position_and_only_by_the_excess():
    btc, eth = pos("BTCUSDT", "2", "41000", "40000"), pos("ETHUSDT", "-20", "3000", "3100")
    cap = D("50000")  # BTC stands at 80,000
    p = plan("position_notional", [btc, eth], subject="BTCUSDT:BOTH", limit=cap)
    [order] = p.orders
    assert (order.symbol, order.side, order.position_side, order.reduce_only, order.type) == (
        "BTCUSDT",
        "SELL",
        "BOTH",
        True,
        "MARKET",
    )
    # kept: 1.187 BTC = 47,480 USDT, under the cap less its 5 % margin (47,500); cut: 0.813, a step multiple
    assert D("0.05") == SYMBOL_CAP_MARGIN and order.quantity == D("0.813")
    kept = D("2") - order.quantity
    assert kept * D("40000") <= cap * (1 - SYMBOL_CAP_MARGIN) < (kept + D("0.001")) * D("40000")
    assert p.cancel_orders and p.figures["target_notional"] == "47500.00"
    assert D(p.figures["notional_after"]) == D("47480")


def test_a_hedge_legs_breach_cuts_that_leg_only():
    long_leg = pos("BTCUSDT", "1", "40000", "40000", side="LONG")
    short_leg = pos("BTCUSDT", "3", "40000", "40000", side="SHORT")
    p = plan("position_notional", [long_leg, short_leg], subject="BTCUSDT:SHORT", limit=D("100000"))
    [order] = p.orders
    assert (order.side, order.position_side) == ("BUY", "SHORT")
    assert order.quantity == D("3") - D("2.375")  # 2.375 × 40,000 = 95,000 = the cap less 5 %


def test_within_the_cap_or_without_a_subject_nothing_is_cut():
    btc = pos("BTCUSDT", "1", "40000", "40000")
    assert plan("position_notional", [btc], subject="BTCUSDT:BOTH", limit=D("100000")).orders == ()
    # which position, or to what size, unknown: no blanket close of the account
    blind = plan("position_notional", [btc, pos("ETHUSDT", "5", "3000", "3000")])
    assert blind.orders == () and blind.cancel_orders and blind.figures["not_planned"]
    assert plan("position_notional", [btc], subject="ETHUSDT:BOTH", limit=D("10")).orders == ()


def test_account_level_breaches_keep_their_plans():
    positions = [pos("BTCUSDT", "2", "43000", "38000"), pos("ETHUSDT", "-20", "3000", "3100")]
    wallet = D("12900")
    ratio = plan("margin_ratio", positions, cross_wallet=wallet, target_ratio=D("0.5"))
    with_subject = plan(
        "margin_ratio", positions, cross_wallet=wallet, target_ratio=D("0.5"), subject="BTCUSDT:BOTH", limit=D("1")
    )
    assert ratio == with_subject and {o.symbol for o in ratio.orders} == {"BTCUSDT", "ETHUSDT"}
    assert D(ratio.figures["fraction_cut"]) < 1
    loss = plan("daily_loss", positions)
    assert [(o.symbol, o.quantity) for o in loss.orders] == [("BTCUSDT", D("2")), ("ETHUSDT", D("20"))]


def test_a_liquidation_distance_breach_cuts_just_enough_not_everything():
    positions = [pos("BTCUSDT", "2", "43000", "38000"), pos("ETHUSDT", "-20", "3000", "3100")]
    wallet = D("12900")
    target = D("0.0525")  # the evaluator's critical × 1.05
    p = plan("liq_distance", positions, cross_wallet=wallet, target_distance=target)
    cuts = {o.symbol: o.quantity for o in p.orders}
    assert D(0) < cuts["BTCUSDT"] < D("2") and D(0) < cuts["ETHUSDT"] < D("20")
    assert p.figures["target_distance"] == "0.0525"
    kept = [
        pos("BTCUSDT", str(D("2") - cuts["BTCUSDT"]), "43000", "38000"),
        pos("ETHUSDT", str(-(D("20") - cuts["ETHUSDT"])), "3000", "3100"),
    ]
    fraction = D(p.figures["fraction_cut"])
    upnl = D("-10000") + D("-2000")  # BTC 2 × (38,000 − 43,000); ETH −20 × (3,100 − 3,000)
    wallet_after = wallet + upnl * fraction  # the closed part's PnL is realised into the wallet
    for k in kept:
        point = position_liquidation(position=k, positions=kept, cross_wallet_balance=wallet_after, brackets=TABLES)
        assert point is None or abs(k.mark_price - point.price) / k.mark_price >= target
    # before the cut the nearest position stood inside the target (that is the breach)
    near = [
        position_liquidation(position=x, positions=positions, cross_wallet_balance=wallet, brackets=TABLES)
        for x in positions
    ]
    assert min(abs(x.mark_price - q.price) / x.mark_price for x, q in zip(positions, near, strict=True) if q) < target
