"""/health tells anonymous callers only up or down; the details need the token or staff."""

from __future__ import annotations

import pytest
from django.test import Client

from conftest import PASSWORD

TOKEN = "monitor-token-for-tests"


@pytest.fixture(autouse=True)
def health_token(settings):
    settings.HEALTH_TOKEN = TOKEN


@pytest.fixture(autouse=True)
def stream_beating():
    """A stream process runs (its beat, as run_streams writes it): else the desk is "degraded"."""
    from marketdata import live

    live.process_beat({"pid": 0, "accounts": 0})
    yield
    live.process_withdraw()


def test_an_anonymous_caller_gets_only_the_status(db):
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_anonymous_caller_gets_only_the_status_when_a_server_is_down(db, monkeypatch):
    from riskdesk import health

    def broken() -> None:
        raise ConnectionError("redis://secret-host:6379 refused")

    monkeypatch.setitem(health.CHECKS, "cache", broken)
    response = Client().get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "down"}
    assert b"secret-host" not in response.content


def test_a_wrong_token_gets_only_the_status(db):
    response = Client(headers={"X-Health-Token": TOKEN + "x"}).get("/health")
    assert response.json() == {"status": "ok"}


def test_no_token_is_configured_so_an_empty_header_gets_only_the_status(db, settings):
    settings.HEALTH_TOKEN = ""
    assert Client(headers={"X-Health-Token": ""}).get("/health").json() == {"status": "ok"}


def test_the_monitor_token_gets_the_details(db):
    body = Client(headers={"X-Health-Token": TOKEN}).get("/health").json()
    assert body["status"] == "ok" and set(body["checks"]) >= {"database", "cache", "channel_layer", "broker"}
    assert "worker_heartbeat" in body and "feeds" in body


@pytest.mark.parametrize("who, details", [("rm", True), ("viewer", True), ("trader_a", False), ("outsider", False)])
def test_staff_signed_in_get_the_details_and_others_do_not(request, who, details):
    request.getfixturevalue({"rm": "risk_manager"}.get(who, who))
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    body = client.get("/health").json()
    assert ("checks" in body) is details
