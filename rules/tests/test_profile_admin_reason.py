"""The admin's profile edits say why (issue 14 item 12): the reason is required and lands in the history."""

from __future__ import annotations

import json
from decimal import Decimal

from django.forms.models import model_to_dict
from django.test import Client

from conftest import PASSWORD
from rules.models import RiskProfile


def change_form_data(profile: RiskProfile, **changes) -> dict:
    data = {}
    for name, value in model_to_dict(profile).items():
        if value is None or name == "id":
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value)
        data[name] = value
    # the per-symbol limits inline (rules.admin.SymbolLimitInline): no rows unless a test adds some
    data.update({"symbol_limits-TOTAL_FORMS": 0, "symbol_limits-INITIAL_FORMS": 0})
    data.update(changes)
    return data


def admin_client() -> Client:
    client = Client()
    assert client.login(username="rm", password=PASSWORD)
    return client


def test_a_profile_edit_without_a_reason_is_refused(risk_manager):
    profile = RiskProfile.objects.create(name="desk", max_leverage_critical=10)
    url = f"/admin/rules/riskprofile/{profile.id}/change/"
    response = admin_client().post(url, change_form_data(profile, max_leverage_critical=20))
    assert response.status_code == 200  # the form again, with the error
    assert "change_reason" in response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert profile.max_leverage_critical == 10


def test_the_reason_given_in_the_admin_is_recorded_in_the_history(risk_manager):
    profile = RiskProfile.objects.create(name="desk", max_leverage_critical=10)
    url = f"/admin/rules/riskprofile/{profile.id}/change/"
    data = change_form_data(profile, max_leverage_critical=20, change_reason="BTC vol spike, tighter cap")
    response = admin_client().post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    latest = profile.history.order_by("-history_id").first()
    assert latest.max_leverage_critical == 20
    assert latest.history_change_reason == "BTC vol spike, tighter cap"
    assert latest.history_user.username == "rm"


def test_a_new_profile_in_the_admin_records_its_reason(risk_manager):
    data = change_form_data(RiskProfile(name="new"), change_reason="desk for the options team")
    response = admin_client().post("/admin/rules/riskprofile/add/", data)
    assert response.status_code == 302
    created = RiskProfile.objects.get(name="new")
    assert created.history.first().history_change_reason == "desk for the options team"


def test_a_per_symbol_limit_is_added_inline_and_a_bad_one_is_refused(risk_manager):
    profile = RiskProfile.objects.create(name="p", max_position_notional_warning=1000)
    url = f"/admin/rules/riskprofile/{profile.pk}/change/"
    row = {"symbol_limits-TOTAL_FORMS": 1, "symbol_limits-0-symbol": "btcusdt", "change_reason": "BTC cap"}
    bad = admin_client().post(
        url, change_form_data(profile, **row, **{"symbol_limits-0-max_position_notional_critical": 500})
    )
    assert bad.status_code == 200 and not profile.symbol_limits.exists()  # below the profile's warning
    good = admin_client().post(url, change_form_data(profile, **row, **{"symbol_limits-0-max_order_qty": "2.5"}))
    assert good.status_code == 302
    assert profile.symbol_limit_values() == {"BTCUSDT": {"max_order_qty": Decimal("2.5")}}
