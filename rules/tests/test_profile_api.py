from __future__ import annotations

import pytest

from rules.models import RiskProfile

URL = "/api/v1/profiles/"


@pytest.fixture
def default_profile(db):
    return RiskProfile.objects.create(name="default", is_default=True, max_leverage_critical=20)


@pytest.fixture
def strict_profile(db, account_b):
    profile = RiskProfile.objects.create(name="strict", max_leverage_critical=5)
    account_b.risk_profile = profile
    account_b.save()
    return profile


def test_a_risk_manager_creates_a_profile_and_history_records_who(api_for, risk_manager):
    response = api_for(risk_manager).post(
        URL,
        {"name": "p1", "max_leverage_critical": 10, "margin_ratio_warning": "0.5", "margin_ratio_critical": "0.8"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["margin_ratio_critical"] == "0.80000000"
    profile = RiskProfile.objects.get(name="p1")
    assert profile.history.first().history_user == risk_manager


def test_validation_errors_name_the_field(api_for, risk_manager):
    response = api_for(risk_manager).post(
        URL,
        {
            "name": "p1",
            "margin_ratio_warning": "0.9",
            "margin_ratio_critical": "0.8",
            "max_leverage_critical": 500,
            "max_order_notional": "-1",
        },
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert {"margin_ratio_warning", "max_leverage_critical", "max_order_notional"} <= set(body)
    assert not RiskProfile.objects.filter(name="p1").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "p", "max_order_notional": "abc"},
        {"name": "p", "max_price_deviation": "0.123456789"},  # more decimals than the field holds
        {"name": "p", "max_leverage_critical": 2.5},
        {"name": "p", "max_leverage_critical": "NaN"},
        {"name": "p", "bogus": 1, "max_price_deviation": "1.5"},
        {"name": ""},
    ],
)
def test_bad_input_is_a_400_with_field_errors(api_for, risk_manager, payload):
    response = api_for(risk_manager).post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    assert not RiskProfile.objects.exists()


def test_malformed_json_is_a_400(api_for, risk_manager):
    response = api_for(risk_manager).post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_a_duplicate_name_is_refused(api_for, risk_manager, default_profile):
    response = api_for(risk_manager).post(URL, {"name": "default"}, format="json")
    assert response.status_code == 400 and "already exists" in str(response.json()["name"])


def test_update_keeps_history_with_the_change(api_for, risk_manager, default_profile):
    api = api_for(risk_manager)
    response = api.patch(
        f"{URL}{default_profile.id}/", {"max_leverage_critical": 15, "reason": "tighter"}, format="json"
    )
    assert response.status_code == 200
    history = api.get(f"{URL}{default_profile.id}/history/").json()
    assert history[0]["user"] == "rm" and history[0]["reason"] == "tighter"
    assert {"field": "max_leverage_critical", "old": 20, "new": 15} in history[0]["changes"]


def test_only_one_profile_is_the_default(api_for, risk_manager, default_profile):
    api_for(risk_manager).post(URL, {"name": "new-default", "is_default": True}, format="json")
    assert list(RiskProfile.objects.filter(is_default=True).values_list("name", flat=True)) == ["new-default"]


def test_assigning_a_profile_to_accounts(api_for, risk_manager, strict_profile, account_a):
    response = api_for(risk_manager).post(
        f"{URL}{strict_profile.id}/accounts/", {"account_ids": [account_a.id]}, format="json"
    )
    assert response.status_code == 200
    account_a.refresh_from_db()
    assert account_a.risk_profile == strict_profile
    assert account_a.history.first().history_user == risk_manager


def test_assigning_an_unknown_account_changes_nothing(api_for, risk_manager, strict_profile, account_a):
    response = api_for(risk_manager).post(
        f"{URL}{strict_profile.id}/accounts/", {"account_ids": [account_a.id, 99999]}, format="json"
    )
    assert response.status_code == 400 and "99999" in str(response.json())
    account_a.refresh_from_db()
    assert account_a.risk_profile is None


def test_a_profile_in_use_cannot_be_deleted(api_for, risk_manager, strict_profile):
    response = api_for(risk_manager).delete(f"{URL}{strict_profile.id}/")
    assert response.status_code == 400
    assert RiskProfile.objects.filter(pk=strict_profile.pk).exists()


@pytest.mark.parametrize("role", ["trader_a", "viewer"])
def test_traders_and_viewers_cannot_write(request, api_for, role, default_profile):
    api = api_for(request.getfixturevalue(role))
    assert api.post(URL, {"name": "x"}, format="json").status_code == 403
    assert api.patch(f"{URL}{default_profile.id}/", {"max_leverage_critical": 1}, format="json").status_code in (
        403,
        404,
    )
    assert api.delete(f"{URL}{default_profile.id}/").status_code in (403, 404)
    default_profile.refresh_from_db()
    assert default_profile.max_leverage_critical == 20


def test_a_trader_reads_only_the_profiles_of_their_accounts(
    api_for, trader_a, account_a, default_profile, strict_profile
):
    api = api_for(trader_a)
    names = [p["name"] for p in api.get(URL).json()]
    assert names == ["default"]  # account_a has no profile of its own, so the default governs it
    assert api.get(f"{URL}{strict_profile.id}/").status_code == 404
    assert api.get(f"{URL}{default_profile.id}/").json()["accounts"] == []


def test_a_viewer_reads_every_profile(api_for, viewer, default_profile, strict_profile):
    assert sorted(p["name"] for p in api_for(viewer).get(URL).json()) == ["default", "strict"]


def test_an_outsider_is_refused_everywhere(api_for, outsider, default_profile):
    api = api_for(outsider)
    for url in (
        URL,
        f"{URL}{default_profile.id}/",
        f"{URL}{default_profile.id}/history/",
        f"{URL}{default_profile.id}/accounts/",
        "/api/v1/accounts/",
        "/api/v1/me/",
    ):
        assert api.get(url).status_code == 403, url
    assert api.post(URL, {"name": "x"}, format="json").status_code == 403


def test_no_token_is_a_401(api_for, default_profile):
    assert api_for().get(URL).status_code == 401
