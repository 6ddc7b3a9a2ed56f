"""/allocation/: who sees what, and "apply" (risk managers only, POST with CSRF, through the admin's
service: the profile's history records the change with the reason "allocation suggestion of <day>")."""

from __future__ import annotations

import pytest
from django.test import Client

from rules.models import RiskProfile, SymbolLimit
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env, computed = fx.client_for, fx.desk, fx.gate_env, fx.computed

pytestmark = pytest.mark.django_db


def test_a_risk_manager_sees_the_desk_the_charts_and_the_apply_button(client_for, risk_manager, computed):
    page = client_for(risk_manager).get("/allocation/")
    assert page.status_code == 200
    html = page.content.decode()
    for part in (
        "var-summary",
        "contrib-account-chart",
        "contrib-symbol-chart",
        "var-history-chart",
        "correlation-chart",
        "suggested-capital",
        "suggested-limits",
        "limits-chart",
        "apply-forms",
    ):
        assert f'data-testid="{part}"' in html, part
    assert "acct-a" in html and "acct-b" in html
    assert 'id="allocation-data"' in html and "js/allocation.js" in html
    # liquidations in the crash scenario link to the what-if's crash replay
    assert "/positions/what-if/?mode=crash" in html
    assert "<script>" not in html  # the CSP allows no inline script: data travels as JSON only


def test_a_viewer_sees_everything_but_cannot_apply(client_for, viewer, computed):
    html = client_for(viewer).get("/allocation/").content.decode()
    assert 'data-testid="suggested-limits"' in html and "acct-a" in html and "acct-b" in html
    assert 'data-testid="apply-forms"' not in html
    profile = RiskProfile.objects.get(name="gate-test")
    answer = client_for(viewer).post("/allocation/apply", {"profile": profile.id})
    assert answer.status_code == 403
    assert not SymbolLimit.objects.filter(profile=profile).exists()


def test_a_trader_sees_only_their_account_and_no_desk_figures(client_for, trader_a, computed, desk):
    html = client_for(trader_a).get("/allocation/").content.decode()
    assert "acct-a" in html and "acct-b" not in html
    assert 'data-fig="desk_var"' not in html and 'data-testid="adviser"' not in html
    assert client_for(trader_a).post("/allocation/apply", {"profile": 1}).status_code == 403


def test_anonymous_and_outsiders_are_refused(client_for, outsider, computed):
    assert client_for().get("/allocation/").status_code == 302  # to the sign-in page
    assert client_for(outsider).get("/allocation/").status_code == 403
    assert client_for().post("/allocation/apply", {"profile": 1}).status_code == 302
    assert client_for(outsider).post("/allocation/apply", {"profile": 1}).status_code == 403
    assert client_for().get("/allocation/apply").status_code == 405


def test_apply_writes_the_caps_with_history_and_the_reason(risk_manager, computed):
    profile = RiskProfile.objects.get(name="gate-test")
    before = profile.history.count()
    client = Client(enforce_csrf_checks=True)
    client.force_login(risk_manager)
    page = client.get("/allocation/")
    token = page.cookies["csrftoken"].value
    assert client.post("/allocation/apply", {"profile": profile.id}).status_code == 403  # no CSRF token: refused
    answer = client.post("/allocation/apply", {"profile": profile.id, "csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    limits = {row.symbol: row for row in SymbolLimit.objects.filter(profile=profile)}
    assert set(limits) == {"BTCUSDT", "ETHUSDT"}
    btc = limits["BTCUSDT"]
    assert btc.max_position_notional_critical > 0 and btc.max_leverage_critical >= 1
    assert btc.max_position_notional_warning <= btc.max_position_notional_critical
    assert profile.history.count() == before + 1
    latest = profile.history.order_by("-history_date").first()
    assert latest.history_change_reason == "allocation suggestion of 2026-12-07"
    assert latest.history_user == risk_manager
    assert btc.history.first().history_change_reason == "allocation suggestion of 2026-12-07"
    followed = client.get(answer["Location"])
    assert "allocation suggestion of 2026-12-07" in followed.content.decode()


def test_the_page_is_in_chinese_too(client_for, risk_manager, computed):
    html = client_for(risk_manager, language="zh-hans").get("/allocation/").content.decode()
    assert 'lang="zh-hans"' in html or "zh-hans" in html


def test_an_old_result_is_recomputed_when_the_page_asks(client_for, risk_manager, computed, settings, monkeypatch):
    from rules.allocation import services

    calls = []
    monkeypatch.setattr(services, "risk_refresh", lambda **kw: calls.append(kw) or computed)
    client_for(risk_manager).get("/allocation/")
    assert calls == []  # fresh: the cache answers
    settings.ALLOCATION_MAX_AGE_S = 0
    client_for(risk_manager).get("/allocation/")
    assert len(calls) == 1


def test_a_result_about_other_accounts_is_recomputed(client_for, risk_manager, computed, desk, monkeypatch):
    from accounts import services as account_services
    from rules.allocation import services

    calls = []
    monkeypatch.setattr(services, "risk_refresh", lambda **kw: calls.append(kw) or computed)
    account_services.account_create(name="acct-c", api_key="CKEY-cccc-PLAINTEXT-1", api_secret="CSECRET-cccc-1")
    client_for(risk_manager).get("/allocation/")
    assert len(calls) == 1
