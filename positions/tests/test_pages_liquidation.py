"""The liquidation on the desk pages: today's closed and liquidated positions on /positions/, and
"Liquidated at HH:MM:SS (−X USDT)" on the overview card and the accounts page until a risk
manager acknowledges the LIQUIDATED alert. The gauge's data says liquidated (never green)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_acknowledge
from positions import ledger
from positions.tests import ledger_fixtures as lf
from riskdesk.tests import page_fixtures as pf

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def now_ms() -> int:
    return int(timezone.now().timestamp() * 1000)


def liquidate(account, *, order_id: int = 9001, realized: str = "-480.25") -> Alert:
    event = lf.liquidation_update(time_ms=now_ms(), order_id=order_id, realized=realized)
    return ledger.liquidation_record(account_id=account.id, event=event, before=lf.BEFORE)


def local_hms(ms: int) -> str:
    return timezone.localtime(datetime.fromtimestamp(ms / 1000, tz=UTC)).strftime("%H:%M:%S")


def test_the_positions_page_lists_todays_closed_and_liquidated_positions(client_for, risk_manager, desk):
    a = desk["a"]
    ledger.fill_record(account_id=a.id, event=lf.order_update(realized="25", commission="0.3", time_ms=now_ms()))
    ledger.position_close_record(
        account_id=a.id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=now_ms() - 60_000,
        qty=Decimal("0.5"), entry_price=Decimal(50000), exit_price=Decimal("50050.1"), order_id="1001",
    )  # fmt: skip
    liquidate(desk["b"])
    html = client_for(risk_manager).get("/positions/").content.decode()
    section = re.search(r'data-testid="closed-today".*?</section>', html, re.S).group(0)
    assert section.count('<tr id="closed-') == 2
    assert "Liquidated" in section and "Closed" in section
    assert "-480.25" in section and "+25.00" in section
    assert "50,050.1<" in section  # the exit price to the 0.10 tick
    assert "last seen: liquidation 47,400.5, 0.40% away" in section


def test_a_trader_sees_only_their_own_closes(client_for, trader_a, desk):
    liquidate(desk["b"])
    html = client_for(trader_a).get("/positions/_closed").content.decode()
    assert '<tr id="closed-' not in html and "No position closed today." in html


def test_yesterdays_closes_are_not_today(client_for, risk_manager, desk):
    from positions.selectors import trading_day_start

    yesterday = int((trading_day_start() - timedelta(minutes=1)).timestamp() * 1000)
    ledger.position_close_record(
        account_id=desk["a"].id, symbol="BTCUSDT", side="BOTH", reason="closed", time_ms=yesterday,
        qty=Decimal("0.5"), entry_price=Decimal(50000),
    )  # fmt: skip
    assert "No position closed today." in client_for(risk_manager).get("/positions/_closed").content.decode()


def test_the_overview_and_the_accounts_page_say_liquidated_until_acknowledged(client_for, risk_manager, desk):
    alert = liquidate(desk["a"])
    client = client_for(risk_manager)
    hms = local_hms(alert.details["time_ms"])
    for url in ("/", "/accounts/"):
        html = client.get(url).content.decode()
        assert f"Liquidated at {hms} (-480.25 USDT)" in html, url
    data = json.loads(
        re.search(r'id="overview-data"[^>]*>(.*?)</script>', client.get("/").content.decode(), re.S).group(1)
    )
    gauges = {g["id"]: g for g in data["gauges"]}
    assert gauges[desk["a"].id]["liquidated"] is True and gauges[desk["b"].id]["liquidated"] is False
    alert_acknowledge(alert=alert, by=risk_manager)
    for url in ("/", "/accounts/"):
        assert "Liquidated at" not in client.get(url).content.decode(), url


def test_realized_pnl_today_is_on_the_overview_and_the_accounts_page(client_for, risk_manager, desk):
    ledger.fill_record(
        account_id=desk["a"].id, event=lf.order_update(realized="1234.5", commission="4.5", time_ms=now_ms())
    )
    client = client_for(risk_manager)
    for url in ("/", "/accounts/"):
        assert "+1,230.00" in client.get(url).content.decode(), url


def test_the_margin_ratio_sentinel_reads_as_liquidated():
    from positions.templatetags.desk import margin_ratio

    assert margin_ratio(Decimal(100)) == "≥ 100 % (liquidated)"
    assert margin_ratio(Decimal("0.4921590353596404916131486127")) == "49.22%"


def test_a_hedge_leg_says_its_side_once(client_for, risk_manager, gate_env, account_a):
    from positions.book import BookPosition
    from rules.tests.test_gate_fixtures import publish

    leg = BookPosition(symbol="BTCUSDT", side="LONG", qty=Decimal("0.5"), entry_price=Decimal(50000), leverage=20)
    publish(account_a.id, wallet="5000", positions=[leg])
    html = client_for(risk_manager).get("/positions/_table").content.decode()
    cell = re.search(r'<td class="side long">(.*?)</td>', html).group(1)
    assert "Long" in cell and "LONG" not in cell
