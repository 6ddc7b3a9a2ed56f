"""Bad input gets a 4xx, never a 500 (issue 14, item 8).

Each case was a 500 (or an answer that told an attacker something) before its fix: JSON nested
deeper than the parser's recursion limit, a page size past any integer the database takes,
a path out of /static/, decimal strings Python reads but no client should send, and an account
id that answered differently when it did not exist from when it belonged to someone else.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework_simplejwt.tokens import RefreshToken

from riskdesk.asgi import application
from rules.models import RiskProfile
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import order_body

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

NESTED = "[" * 30_000  # past CPython's recursion limit in json.loads: RecursionError, not ValueError


def asgi_request(method: str, path: str, *, body: bytes = b"", headers: dict | None = None, query: bytes = b""):
    """One request through riskdesk.asgi.application, as uvicorn calls it: (status, headers, body).
    uvicorn puts the percent-decoded path in scope["path"] (%2f becomes /) and the raw one in raw_path."""
    sent = {"host": "testserver", **(headers or {})}
    if body:
        sent.setdefault("content-type", "application/json")
        sent["content-length"] = str(len(body))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    out: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.get_running_loop().create_future()

    async def send(message):
        out.append(message)

    # As Django's test clients do: a request must not close the test's connection mid-transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(application)(scope, receive, send)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    start = out[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in out[1:])


def bearer(user) -> str:
    return f"Bearer {RefreshToken.for_user(user).access_token}"


# --------------------------------------------------------------------------- deeply nested JSON


@pytest.fixture
def profile(db):
    return RiskProfile.objects.create(name="p", is_default=True, max_leverage_critical=10)


JSON_ENDPOINTS = [
    ("post", "/api/v1/auth/token/"),
    ("post", "/api/v1/auth/token/refresh/"),
    ("post", "/api/v1/profiles/"),
    ("put", "/api/v1/profiles/{profile}/"),
    ("patch", "/api/v1/profiles/{profile}/"),
    ("post", "/api/v1/profiles/{profile}/accounts/"),
    ("post", "/api/v1/orders/check"),
    ("post", "/api/v1/orders"),
    ("delete", "/api/v1/orders"),
    ("post", "/api/v1/accounts/{account}/trading-state"),
    ("post", "/api/v1/accounts/{account}/kill"),
]


@pytest.mark.parametrize("method, url", JSON_ENDPOINTS)
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(api_for, risk_manager, account_a, profile, method, url):
    url = url.format(profile=profile.id, account=account_a.id)
    response = getattr(api_for(risk_manager), method)(url, NESTED, content_type="application/json")
    assert response.status_code == 400, (url, response.status_code, response.content[:200])
    assert "nested" in response.json()["detail"].lower()


@pytest.mark.parametrize("depth", [33, 900, 30_000])
def test_json_nested_past_the_limit_is_a_400_however_deep(api_for, risk_manager, profile, depth):
    # 900 levels parse without a RecursionError, but validating or rendering them could still overflow.
    raw = '{"name": "p", "asset_caps": ' + "[" * depth + "]" * depth + "}"
    response = api_for(risk_manager).patch(f"/api/v1/profiles/{profile.id}/", raw, content_type="application/json")
    assert response.status_code == 400 and "nested" in response.json()["detail"]


def test_deeply_nested_json_is_a_400_on_the_check_lane(trader_a, account_a):
    from riskdesk.asgi import check_lane

    headers = {"authorization": bearer(trader_a), "content-type": "application/json"}
    scope = {
        "path": "/api/v1/orders/check",
        "method": "POST",
        "headers": [(b"host", b"testserver"), *((k.encode(), v.encode()) for k, v in headers.items())]
        + [(b"content-length", str(len(NESTED)).encode())],
    }
    assert check_lane.takes(scope) is not None  # the lane answers this one, not Django
    status, _headers, content = asgi_request("POST", "/api/v1/orders/check", body=NESTED.encode(), headers=headers)
    assert status == 400, content[:200]
    assert "nested" in json.loads(content)["detail"].lower()


def test_json_nested_a_little_is_still_parsed(api_for, risk_manager, profile):
    # 20 levels is more than any real body: a field error, not a parse error.
    body = {"account_ids": json.loads("[" * 20 + "]" * 20)}
    response = api_for(risk_manager).post(f"/api/v1/profiles/{profile.id}/accounts/", body, format="json")
    assert response.status_code == 400 and "account_ids" in response.json()


# --------------------------------------------------------------------------- pagination


@pytest.mark.parametrize(
    "query",
    ["limit=99999999999999999999", "offset=99999999999999999999", "limit=1001", "limit=-1", "offset=-5", "limit=0"],
)
def test_an_out_of_range_page_is_a_400_naming_the_bound(api_for, risk_manager, account_a, query):
    response = api_for(risk_manager).get(f"/api/v1/accounts/?{query}")
    assert response.status_code == 400, response.content
    assert "max_limit" in response.json() or "offset" in response.json() or "limit" in response.json()


def test_the_largest_page_is_accepted(api_for, risk_manager, account_a):
    response = api_for(risk_manager).get("/api/v1/accounts/?limit=1000&offset=0")
    assert response.status_code == 200 and response.json()["count"] == 1


def test_a_page_past_max_limit_says_what_the_maximum_is(api_for, risk_manager, account_a):
    response = api_for(risk_manager).get("/api/v1/accounts/?limit=99999999999999999999")
    assert response.json()["max_limit"] == 1000


# --------------------------------------------------------------------------- static files


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../.env",  # what uvicorn hands on for /static/..%2f..%2f.env
        "/static/../riskdesk/settings.py",
        "/static/css/../../../.env",
        "/static//etc/passwd",
        "/static/%2e%2e/%2e%2e/.env",
        "/static/..\\..\\.env",
        "/static/\x00.env",
    ],
)
def test_a_path_out_of_static_is_a_404(settings, path):
    settings.SERVE_STATIC = True  # the embedded demo serves /static/ from the ASGI app
    status, _headers, content = asgi_request("GET", path)
    assert status == 404, (path, status)
    assert b"SECRET_KEY" not in content


def test_a_real_static_file_is_still_served(db):
    from django.contrib.staticfiles import finders

    finder = finders.get_finder("django.contrib.staticfiles.finders.FileSystemFinder")
    name = next(path for path, _storage in finder.list([]))
    status, _headers, _content = asgi_request("GET", f"/static/{name}")
    assert status == 200, name


# --------------------------------------------------------------------------- strict decimal strings

NOT_DECIMALS = ["1_000", "１０", "٣", "1 ", " 1", "\t1", "1\n", "+1", "1e", "--1", "0x10", "١.٥", "1.0.0"]


@pytest.mark.parametrize("text", NOT_DECIMALS)
def test_an_order_quantity_that_is_not_a_plain_decimal_is_a_400(api_for, trader_a, account_a, gate_env, text):
    response = api_for(trader_a).post("/api/v1/orders/check", order_body(account_a.id, quantity=text), format="json")
    assert response.status_code == 400 and "quantity" in response.json(), (text, response.content)


@pytest.mark.parametrize("text", NOT_DECIMALS)
def test_a_profile_limit_that_is_not_a_plain_decimal_is_a_400(api_for, risk_manager, profile, text):
    response = api_for(risk_manager).patch(
        f"/api/v1/profiles/{profile.id}/", {"max_order_notional": text}, format="json"
    )
    assert response.status_code == 400 and "max_order_notional" in response.json(), (text, response.content)
    profile.refresh_from_db()
    assert profile.max_order_notional is None


@pytest.mark.parametrize("text", ["１０", "٣", " 5", "5 "])
def test_a_profile_count_that_is_not_plain_ascii_digits_is_a_400(api_for, risk_manager, profile, text):
    response = api_for(risk_manager).patch(f"/api/v1/profiles/{profile.id}/", {"max_open_orders": text}, format="json")
    assert response.status_code == 400 and "max_open_orders" in response.json(), (text, response.content)


@pytest.mark.parametrize("text", ["1000", "0.5", "1.25000000", "1E+3"])
def test_plain_decimal_strings_are_still_accepted(api_for, risk_manager, profile, text):
    response = api_for(risk_manager).patch(
        f"/api/v1/profiles/{profile.id}/", {"max_order_notional": text}, format="json"
    )
    assert response.status_code == 200, response.content


def test_an_order_with_a_plain_decimal_quantity_is_checked(api_for, trader_a, account_a, gate_env):
    fx.publish(account_a.id)
    response = api_for(trader_a).post("/api/v1/orders/check", order_body(account_a.id, quantity="0.010"), format="json")
    assert response.status_code == 200, response.content


# --------------------------------------------------------------------------- no account enumeration


def _account_requests(account_id: int) -> list[tuple[str, str, dict | None, int]]:
    """Every operation that names an account, and what a trader hears for one that is not theirs:
    404, or 403 where a trader may not act on any account (the role decides before the account)."""
    return [
        ("get", f"/api/v1/accounts/{account_id}/", None, 404),
        ("get", f"/api/v1/accounts/{account_id}/risk", None, 404),
        ("post", f"/api/v1/accounts/{account_id}/trading-state", {"state": "HALTED", "reason": "x"}, 403),
        ("post", f"/api/v1/accounts/{account_id}/kill", {"dry_run": True, "reason": "x"}, 403),
        ("post", "/api/v1/orders/check", order_body(account_id), 404),
        ("post", "/api/v1/orders", order_body(account_id), 404),
        ("delete", "/api/v1/orders", {"account": account_id, "symbol": "BTCUSDT"}, 404),
    ]


def test_an_unknown_account_and_another_traders_answer_alike(api_for, trader_a, account_a, account_b, gate_env):
    """The same status and body for both, on every operation that names an account."""
    api = api_for(trader_a)
    unknown = account_b.id + 1000
    for (method, url_b, body_b, status), (_m, url_u, body_u, _s) in zip(
        _account_requests(account_b.id), _account_requests(unknown), strict=True
    ):
        theirs = getattr(api, method)(url_b, body_b, format="json")
        nobody = getattr(api, method)(url_u, body_u, format="json")
        assert (theirs.status_code, nobody.status_code) == (status, status), (method, url_b, nobody.content)
        assert theirs.json() == nobody.json(), (method, url_b)


def test_an_unknown_account_is_a_404_for_a_risk_manager_too(api_for, risk_manager, gate_env):
    api = api_for(risk_manager)
    for method, url, body, _status in _account_requests(987654321):
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code == 404 and response.json() == {"detail": "No such account."}, (method, url)


def test_an_unknown_account_is_a_404_on_the_check_lane(trader_a, account_a, account_b, gate_env):
    headers = {"authorization": bearer(trader_a)}
    answers = []
    for account_id in (account_b.id, account_b.id + 1000):
        raw = json.dumps(order_body(account_id)).encode()
        status, _headers, content = asgi_request("POST", "/api/v1/orders/check", body=raw, headers=headers)
        answers.append((status, json.loads(content)))
    assert answers[0] == answers[1] and answers[0][0] == 404


# --------------------------------------------------------------------------- found by schemathesis


def test_an_account_id_past_any_database_integer_is_a_400(api_for, risk_manager, profile):
    # Was a 500: OverflowError binding the id into the query (schemathesis, stateful phase).
    body = {"account_ids": [159776072334484833304576]}
    response = api_for(risk_manager).post(f"/api/v1/profiles/{profile.id}/accounts/", body, format="json")
    assert response.status_code == 400 and "account_ids" in response.json()
