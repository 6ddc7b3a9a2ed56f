from __future__ import annotations

import pytest
from django.test import Client

from conftest import PASSWORD
from rules.models import RiskProfile

ADMIN_PAGES = [
    "/admin/accounts/exchangeaccount/",
    "/admin/rules/riskprofile/",
    "/admin/positions/position/",
    "/admin/positions/orderlog/",
    "/admin/alerts/alert/",
    "/admin/marketdata/symbol/",
]


def client_for(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_a_risk_manager_sees_every_admin_page(risk_manager, url):
    assert client_for("rm").get(url).status_code == 200


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_a_viewer_sees_admin_pages_read_only(viewer, url):
    assert client_for("viewer").get(url).status_code == 200
    assert client_for("viewer").get(url + "add/").status_code == 403


def test_a_viewer_cannot_change_a_profile(viewer, db):
    profile = RiskProfile.objects.create(name="p", max_leverage_critical=10)
    client = client_for("viewer")
    page = client.get(f"/admin/rules/riskprofile/{profile.id}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = client.post(f"/admin/rules/riskprofile/{profile.id}/change/", {"name": "p", "max_leverage_critical": 99})
    assert response.status_code == 403
    profile.refresh_from_db()
    assert profile.max_leverage_critical == 10


def test_a_viewer_cannot_see_users(viewer):
    assert client_for("viewer").get("/admin/accounts/user/").status_code == 403


@pytest.mark.parametrize("who", ["trader_a", "outsider"])
def test_traders_and_outsiders_are_kept_out_of_the_admin(request, who):
    request.getfixturevalue(who)
    client = client_for(who)
    for url in ADMIN_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_a_risk_manager_edits_a_profile_through_the_admin_and_history_shows_it(risk_manager, db):
    profile = RiskProfile.objects.create(name="p", max_leverage_critical=10, is_default=True)
    client = client_for("rm")
    page = client.get(f"/admin/rules/riskprofile/{profile.id}/change/")
    form = page.context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update(
        max_leverage_critical=8,
        is_default="on",
        asset_caps="{}",
        symbol_allowlist="[]",
        symbol_denylist="[]",
        disabled_checks="[]",
        change_reason="tighter leverage",
    )
    data.update({"symbol_limits-TOTAL_FORMS": 0, "symbol_limits-INITIAL_FORMS": 0})  # the per-symbol inline
    response = client.post(f"/admin/rules/riskprofile/{profile.id}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    profile.refresh_from_db()
    assert profile.max_leverage_critical == 8
    history = client.get(f"/admin/rules/riskprofile/{profile.id}/history/").content.decode()
    assert "rm" in history


def test_the_admin_refuses_a_warning_beyond_critical_naming_the_field(risk_manager, db):
    profile = RiskProfile.objects.create(name="p", is_default=True)
    client = client_for("rm")
    form = client.get(f"/admin/rules/riskprofile/{profile.id}/change/").context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update(
        margin_ratio_warning="0.9",
        margin_ratio_critical="0.8",
        is_default="on",
        asset_caps="{}",
        symbol_allowlist="[]",
        symbol_denylist="[]",
        disabled_checks="[]",
    )
    response = client.post(f"/admin/rules/riskprofile/{profile.id}/change/", data)
    assert response.status_code == 200
    assert "margin_ratio_warning" in response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert profile.margin_ratio_warning is None
