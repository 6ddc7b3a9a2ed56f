from __future__ import annotations


def test_a_trader_sees_only_their_own_accounts(api_for, trader_a, account_a, account_b):
    api = api_for(trader_a)
    assert [a["name"] for a in api.get("/api/v1/accounts/").json()["results"]] == ["acct-a"]
    assert api.get(f"/api/v1/accounts/{account_a.id}/").status_code == 200
    assert api.get(f"/api/v1/accounts/{account_b.id}/").status_code == 404


def test_a_viewer_and_a_risk_manager_see_every_account(api_for, viewer, risk_manager, account_a, account_b):
    for user in (viewer, risk_manager):
        names = [a["name"] for a in api_for(user).get("/api/v1/accounts/").json()["results"]]
        assert names == ["acct-a", "acct-b"]


def test_an_outsider_sees_no_account(api_for, outsider, account_a):
    assert api_for(outsider).get(f"/api/v1/accounts/{account_a.id}/").status_code == 403
