"""The permission matrix (issue 14, "The proof suite"), generated, not hand-listed: every GET
operation of /api/schema and every parameter-free desk page of the URLconf (the API docs pages are
public), over every role (risk
manager, viewer, trader of account A, trader of B, outsider, anonymous), plus the desk WebSocket.

- anonymous: 401 on the API, a redirect to the login on pages (405 on a POST-only one), close 4401
  on the socket;
- outsider: no desk data (403 or 404 on anything account-shaped), close 4403 on the socket;
- trader of B: account A's paths answer 404 and no answer names account A; the socket never
  carries account A;
- no role ever gets a 5xx.
"""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from alerts.tests.test_desk_consumer import DeskSocket, numbers, raise_alert

pytestmark = pytest.mark.django_db(transaction=True)

OPEN = {"/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/schema", "/health", "/login/"}
SKIP = {"/logout/", "/metrics"}  # logout ends the session under test; metrics has its own token tests


def _pages() -> list[str]:
    """Every parameter-free, non-admin, non-API route of the URLconf."""
    found = []

    def walk(patterns, prefix=""):
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                if not route.startswith(("admin", "api", "static", "media", "i18n")):
                    walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern) and "<" not in route and "(?P" not in route and not route.startswith("api"):
                found.append("/" + (prefix + route).lstrip("^").rstrip("$"))

    walk(get_resolver().url_patterns)
    return sorted(set(found) - SKIP - OPEN)


def _api_paths(schema: dict, account_id: int, profile_id: int) -> list[str]:
    paths = []
    for path, ops in schema["paths"].items():
        if "get" not in ops or path in OPEN:
            continue
        filled = path.replace("{account_id}", str(account_id)).replace("{profile_id}", str(profile_id))
        filled = re.sub(r"\{[^}]+\}", "1", filled)
        paths.append(filled)
    return paths


@pytest.fixture
def cast(risk_manager, viewer, trader_a, trader_b, outsider, account_a, account_b):
    return {
        "risk_manager": risk_manager,
        "viewer": viewer,
        "trader_a": trader_a,
        "trader_b": trader_b,
        "outsider": outsider,
        "anonymous": None,
    }


def _api(user) -> APIClient:
    api = APIClient()
    if user is not None:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return api


def _page_client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_the_api_and_pages_over_every_role(cast, account_a):
    from rules.models import RiskProfile

    profile = RiskProfile.objects.create(name="matrix", is_default=True)
    schema = Client().get("/api/schema", HTTP_ACCEPT="application/json").json()
    api_paths = _api_paths(schema, account_a.id, profile.id)
    pages = _pages()
    assert len(api_paths) >= 8 and len(pages) >= 5, (api_paths, pages)
    matrix: dict[tuple[str, str], int] = {}
    for role, user in cast.items():
        api = _api(user)
        for path in api_paths:
            response = api.get(path, HTTP_ACCEPT="application/json")
            matrix[(role, path)] = response.status_code
            assert response.status_code < 500, (role, path, response.content[:300])
            if role == "anonymous":
                assert response.status_code == 401, (role, path, response.status_code)
            if role in ("trader_b", "outsider"):
                if f"/accounts/{account_a.id}" in path:
                    assert response.status_code in (403, 404), (role, path, response.status_code)
                assert account_a.name.encode() not in response.content, (role, path)
        client = _page_client(user)
        for path in pages:
            response = client.get(path)
            matrix[(role, path)] = response.status_code
            assert response.status_code < 500, (role, path)
            if role == "anonymous":
                # 405: a POST-only page refuses the GET before anything else, and says nothing
                assert response.status_code in (302, 401, 403, 405), (role, path, response.status_code)
                if response.status_code == 302:
                    assert "/login/" in response["Location"], (path, response["Location"])
            if role in ("trader_b", "outsider"):
                assert account_a.name.encode() not in response.content, (role, path)
    print(f"\npermission matrix: {len(api_paths)} API paths + {len(pages)} pages x {len(cast)} roles")


def test_the_desk_socket_over_every_role(cast, account_a):
    made = {role: DeskSocket(user) for role, user in cast.items()}  # sessions are made outside the loop

    async def scenario():
        codes, heard = {}, {}
        sockets = {}
        for role, socket in made.items():
            frame = await socket.connect()
            if frame["type"] == "websocket.accept":
                closing = await socket.communicator.receive_nothing(0.2)
                if not closing:
                    codes[role] = await socket.close_code()
                    continue
                codes[role] = "open"
                sockets[role] = socket
            else:
                codes[role] = frame.get("code", frame["type"])
        await raise_alert(**numbers(account_a))
        for role, socket in sockets.items():
            heard[role] = not await socket.communicator.receive_nothing(0.5)
            await socket.disconnect()
        return codes, heard

    codes, heard = async_to_sync(scenario)()
    assert codes["anonymous"] == 4401 and codes["outsider"] == 4403, codes
    assert all(codes[r] == "open" for r in ("risk_manager", "viewer", "trader_a", "trader_b")), codes
    assert heard == {"risk_manager": True, "viewer": True, "trader_a": True, "trader_b": False}, heard
