"""/alerts/ shows what an alert row now tells: value now, worst and at open, rounded for its rule;
the resolution; re-opens; the message in the reader's language."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from alerts import services
from alerts.models import Level
from riskdesk.tests import page_fixtures as pf

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def utilization(account_id: int, value: str, level: int = Level.WARNING, limit: str = "0.45", **kw):
    alert, _ = services.alert_raise(
        account_id=account_id,
        rule="utilization",
        subject="account",
        level=level,
        reason_code="FUND_UTILIZATION_HIGH",
        value=D(value),
        limit=D(limit),
        mark_price=None,
        details={},
        message_code="limit_breach",
        message_params={"rule": "utilization", "subject": "account", "value": value, "limit": limit, "level": level},
        **kw,
    )
    return alert


def test_a_row_shows_now_worst_and_at_open_as_percentages(client_for, risk_manager, desk):
    utilization(desk["a"].id, "0.4921590353596404916131486127")
    utilization(desk["a"].id, "0.61", level=Level.CRITICAL, limit="0.6")
    utilization(desk["a"].id, "0.47")

    html = client_for(risk_manager).get("/alerts/_table").content.decode()

    assert "47.00 %" in html and "worst 61.00 %" in html and "at open 49.22 %" in html
    assert "45.00 %" in html  # the present (warning) level's limit
    assert "0.4921590353" not in html
    assert "Fund utilization of the account: 47.00 % is above the warning limit 45.00 %" in html


def test_a_resolved_and_reopened_row_says_so(client_for, risk_manager, desk):
    utilization(desk["a"].id, "0.5")
    services.alert_clear(account_id=desk["a"].id, rule="utilization", subject="account")
    utilization(desk["a"].id, "0.5")
    services.alert_clear(account_id=desk["a"].id, rule="utilization", subject="account")

    html = client_for(risk_manager).get("/alerts/_table?status=all").content.decode()

    assert "Back within limit" in html and "re-opened once" in html


def test_the_message_is_rendered_in_the_readers_language(client_for, risk_manager, desk):
    utilization(desk["a"].id, "0.45")

    chinese = client_for(risk_manager, language="zh-hans").get("/alerts/_table").content.decode()

    assert "资金使用率（账户）：45.00 % 已达警告限额" in chinese
