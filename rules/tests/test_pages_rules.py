"""/rules/: the profile applied to each account, read-only, linking into the admin for risk managers."""

from __future__ import annotations

import pytest

from riskdesk.tests import page_fixtures as pf
from rules.models import RiskProfile

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def test_each_account_shows_its_profile_and_limits(client_for, risk_manager, desk):
    special = RiskProfile.objects.create(name="tight", margin_ratio_warning="0.5", margin_ratio_critical="0.7")
    desk["b"].risk_profile = special
    desk["b"].save(update_fields=["risk_profile"])
    html = client_for(risk_manager).get("/rules/").content.decode()
    assert "gate-test" in html and "(the default)" in html and "tight" in html
    assert "50.00%" in html and "70.00%" in html
    assert f"/admin/rules/riskprofile/{special.id}/change/" in html


def test_a_trader_sees_their_accounts_profile_without_the_admin_link(client_for, trader_b, desk):
    special = RiskProfile.objects.create(name="tight")
    desk["b"].risk_profile = special
    desk["b"].save(update_fields=["risk_profile"])
    html = client_for(trader_b).get("/rules/").content.decode()
    assert "tight" in html and "acct-b" in html
    assert "acct-a" not in html and "gate-test" not in html and "/admin/" not in html


def test_an_outsider_is_refused(client_for, outsider, desk):
    assert client_for(outsider).get("/rules/").status_code == 403


def test_the_page_shows_the_clearing_dwell_and_reopen_window(client_for, risk_manager, desk):
    RiskProfile.objects.filter(name="gate-test").update(clear_dwell_s=45, clear_dwell_by_rule={"drawdown": 120})
    html = client_for(risk_manager).get("/rules/").content.decode()
    assert "45 s (drawdown: 120 s)" in html and "600 s" in html
