from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from positions.figures import PositionInput, total_maint_margin, total_unrealized_pnl
from positions.margin import brackets_from_binance
from rules.actions import cross_ratio, plan_action

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}
STEPS = {"BTCUSDT": D("0.001"), "ETHUSDT": D("0.001")}


def pos(symbol, qty, entry, mark, side="BOTH", margin_type="cross"):
    return PositionInput(
        symbol=symbol,
        side=side,
        qty=D(qty),
        entry_price=D(entry),
        mark_price=D(mark),
        leverage=20,
        margin_type=margin_type,
    )


def test_reduce_positions_cuts_just_enough_to_bring_the_ratio_under_the_target():
    positions = [pos("BTCUSDT", "2", "43000", "38000"), pos("ETHUSDT", "-20", "3000", "3100")]
    wallet = D("12900")  # margin balance 900 against 590 maintenance: ratio 0.66
    before = cross_ratio(positions, wallet, TABLES)
    target = D("0.5")
    assert before > target
    plan = plan_action(
        kind="reduce_positions",
        trigger="margin_ratio",
        positions=positions,
        cross_wallet=wallet,
        brackets=TABLES,
        target_ratio=target,
        step_sizes=STEPS,
    )
    assert [(o.symbol, o.side) for o in plan.orders] == [("BTCUSDT", "SELL"), ("ETHUSDT", "BUY")]
    assert all(o.reduce_only and o.type == "MARKET" for o in plan.orders)
    remaining = [
        pos("BTCUSDT", str(D("2") - plan.orders[0].quantity), "43000", "38000"),
        pos("ETHUSDT", str(-(D("20") - plan.orders[1].quantity)), "3000", "3100"),
    ]
    # closing realises PnL into the wallet: the margin balance is unchanged by the cut
    balance = wallet + total_unrealized_pnl(positions)
    assert total_maint_margin(positions=remaining, brackets=TABLES) / balance <= target
    # "just enough": one step less on both legs would still be over the target
    fewer = [
        pos("BTCUSDT", str(D("2") - plan.orders[0].quantity + D("0.01")), "43000", "38000"),
        pos("ETHUSDT", str(-(D("20") - plan.orders[1].quantity + D("0.1"))), "3000", "3100"),
    ]
    assert total_maint_margin(positions=fewer, brackets=TABLES) / balance > target
    assert plan.cancel_orders


def test_quantities_are_rounded_up_to_the_step_size():
    plan = plan_action(
        kind="reduce_positions",
        trigger="margin_ratio",
        positions=[pos("BTCUSDT", "1.234", "43000", "36000")],
        cross_wallet=D("9000"),
        brackets=TABLES,
        target_ratio=D("0.3"),
        step_sizes=STEPS,
    )
    qty = plan.orders[0].quantity
    assert qty == qty.quantize(D("0.001")) and D(0) < qty <= D("1.234")


def test_a_daily_loss_breach_closes_every_position():
    positions = [pos("BTCUSDT", "1", "43000", "40000"), pos("ETHUSDT", "3", "3000", "2900", margin_type="isolated")]
    plan = plan_action(
        kind="reduce_positions",
        trigger="daily_loss",
        positions=positions,
        cross_wallet=D("50000"),
        brackets=TABLES,
        target_ratio=None,
        step_sizes=STEPS,
    )
    assert [(o.symbol, o.quantity) for o in plan.orders] == [("BTCUSDT", D("1")), ("ETHUSDT", D("3"))]


def test_hedge_legs_close_by_position_side():
    positions = [
        pos("BTCUSDT", "1", "43000", "40000", side="LONG"),
        pos("BTCUSDT", "2", "43000", "40000", side="SHORT"),
    ]
    plan = plan_action(
        kind="reduce_positions",
        trigger="daily_loss",
        positions=positions,
        cross_wallet=D("5000"),
        brackets=TABLES,
        target_ratio=None,
        step_sizes=STEPS,
    )
    assert [(o.side, o.position_side) for o in plan.orders] == [("SELL", "LONG"), ("BUY", "SHORT")]


@pytest.mark.parametrize("kind,state", [("reducing", "REDUCING"), ("halted", "HALTED")])
def test_state_actions_only_tighten_the_trading_state(kind, state):
    plan = plan_action(
        kind=kind,
        trigger="margin_ratio",
        positions=[],
        cross_wallet=D(0),
        brackets=TABLES,
        target_ratio=None,
        step_sizes=STEPS,
    )
    assert plan.trading_state == state and not plan.orders


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="unknown action"):
        plan_action(
            kind="buy_more",
            trigger="x",
            positions=[],
            cross_wallet=D(0),
            brackets=TABLES,
            target_ratio=None,
            step_sizes=STEPS,
        )
