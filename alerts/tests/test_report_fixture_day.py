"""A trading day computed by hand (fills, funding, marks, alerts, gate decisions, trading states,
a liquidation, risk actions) must come out of the report to the cent (issue 16, "Correct to the cent").

The day: 2026-12-06 00:00 to 2026-12-07 00:00 UTC (TRADING_DAY_TZ=UTC).

    equity (AccountSnapshot.margin_balance): 10000 carried in; 10100 @01; 9850 @03; 10200 @05; 10050.55 @07
      start 10000.00, end 10050.55, max drawdown 10100 - 9850 = 250.00 @03:00
    margin ratio: 0.06, 0.09 @03, 0.07, 0.08          -> peak 9.00% @03:00
    fills: +120.50 (fee 4.125 USDT), -30.25 (fee 2 USDT), 0 (fee 0.01 BNB: not at par, left out),
           +999 at 2026-12-07 00:00:00 (the next day: left out)
      realized 90.25, fees 6.125 -> 6.13 shown
    funding: -1.2345 @08, +0.50 @16                    -> -0.7345
      net realized 90.25 - 6.125 - 0.7345 = 83.3905    -> 83.39
    unrealized at the close: the last snapshot's 40.55
    trading state: ACTIVE, REDUCING 06:00-12:00, ACTIVE -> 18 h ACTIVE, 6 h REDUCING
    alerts opened: 2 WARNING MARGIN_RATIO_HIGH, 1 CRITICAL LIQUIDATION_NEAR (worst distance 0.035 @03:05)
      (+1 the day before: left out)
    gate: 3 allowed, 1 submitted, 2 denied (ORDER_NOTIONAL_HIGH; ORDER_NOTIONAL_HIGH + PRICE_DEVIATION),
          1 observed (not a check) -> 6 checks, 2 denials, ORDER_NOTIONAL_HIGH 2, PRICE_DEVIATION 1
    liquidation: ETHUSDT @03:10
    risk actions: 2 proposed in the day, 1 executed in the day
    at the close: BTCUSDT 0.1 @ mark 50000 (liq 45000, 20x) -> notional 5000, distance 10%, leverage 20
"""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from accounts.models import TradingState
from alerts.models import Alert, Level, ReportPeriod
from alerts.reports import services
from marketdata.models import Symbol
from positions.models import AccountSnapshot, ClosedPosition, Fill, FundingFee, OrderLog, Position
from rules.models import RiskAction
from rules.tests.test_gate_fixtures import seed_symbols

START = datetime(2026, 12, 6, tzinfo=UTC)
END = datetime(2026, 12, 7, tzinfo=UTC)


def at(hour: int, minute: int = 0, day: int = 6) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def snapshot(account, when, equity, upnl, ratio):
    AccountSnapshot.objects.create(
        account=account,
        time=when,
        wallet_balance=Decimal(equity) - Decimal(upnl),
        margin_balance=Decimal(equity),
        maint_margin=Decimal(0),
        unrealized_pnl=Decimal(upnl),
        margin_ratio=Decimal(ratio),
    )


def fill(account, n, when, pnl, fee, asset="USDT"):
    Fill.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="SELL",
        order_id=str(n),
        trade_id=n,
        qty=Decimal("0.01"),
        price=Decimal(50000),
        realized_pnl=Decimal(pnl),
        commission=Decimal(fee),
        commission_asset=asset,
        time=when,
        dedupe_key=f"t{n}",
    )


def alert(account, when, level, rule, code, peak=None):
    row = Alert.objects.create(
        account=account, rule=rule, subject="BTCUSDT", level=level, reason_code=code, peak_value=peak
    )
    Alert.objects.filter(pk=row.pk).update(opened_at=when)


def gate(account, when, decision, codes=()):
    row = OrderLog.objects.create(
        account=account,
        source="api",
        symbol="BTCUSDT",
        side="BUY",
        order_type="LIMIT",
        decision=decision,
        reason_codes=list(codes),
    )
    OrderLog.objects.filter(pk=row.pk).update(created_at=when)


def state(account, when, new_state):
    account.trading_state = new_state
    account.save()
    account.history.filter(history_id=account.history.latest().history_id).update(history_date=when)


@pytest.fixture
def fixture_day(account_a, settings):
    settings.TRADING_DAY_TZ = "UTC"
    account_a.history.update(history_date=at(0, day=1))  # created days before
    state(account_a, at(6), TradingState.REDUCING)
    state(account_a, at(12), TradingState.ACTIVE)
    snapshot(account_a, at(23, 59, day=5), "10000", "0", "0.05")
    for when, equity, upnl, ratio in (
        (at(1), "10100", "100", "0.06"),
        (at(3), "9850", "-150", "0.09"),
        (at(5), "10200", "150", "0.07"),
        (at(7), "10050.55", "40.55", "0.08"),
    ):
        snapshot(account_a, when, equity, upnl, ratio)
    fill(account_a, 1, at(2), "120.50", "4.125")
    fill(account_a, 2, at(9), "-30.25", "2")
    fill(account_a, 3, at(10), "0", "0.01", asset="BNB")
    fill(account_a, 4, END, "999", "1")
    FundingFee.objects.create(account=account_a, asset="USDT", symbol="BTCUSDT", amount=Decimal("-1.2345"), time=at(8))
    FundingFee.objects.create(account=account_a, asset="USDT", symbol="BTCUSDT", amount=Decimal("0.50"), time=at(16))
    alert(account_a, at(2), Level.WARNING, "margin_ratio", "MARGIN_RATIO_HIGH")
    alert(account_a, at(4), Level.WARNING, "margin_ratio", "MARGIN_RATIO_HIGH")
    alert(account_a, at(3, 5), Level.CRITICAL, "liq_distance", "LIQUIDATION_NEAR", peak=Decimal("0.035"))
    alert(account_a, at(22, day=5), Level.WARNING, "margin_ratio", "MARGIN_RATIO_HIGH")
    for decision in ("allowed", "allowed", "allowed", "submitted", "observed"):
        gate(account_a, at(11), decision)
    gate(account_a, at(11), "denied", ["ORDER_NOTIONAL_HIGH"])
    gate(account_a, at(12), "denied", ["ORDER_NOTIONAL_HIGH", "PRICE_DEVIATION"])
    ClosedPosition.objects.create(
        account=account_a,
        symbol="ETHUSDT",
        qty=Decimal(2),
        exit_price=Decimal(2300),
        realized_pnl=Decimal("-400"),
        reason="liquidated",
        closed_at=at(3, 10),
        close_key="liq1",
    )
    for executed in (True, False):
        action = RiskAction.objects.create(account=account_a, trigger="margin_ratio", kind="reduce", plan={})
        RiskAction.objects.filter(pk=action.pk).update(
            created_at=at(3, 6),
            status="executed" if executed else "proposed",
            executed_at=at(3, 7) if executed else None,
        )
    seed_symbols()
    symbol = Symbol.objects.get(name="BTCUSDT")
    Position.objects.create(
        account=account_a,
        symbol=symbol,
        quantity=Decimal("0.1"),
        entry_price=Decimal(49000),
        leverage=20,
        mark_price=Decimal(50000),
        liquidation_price=Decimal(45000),
    )
    return account_a


def test_the_fixture_day_matches_the_hand_computation_to_the_cent(fixture_day):
    report = services.report_generate(period=ReportPeriod.DAY, start=START, end=END, accounts=[fixture_day], now=END)
    f = report.figures["accounts"][0]
    money = {
        k: Decimal(f[k]).quantize(Decimal("0.01"), ROUND_HALF_UP)
        for k in (
            "start_equity",
            "end_equity",
            "realized_pnl",
            "fees",
            "funding",
            "net_realized",
            "unrealized_pnl",
            "max_drawdown",
        )
    }
    assert money == {
        "start_equity": Decimal("10000.00"),
        "end_equity": Decimal("10050.55"),
        "realized_pnl": Decimal("90.25"),
        "fees": Decimal("6.13"),
        "funding": Decimal("-0.73"),
        "net_realized": Decimal("83.39"),
        "unrealized_pnl": Decimal("40.55"),
        "max_drawdown": Decimal("250.00"),
    }
    assert Decimal(f["fees"]) == Decimal("6.125") and Decimal(f["net_realized"]) == Decimal("83.3905")  # exact
    assert f["max_drawdown_at"].startswith("2026-12-06T03:00")
    assert Decimal(f["peak_margin_ratio"]) == Decimal("0.09") and f["peak_margin_ratio_at"].startswith(
        "2026-12-06T03:00"
    )
    assert Decimal(f["min_liq_distance"]) == Decimal("0.035") and f["min_liq_distance_at"].startswith(
        "2026-12-06T03:05"
    )
    assert Decimal(f["peak_leverage"]) == 20
    assert f["state_seconds"] == {"ACTIVE": 18 * 3600, "REDUCING": 6 * 3600}
    assert f["alerts_by_level"] == {"20": 2, "30": 1}
    assert f["alerts_by_code"] == {"LIQUIDATION_NEAR": 1, "MARGIN_RATIO_HIGH": 2}
    assert (f["gate_checks"], f["gate_denials"]) == (6, 2)
    assert f["denials_by_reason"] == {"ORDER_NOTIONAL_HIGH": 2, "PRICE_DEVIATION": 1}
    assert [(x["symbol"], x["at"][11:16]) for x in f["liquidations"]] == [("ETHUSDT", "03:10")]
    assert (f["actions_proposed"], f["actions_executed"]) == (2, 1)
    risk = report.figures["largest_risks"][0]
    assert (risk["symbol"], Decimal(risk["notional"]), Decimal(risk["liq_distance"])) == (
        "BTCUSDT",
        5000,
        Decimal("0.1"),
    )
    assert report.figures["exposure_by_symbol"] == {"BTCUSDT": "5000"}


def test_the_csv_and_html_carry_the_same_figures(fixture_day):
    report = services.report_generate(period=ReportPeriod.DAY, start=START, end=END, accounts=[fixture_day], now=END)
    rows = {(r["account"], r["metric"]): r["value"] for r in csv.DictReader(io.StringIO(report.csv))}
    assert rows[("acct-a", "net_realized")] == "83.39"
    assert rows[("acct-a", "fees")] == "6.13"
    assert rows[("desk", "max_drawdown")] == "250.00"
    assert rows[("acct-a", "denials_PRICE_DEVIATION")] == "1"
    assert rows[("acct-a", "seconds_REDUCING")] == "21600"
    assert "83.39" in report.html and "10,050.55" in report.html and "data:image/png;base64," in report.html
    assert bytes(report.pdf).startswith(b"%PDF")
    if os.environ.get("RISKDESK_REPORT_PDF"):  # docs/img/report-pdf-page.png is this PDF's first page
        Path(os.environ["RISKDESK_REPORT_PDF"]).write_bytes(bytes(report.pdf))


def test_a_chinese_report_says_it_in_chinese(fixture_day):
    report = services.report_generate(
        period=ReportPeriod.DAY, start=START, end=END, accounts=[fixture_day], language="zh-hans", now=END
    )
    assert 'lang="zh-hans"' in report.html and bytes(report.pdf).startswith(b"%PDF")
