"""positions.figures: each account formula on a small hand-checked account, and bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest

from positions import figures
from positions.figures import PositionInput
from positions.margin import RATIO_CAP, ZERO, liquidation_price, maintenance_margin
from positions.tests.conftest import load_bracket_tables

D = Decimal
TABLES = load_bracket_tables()


def pos(
    symbol: str = "BTCUSDT",
    side: str = "BOTH",
    qty: str = "1",
    entry: str = "60000",
    mark: str = "61000",
    leverage: int = 10,
    **extra: object,
) -> PositionInput:
    return PositionInput(
        symbol=symbol, side=side, qty=D(qty), entry_price=D(entry), mark_price=D(mark), leverage=leverage, **extra
    )


BTC_LONG = pos()  # notional 61000, uPnL +1000, MM 61000·0.005 − 50 = 255, IM 6100
ETH_SHORT = pos("ETHUSDT", qty="-10", entry="3000", mark="3100", leverage=20)  # 31000, −1000, 124, 1550
SOL_ISO = pos(
    "SOLUSDT",
    side="BOTH",
    qty="100",
    entry="150",
    mark="140",
    leverage=5,
    margin_type="isolated",
    isolated_wallet=D("3000"),
)  # 14000, −1000, MM 14000·0.005 = 70, IM 2800
ACCOUNT = [BTC_LONG, ETH_SHORT, SOL_ISO]
WALLET = D("20000")


def same(got: Decimal, expected: Decimal) -> bool:
    """Equal far below a cent (the module computes with 40 digits, the test's context has 28)."""
    return abs(got - expected) < D("1e-20")


def test_single_position_formulas() -> None:
    assert figures.notional(ETH_SHORT) == D("31000")
    assert figures.signed_notional(ETH_SHORT) == D("-31000")
    assert figures.unrealized_pnl(ETH_SHORT) == D("-1000")
    assert figures.initial_margin(ETH_SHORT) == D("1550")
    assert figures.position_maint_margin(BTC_LONG, TABLES["BTCUSDT"]) == D("255")


def test_hedge_short_leg_counts_as_negative_exposure() -> None:
    short_leg = pos(side="SHORT", qty="2", mark="59000")
    assert figures.signed_notional(short_leg) == D("-118000")
    assert figures.unrealized_pnl(short_leg) == D("2000")


def test_sums_and_balance() -> None:
    assert figures.total_unrealized_pnl(ACCOUNT) == D("-1000")
    assert figures.total_maint_margin(positions=ACCOUNT, brackets=TABLES) == D("449")
    assert figures.total_initial_margin(ACCOUNT) == D("10450")
    assert figures.margin_balance(wallet_balance=WALLET, unrealized_pnl=D("-1000")) == D("19000")
    assert figures.gross_exposure(ACCOUNT) == D("106000")
    assert figures.net_exposure(ACCOUNT) == D("44000")  # 61000 − 31000 + 14000


def test_concentration() -> None:
    exposures = {"BTCUSDT": D("61000"), "ETHUSDT": D("31000"), "SOLUSDT": D("14000")}
    assert figures.symbol_exposures(ACCOUNT) == exposures
    assert same(figures.largest_symbol_share(ACCOUNT), D("61000") / D("106000"))
    expected = sum((D(x) / D("106000")) ** 2 for x in ("61000", "31000", "14000"))
    assert same(figures.herfindahl(ACCOUNT), expected)
    assert figures.herfindahl([BTC_LONG]) == 1
    assert figures.largest_symbol_share([]) == 0 and figures.herfindahl([]) == 0


def test_fund_utilization_saturates_like_margin_ratio() -> None:
    assert figures.fund_utilization(initial_margin=D("10450"), margin_balance=D("20900")) == D("0.5")
    assert figures.fund_utilization(initial_margin=D("10"), margin_balance=D("-5")) == RATIO_CAP
    assert figures.fund_utilization(initial_margin=ZERO, margin_balance=D("-5")) == 0


def test_account_figures_put_it_together() -> None:
    result = figures.account_figures(wallet_balances={"USDT": WALLET}, positions=ACCOUNT, brackets=TABLES)
    assert result.wallet_balance == D("23000")  # cross 20000 + isolated 3000
    assert result.margin_balance == D("22000")
    assert result.maint_margin == D("449")
    assert same(result.margin_ratio, D("449") / D("22000"))
    usdt = result.per_asset["USDT"]
    assert usdt.cross_margin_balance == D("20000")  # the isolated SOL's loss stays out of the cross pool
    assert usdt.cross_maint_margin == D("379")
    assert result.cross_margin_ratio == D("379") / D("20000")
    assert same(result.utilization, D("10450") / D("22000"))


def test_cross_liquidation_uses_the_other_cross_positions_only() -> None:
    point = figures.position_liquidation(
        position=BTC_LONG, positions=ACCOUNT, cross_wallet_balance=WALLET, brackets=TABLES
    )
    eth_mm = maintenance_margin(D("31000"), TABLES["ETHUSDT"])
    expected = liquidation_price(
        wallet_balance=WALLET,
        brackets=TABLES["BTCUSDT"],
        qty_both=D("1"),
        entry_both=D("60000"),
        other_maint_margin=eth_mm,
        other_unrealized_pnl=D("-1000"),
    )
    assert point.price == expected and point.on_fall


def test_isolated_liquidation_uses_its_own_wallet() -> None:
    point = figures.position_liquidation(
        position=SOL_ISO, positions=ACCOUNT, cross_wallet_balance=WALLET, brackets=TABLES
    )
    assert same(point.price, (D("15000") - D("3000")) / (100 * D("0.995")))


def test_cross_hedge_legs_share_one_price() -> None:
    legs = [pos(side="LONG", qty="3"), pos(side="SHORT", qty="1", entry="62000")]
    points = {
        figures.position_liquidation(position=p, positions=legs, cross_wallet_balance=D("10000"), brackets=TABLES)
        for p in legs
    }
    assert len(points) == 1


def test_pools_of_different_assets_do_not_mix() -> None:
    usdc = pos("ETHUSDT", qty="1", entry="3000", mark="3000", margin_asset="USDC")
    point = figures.position_liquidation(
        position=usdc, positions=[BTC_LONG, usdc], cross_wallet_balance=D("300"), brackets=TABLES
    )
    alone = figures.position_liquidation(
        position=usdc, positions=[usdc], cross_wallet_balance=D("300"), brackets=TABLES
    )
    assert point == alone


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(side="BUY"), "side must be one of"),
        (dict(qty=D(0)), "qty must be non-zero"),
        (dict(side="LONG", qty=D("-1")), "qty must be non-zero"),
        (dict(qty=1), "qty must be a Decimal"),
        (dict(qty=D("NaN")), "qty must be finite"),
        (dict(entry_price=D(0)), "entry_price must be > 0"),
        (dict(mark_price=60000.0), "mark_price must be a Decimal"),
        (dict(mark_price=D("Infinity")), "mark_price must be finite"),
        (dict(leverage=True), "leverage must be an int"),
        (dict(leverage=0), "leverage must be an int"),
        (dict(margin_type="crossed"), "margin_type must be one of"),
        (dict(isolated_wallet=D("5")), "a cross position has no isolated wallet"),
        (dict(margin_type="isolated", isolated_wallet=5.0), "isolated_wallet must be a Decimal"),
        (dict(symbol=""), "symbol must be a non-empty str"),
        (dict(margin_asset=""), "margin_asset must be a non-empty str"),
    ],
)
def test_position_input_rejects_bad_fields(changes: dict, message: str) -> None:
    fields = dict(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("1"), mark_price=D("1"), leverage=1)
    with pytest.raises(ValueError, match=message):
        PositionInput(**{**fields, **changes})


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        ([BTC_LONG, BTC_LONG], "duplicate position row"),
        ([BTC_LONG, pos(side="LONG")], "cannot coexist"),
        ([pos(side="LONG"), pos(side="SHORT", margin_type="isolated", isolated_wallet=D("1"))], "disagree"),
        (["BTCUSDT"], "expected PositionInput"),
    ],
)
def test_inconsistent_position_lists_are_rejected(positions: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        figures.account_figures(wallet_balances={"USDT": WALLET}, positions=positions, brackets=TABLES)


def test_missing_inputs_are_rejected_not_guessed() -> None:
    with pytest.raises(ValueError, match="no wallet balance for margin asset"):
        figures.account_figures(wallet_balances={}, positions=[BTC_LONG], brackets=TABLES)
    with pytest.raises(ValueError, match="no brackets for BTCUSDT"):
        figures.total_maint_margin(positions=[BTC_LONG], brackets={})
    with pytest.raises(ValueError, match="not in positions"):
        figures.position_liquidation(
            position=BTC_LONG, positions=[ETH_SHORT], cross_wallet_balance=WALLET, brackets=TABLES
        )
    with pytest.raises(ValueError, match="must be a Decimal"):
        figures.margin_balance(wallet_balance=1, unrealized_pnl=ZERO)
    with pytest.raises(ValueError, match="must be a Decimal"):
        figures.asset_figures(asset="USDT", cross_wallet_balance=1.0, positions=[], brackets=TABLES)
