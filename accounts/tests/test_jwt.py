from __future__ import annotations

from datetime import timedelta

from rest_framework_simplejwt.tokens import AccessToken

from conftest import PASSWORD


def test_obtain_use_and_refresh_a_token(api_for, trader_a, account_a):
    api = api_for()
    tokens = api.post("/api/v1/auth/token/", {"username": "trader_a", "password": PASSWORD}, format="json").json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api.get("/api/v1/me/").json()["accounts"] == [account_a.id]
    refreshed = api_for().post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_a_wrong_password_gets_no_token(api_for, trader_a):
    response = api_for().post("/api/v1/auth/token/", {"username": "trader_a", "password": "nope"}, format="json")
    assert response.status_code == 401


def test_an_expired_or_forged_token_is_a_401(api_for, trader_a):
    token = AccessToken.for_user(trader_a)
    token.set_exp(lifetime=-timedelta(seconds=1))
    api = api_for()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/me/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Bearer abc.def.ghi")
    assert api.get("/api/v1/me/").status_code == 401


def test_no_token_is_a_401(api_for, db):
    assert api_for().get("/api/v1/accounts/").status_code == 401
