"""The fill ledger's services: every report recorded once (the stream and the REST reconciliation
may both send it), realized PnL today from fills, commissions and funding, and a liquidation
recorded, shouted about and ended for the right reason."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertStatus, Level
from alerts.services import alert_raise
from positions import ledger
from positions.models import ClosedPosition, Fill, FundingFee
from positions.selectors import realized_pnl_today, trading_day_start
from positions.tests import ledger_fixtures as lf
from rules.models import RiskAction

pytestmark = pytest.mark.django_db


def now_ms(offset_s: float = 0) -> int:
    return int((timezone.now() + timedelta(seconds=offset_s)).timestamp() * 1000)


# --------------------------------------------------------------------------- fills


def test_a_fill_is_recorded_once_however_often_it_is_reported(account_a):
    event = lf.order_update(realized="12.5", commission="0.2", trade_id=77)
    first = ledger.fill_record(account_id=account_a.id, event=event)
    assert first is not None
    assert ledger.fill_record(account_id=account_a.id, event=event) is None
    assert (first.qty, first.price, first.realized_pnl, first.commission) == (
        Decimal("0.5"),
        Decimal("50000"),
        Decimal("12.5"),
        Decimal("0.2"),
    )
    assert first.kind == "trade" and Fill.objects.count() == 1


def test_fills_without_a_trade_id_are_told_apart_by_the_order_filled_so_far(account_a):
    # Liquidation executions may carry t=0: two partial fills of one order are two fills, a replay is not.
    part1 = lf.liquidation_update(last_qty="0.2", cum_qty="0.2")
    part2 = lf.liquidation_update(last_qty="0.3", cum_qty="0.5")
    assert ledger.fill_record(account_id=account_a.id, event=part1) is not None
    assert ledger.fill_record(account_id=account_a.id, event=part2) is not None
    assert ledger.fill_record(account_id=account_a.id, event=part1) is None
    assert Fill.objects.filter(kind="liquidation").count() == 2


def test_an_order_update_that_is_not_a_fill_is_not_recorded(account_a):
    assert ledger.fill_record(account_id=account_a.id, event=lf.order_update(execution="NEW", last_qty="0")) is None
    assert ledger.fill_record(account_id=account_a.id, event=lf.order_update(execution="CANCELED")) is None
    assert not Fill.objects.exists()


def test_the_exchange_marks_of_a_liquidation_and_an_adl():
    assert ledger.fill_kind({"o": "LIQUIDATION", "c": "x"}) == "liquidation"
    assert ledger.fill_kind({"o": "MARKET", "c": "autoclose-1700000000000000001"}) == "liquidation"
    assert ledger.fill_kind({"o": "MARKET", "c": "adl_autoclose"}) == "adl"
    assert ledger.fill_kind({"o": "MARKET", "c": "desk-7"}) == "trade"


# --------------------------------------------------------------------------- funding


def test_funding_is_recorded_per_asset_once(account_a):
    event = lf.funding_update(balances=[("USDT", "-1.25"), ("USDC", "0")], time_ms=now_ms())
    fees = ledger.funding_record(account_id=account_a.id, event=event)
    assert [(f.asset, f.symbol, f.amount) for f in fees] == [("USDT", "", Decimal("-1.25"))]
    assert ledger.funding_record(account_id=account_a.id, event=event) == []
    assert FundingFee.objects.count() == 1


def test_isolated_funding_names_its_symbol(account_a):
    event = lf.funding_update(balances=[("USDT", "0.75")], symbol="ETHUSDT", time_ms=now_ms())
    (fee,) = ledger.funding_record(account_id=account_a.id, event=event)
    assert (fee.symbol, fee.amount) == ("ETHUSDT", Decimal("0.75"))


def test_an_account_update_for_another_reason_is_not_funding(account_a):
    event = lf.funding_update(balances=[("USDT", "-5")])
    event["a"]["m"] = "ORDER"
    assert ledger.funding_record(account_id=account_a.id, event=event) == []


# --------------------------------------------------------------------------- realized PnL today


def test_realized_pnl_today_is_fills_minus_commissions_plus_funding(account_a, account_b):
    ledger.fill_record(account_id=account_a.id, event=lf.order_update(realized="100", commission="2", time_ms=now_ms()))
    ledger.fill_record(
        account_id=account_a.id,
        event=lf.order_update(realized="-30", commission="0.5", trade_id=2, time_ms=now_ms()),
    )
    # A BNB commission has no price on the desk: left out rather than guessed.
    ledger.fill_record(
        account_id=account_a.id,
        event=lf.order_update(realized="0", commission="0.01", commission_asset="BNB", trade_id=3, time_ms=now_ms()),
    )
    ledger.funding_record(
        account_id=account_a.id, event=lf.funding_update(balances=[("USDT", "-1.5")], time_ms=now_ms())
    )
    # Yesterday's fill is not today's PnL.
    yesterday = int((trading_day_start() - timedelta(minutes=5)).timestamp() * 1000)
    ledger.fill_record(account_id=account_a.id, event=lf.order_update(realized="999", trade_id=4, time_ms=yesterday))
    totals = realized_pnl_today(account_ids=[account_a.id, account_b.id])
    assert totals == {account_a.id: Decimal("66.0"), account_b.id: Decimal(0)}


def test_the_account_admin_column_shows_the_ledger(client, risk_manager, account_a):
    ledger.fill_record(
        account_id=account_a.id, event=lf.order_update(realized="1234.5", commission="4.5", time_ms=now_ms())
    )
    client.force_login(risk_manager)
    html = client.get("/admin/accounts/exchangeaccount/").content.decode()
    assert "1,230.00" in html


def test_snapshots_carry_realized_pnl_today(account_a):
    from types import SimpleNamespace

    from positions.models import AccountSnapshot
    from positions.services import snapshots_write_many

    ledger.fill_record(account_id=account_a.id, event=lf.order_update(realized="40", commission="1", time_ms=now_ms()))
    risk = SimpleNamespace(
        complete=True,
        wallet_balance=Decimal(1000),
        margin_balance=Decimal(1010),
        maint_margin=Decimal(5),
        unrealized_pnl=Decimal(10),
        margin_ratio=Decimal("0.005"),
    )
    assert snapshots_write_many({account_a.id: risk}) == 1
    assert AccountSnapshot.objects.get().realized_pnl_today == Decimal(39)


# --------------------------------------------------------------------------- closes


def open_alert(account, rule: str, subject: str = "BTCUSDT:BOTH", level: int = Level.CRITICAL) -> Alert:
    alert, _event = alert_raise(
        account_id=account.id,
        rule=rule,
        subject=subject,
        level=level,
        reason_code=rule.upper(),
        value=Decimal("0.01"),
        limit=Decimal("0.02"),
        mark_price=Decimal(47590),
        details={},
    )
    return alert


def proposed_action(account) -> RiskAction:
    return RiskAction.objects.create(
        account=account, trigger="margin_ratio", kind="reduce_positions", plan={"orders": []}
    )


def test_a_close_keeps_its_realized_result_and_ends_the_position_alerts_as_closed(account_a):
    t = now_ms()
    ledger.fill_record(account_id=account_a.id, event=lf.order_update(side="BUY", trade_id=1, time_ms=t - 60_000))
    ledger.fill_record(
        account_id=account_a.id, event=lf.order_update(realized="25", commission="0.3", trade_id=2, time_ms=t - 10)
    )
    alert = open_alert(account_a, "liquidation_distance")
    action = proposed_action(account_a)
    row = ledger.position_close_record(
        account_id=account_a.id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=t, qty=Decimal("0.5"),
        entry_price=Decimal(50000), exit_price=Decimal(50050),
    )  # fmt: skip
    assert (row.reason, row.realized_pnl, row.commission) == ("closed", Decimal(25), Decimal("0.3"))
    alert.refresh_from_db()
    assert (alert.status, alert.resolution) == (AlertStatus.RESOLVED, "position_closed")
    action.refresh_from_db()
    assert action.status == "expired"  # the account is flat: the plan describes positions that are gone
    # The same close, reported again (a reconnect, the reconciliation): nothing new.
    again = ledger.position_close_record(
        account_id=account_a.id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=t + 500, qty=Decimal("0.5"),
        entry_price=Decimal(50000),
    )  # fmt: skip
    assert again is None and ClosedPosition.objects.count() == 1


def test_a_close_leaves_the_actions_alone_while_other_positions_remain(account_a):
    from marketdata.models import Symbol
    from positions.models import Position
    from rules.tests.test_gate_fixtures import seed_symbols

    seed_symbols()
    symbol = Symbol.objects.get(name="ETHUSDT")
    Position.objects.create(account=account_a, symbol=symbol, quantity=Decimal(1), entry_price=Decimal(2500))
    action = proposed_action(account_a)
    ledger.position_close_record(
        account_id=account_a.id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=now_ms(), qty=Decimal("0.5"),
        entry_price=Decimal(50000),
    )  # fmt: skip
    action.refresh_from_db()
    assert action.status == "proposed"


# --------------------------------------------------------------------------- liquidations


def test_a_liquidation_is_recorded_raised_and_ends_everything_about_the_position(account_a):
    near = open_alert(account_a, "liquidation_distance")
    margin_call = open_alert(account_a, "margin_call", level=Level.WARNING)
    other = open_alert(account_a, "liquidation_distance", subject="ETHUSDT:BOTH")
    action = proposed_action(account_a)
    t = now_ms()
    alert = ledger.liquidation_record(account_id=account_a.id, event=lf.liquidation_update(time_ms=t), before=lf.BEFORE)
    assert alert is not None
    assert (alert.rule, alert.reason_code, alert.level) == ("liquidated", "LIQUIDATED", Level.EMERGENCY)
    row = ClosedPosition.objects.get()
    assert (row.reason, row.qty, row.exit_price, row.realized_pnl) == (
        "liquidated",
        Decimal("0.5"),
        Decimal(47400),
        Decimal("-480.25"),
    )
    assert row.details["liquidation_price"] == "47400.5" and row.details["liquidation_distance"] == "0.004"
    assert row.exchange_order_id == "9001"
    for a in (near, margin_call):
        a.refresh_from_db()
        assert (a.status, a.resolution) == (AlertStatus.RESOLVED, "liquidated")
    other.refresh_from_db()
    assert other.status == AlertStatus.OPEN  # another position's alert is not this liquidation's
    action.refresh_from_db()
    assert action.status == "expired"
    assert Fill.objects.get().kind == "liquidation"


def test_a_liquidation_reported_twice_is_one_event(account_a):
    event = lf.liquidation_update(time_ms=now_ms())
    assert ledger.liquidation_record(account_id=account_a.id, event=event, before=lf.BEFORE) is not None
    # The REST reconciliation (forceOrders) finds the same order: nothing new, no second alert.
    assert ledger.liquidation_record(account_id=account_a.id, event=event, before=None) is None
    assert ClosedPosition.objects.count() == 1 and Fill.objects.count() == 1
    assert Alert.objects.filter(rule="liquidated").count() == 1


def test_the_position_gone_report_and_the_liquidation_order_make_one_row_in_either_order(account_a, account_b):
    t = now_ms()
    # Liquidation order first, then ACCOUNT_UPDATE pa=0 without an order id.
    ledger.liquidation_record(account_id=account_a.id, event=lf.liquidation_update(time_ms=t), before=lf.BEFORE)
    assert (
        ledger.position_close_record(
            account_id=account_a.id,
            symbol="BTCUSDT",
            side="BOTH",
            reason="closed",
            time_ms=t + 3,
            qty=Decimal("0.5"),
            entry_price=Decimal(50000),
        )  # fmt: skip
        is None
    )
    assert ClosedPosition.objects.filter(account=account_a).get().reason == "liquidated"
    # pa=0 first (taken for a plain close), then the liquidation order: the row becomes the liquidation.
    near = open_alert(account_b, "liquidation_distance")
    ledger.position_close_record(
        account_id=account_b.id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=t, qty=Decimal("0.5"),
        entry_price=Decimal(50000),
    )  # fmt: skip
    alert = ledger.liquidation_record(
        account_id=account_b.id, event=lf.liquidation_update(time_ms=t + 3, order_id=9002), before=lf.BEFORE
    )
    assert alert is not None
    row = ClosedPosition.objects.filter(account=account_b).get()
    assert (row.reason, row.exchange_order_id, row.realized_pnl) == ("liquidated", "9002", Decimal("-480.25"))
    near.refresh_from_db()
    assert near.status == AlertStatus.RESOLVED


def test_an_adl_is_recorded_as_such(account_a):
    event = lf.liquidation_update(client_id="adl_autoclose", order_type="MARKET", time_ms=now_ms())
    ledger.liquidation_record(account_id=account_a.id, event=event, before=None)
    assert ClosedPosition.objects.get().reason == "adl"


def test_an_ordinary_fill_is_not_a_liquidation(account_a):
    assert ledger.liquidation_record(account_id=account_a.id, event=lf.order_update(), before=None) is None
    assert not ClosedPosition.objects.exists()
