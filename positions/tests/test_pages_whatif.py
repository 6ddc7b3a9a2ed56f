"""/positions/what-if/: shocks on the current positions, computed with positions.figures."""

from __future__ import annotations

import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from positions import whatif
from positions.figures import PositionInput
from riskdesk.tests import page_fixtures as pf
from rules.tests.test_gate_fixtures import TABLES

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[2] / "marketdata/data"


def verdicts(html: str) -> list[str]:
    return re.findall(r'data-verdict="(\w+)"', html)


def test_a_fall_beyond_the_liquidation_price_liquidates_the_account(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/positions/what-if/?mode=pct&symbol=ALL&shock=-10").content.decode()
    assert verdicts(html) == ["liquidated", "survives"]  # acct-a's long; acct-b's short gains
    assert "BTCUSDT -10.00%" in html


def test_a_small_move_liquidates_nobody(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/positions/what-if/?mode=pct&symbol=BTCUSDT&shock=-1").content.decode()
    assert verdicts(html) == ["survives", "survives"]


def test_the_crash_day_replay_applies_each_symbols_worst_fall(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/positions/what-if/?mode=pct&mode=crash").content.decode()
    assert "Worst fall on 2021-05-19" in html and verdicts(html)[0] == "liquidated"


def test_the_partial_answers_htmx(client_for, risk_manager, desk):
    response = client_for(risk_manager).get("/positions/what-if/?mode=pct&shock=5", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "<html" not in response.content.decode()


def test_a_trader_projects_only_their_own_accounts(client_for, trader_b, desk):
    html = client_for(trader_b).get("/positions/what-if/?mode=pct&shock=-10").content.decode()
    assert "acct-b" in html and "acct-a" not in html


def test_bad_input_is_refused_with_a_message(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/positions/what-if/?mode=pct&shock=-150").content.decode()
    assert "Enter a move between -99 and 99 percent." in html


def test_projection_matches_the_reference_maths():
    position = PositionInput(
        symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("50000"), mark_price=D("50000"), leverage=20
    )
    account = whatif.WhatIfAccount(1, "a", {"USDT": D("5000")}, [position])
    result = whatif.project(account, {"BTCUSDT": D("-0.05")}, TABLES)
    row = result.positions[0]
    assert row.mark_after == D("47500") and row.unrealized_pnl_after == D("-2500")
    assert result.margin_balance_after == D("2500") and not result.liquidated
    assert row.liquidation_now == row.liquidation_after  # one position: its own price moves nothing else
    assert whatif.project(account, {"BTCUSDT": D("-0.2")}, TABLES).liquidated


def test_worst_move_of_the_stored_crash_day():
    move = whatif.worst_move("BTCUSDT", DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv")
    assert move.trough_ms > move.peak_ms and D("-0.35") < move.shock < D("-0.25")
