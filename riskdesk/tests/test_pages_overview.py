"""The overview (/) and the status strip: live figures with their age, the fallback to saved rows
(said loudly), stale feeds on every page, and who may see what."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.utils import timezone

from marketdata import live
from positions.models import AccountSnapshot
from riskdesk.tests import page_fixtures as pf
from rules.tests.test_gate_fixtures import publish

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def test_the_overview_shows_each_visible_account_live(client_for, risk_manager, desk):
    response = client_for(risk_manager).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "acct-a" in html and "acct-b" in html
    assert 'class="fresh src-live"' in html and "is-stale" not in html and 'class="stale-banner"' not in html
    assert 'id="gauge-' in html and 'id="pnl-data"' in html and 'id="overview-data"' in html


def test_a_trader_sees_only_their_account_on_the_overview_and_its_partials(client_for, trader_a, desk):
    client = client_for(trader_a)
    for url in ("/", "/_overview", "/_status"):
        html = client.get(url).content.decode()
        assert "acct-a" in html and "acct-b" not in html, url


def test_an_outsider_is_refused_and_an_anonymous_visitor_is_sent_to_sign_in(client_for, outsider, desk):
    for url in ("/", "/_overview", "/_status"):
        assert client_for(outsider).get(url).status_code == 403, url
        response = client_for().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next="), url


def test_without_live_state_the_overview_says_the_figures_are_not_live_and_how_old(
    client_for, risk_manager, gate_env, account_a
):
    AccountSnapshot.objects.create(
        account=account_a,
        time=timezone.now() - timezone.timedelta(minutes=12),
        wallet_balance=D("1000"),
        margin_balance=D("1234.5"),
        maint_margin=D("10"),
        unrealized_pnl=D("234.5"),
        margin_ratio=D("0.0081"),
    )
    html = client_for(risk_manager).get("/").content.decode()
    assert "NOT LIVE: last saved" in html and "12 min" in html
    assert "1,234.50" in html


def test_a_stale_market_feed_is_shown_loudly_on_every_page(client_for, risk_manager, desk):
    publish(desk["a"].id, positions=[], feed_age_s=60)
    client = client_for(risk_manager)
    for url in ("/", "/positions/", "/alerts/", "/accounts/", "/rules/", "/positions/what-if/"):
        html = client.get(url).content.decode()
        assert 'class="stale-banner"' in html and "feed is STALE" in html, url


def test_the_status_strip_counts_open_alerts_by_level(client_for, risk_manager, desk):
    from alerts import services

    services.alert_raise(
        account_id=desk["a"].id,
        rule="margin_ratio",
        subject="account",
        level=30,
        reason_code="MARGIN_RATIO",
        value=D("0.9"),
        limit=D("0.8"),
        mark_price=None,
        details={},
    )
    html = client_for(risk_manager).get("/_status").content.decode()
    assert 'href="/alerts/?level=30">Critical <b>1</b>' in html


def test_both_languages_render(client_for, risk_manager, desk):
    english = client_for(risk_manager, language="en").get("/").content.decode()
    chinese = client_for(risk_manager, language="zh-hans").get("/").content.decode()
    assert "Margin balance" in english and '<html lang="en">' in english
    assert "保证金余额" in chinese and '<html lang="zh-hans">' in chinese


def test_times_are_shown_in_the_users_timezone(client_for, risk_manager, desk):
    risk_manager.timezone = "Asia/Shanghai"
    risk_manager.save(update_fields=["timezone"])
    html = client_for(risk_manager).get("/").content.decode()
    assert 'data-tz="Asia/Shanghai"' in html
    assert live.now_ms()  # the page's ages count on the server's clock (data-server-now-ms)
