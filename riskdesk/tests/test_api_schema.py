"""The API's schema and docs (issue 14, item 10): offline docs, JWT on /orders/check, JSON bodies
only, the refusals documented where they occur, and no developer notes in the schema."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from conftest import PASSWORD

# Phrases from docstrings meant for maintainers (how DRF copies fields, which file does what).
INTERNAL = ["deep-copies", "DRF", "riskdesk/", "rules/", ".py", "OrderCheckApi", "serializer", "Thin views", "bench"]


@pytest.fixture
def schema(db):
    response = Client().get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_orders_check_declares_jwt(schema):
    op = schema["paths"]["/api/v1/orders/check"]["post"]
    assert {"jwtAuth": []} in op["security"]
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"


def test_every_request_body_is_json_only(schema):
    bodies = [(path, method, op["requestBody"]) for path, method, op in operations(schema) if "requestBody" in op]
    assert bodies
    for path, method, body in bodies:
        assert list(body["content"]) == ["application/json"], (method, path)


@pytest.mark.parametrize(
    "path, method, codes",
    [
        ("/api/v1/orders/check", "post", {"400", "401", "403", "404"}),
        ("/api/v1/orders", "post", {"400", "401", "403", "404", "422"}),
        ("/api/v1/orders", "delete", {"400", "401", "403", "404", "422"}),
        ("/api/v1/accounts/{account_id}/", "get", {"401", "403", "404"}),
        ("/api/v1/accounts/", "get", {"400", "401", "403"}),
        ("/api/v1/accounts/{account_id}/kill", "post", {"400", "401", "403", "404"}),
        ("/api/v1/profiles/{profile_id}/", "patch", {"400", "401", "403", "404"}),
        ("/api/v1/auth/token/", "post", {"400", "401"}),
    ],
)
def test_refusals_are_documented_where_they_occur(schema, path, method, codes):
    assert codes <= set(schema["paths"][path][method]["responses"]), (method, path)


def test_every_authenticated_operation_documents_401_and_403(schema):
    for path, method, op in operations(schema):
        if op.get("security") and {} not in op["security"]:
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_the_page_bounds_are_in_the_schema(schema):
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/accounts/"]["get"]["parameters"]}
    assert params["limit"]["maximum"] == 1000 and params["limit"]["minimum"] == 1


def test_no_internal_comments_in_the_schema(schema):
    texts = []
    for path, method, op in operations(schema):
        texts.append((f"{method} {path}", op.get("description", "")))
    for name, component in schema["components"]["schemas"].items():
        texts.append((name, component.get("description", "")))
    for where, text in texts:
        for phrase in INTERNAL:
            assert phrase not in text, (where, phrase, text)
    assert "One per /orders/check" not in str(schema)


@pytest.fixture
def staff_client(risk_manager):
    client = Client()
    assert client.login(username="rm", password=PASSWORD)
    return client


@pytest.mark.parametrize("url", ["/api/docs", "/api/redoc"])
def test_the_docs_pages_load_only_local_assets(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), asset  # no https://cdn..., no //fonts...
        assert not asset.startswith("//"), asset
    assert "googleapis" not in html and "jsdelivr" not in html and "unpkg" not in html
    assert "<style" not in html and not re.search(r"<script>\s*\S", html)  # no inline style or script


def test_the_docs_assets_are_served(staff_client, settings):
    from django.contrib.staticfiles import finders

    html = staff_client.get("/api/docs").content.decode()
    for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)"', html):
        assert finders.find(asset.removeprefix("/static/")), asset
    redoc = staff_client.get("/api/redoc").content.decode()
    bundle = re.search(r'src="/static/([^"]+redoc[^"]+)"', redoc).group(1)
    assert finders.find(bundle), bundle
