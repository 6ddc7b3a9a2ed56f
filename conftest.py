"""The fixed cast every test reads like: a risk manager, two traders with one
account each, a viewer and an outsider (a login with no desk role)."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services as account_services
from accounts.models import Role

PASSWORD = "correct-horse-battery-9"


def require_service(name: str) -> None:
    """Skip where the service is not configured; fail where CI says it must exist."""
    if os.environ.get("RISKDESK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI but is not configured")
    pytest.skip(f"{name} not configured (set it to run this test)")


@pytest.fixture
def make_user(db):
    def make(username: str, role: str):
        return account_services.user_create(username=username, password=PASSWORD, role=role)

    return make


@pytest.fixture
def risk_manager(make_user):
    return make_user("rm", Role.RISK_MANAGER)


@pytest.fixture
def trader_a(make_user):
    return make_user("trader_a", Role.TRADER)


@pytest.fixture
def trader_b(make_user):
    return make_user("trader_b", Role.TRADER)


@pytest.fixture
def viewer(make_user):
    return make_user("viewer", Role.VIEWER)


@pytest.fixture
def outsider(make_user):
    return make_user("outsider", Role.NONE)


@pytest.fixture
def account_a(trader_a):
    return account_services.account_create(
        name="acct-a", api_key="AKEY-aaaa-PLAINTEXT-1234", api_secret="ASECRET-aaaa-PLAINTEXT-5678", traders=[trader_a]
    )


@pytest.fixture
def account_b(trader_b):
    return account_services.account_create(
        name="acct-b", api_key="BKEY-bbbb-PLAINTEXT-4321", api_secret="BSECRET-bbbb-PLAINTEXT-8765", traders=[trader_b]
    )


@pytest.fixture
def api_for():
    """An API client carrying a real JWT access token for the user (or none)."""

    def client(user=None) -> APIClient:
        api = APIClient()
        if user is not None:
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        return api

    return client
