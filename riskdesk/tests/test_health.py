from __future__ import annotations

import socket

import pytest
from django.test import Client

TOKEN = "monitor-token-for-tests"


@pytest.fixture(autouse=True)
def health_token(settings):
    settings.HEALTH_TOKEN = TOKEN


def monitor() -> Client:
    """A client that reads /health's details (anonymous callers see only the status)."""
    return Client(headers={"X-Health-Token": TOKEN})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket closes


@pytest.fixture
def stream_beating():
    """A stream process's beat, as run_streams writes it every second (/health needs one for "ok")."""
    from marketdata import live

    live.process_beat({"pid": 0, "accounts": 0})
    yield
    live.process_withdraw()


def test_health_is_200_when_everything_answers(db, stream_beating):
    response = monitor().get("/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "cache", "channel_layer", "broker"}


def test_health_is_503_naming_the_cache_when_redis_is_down(db, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }
    from django.core.cache import caches

    caches._settings = None  # let the override take effect for this test
    try:
        caches.__init__()
        response = monitor().get("/health")
    finally:
        caches.__init__()
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]


def test_health_is_503_naming_the_broker_when_it_is_down(db, monkeypatch):
    from celery import Celery

    from riskdesk import health

    monkeypatch.setattr(
        health, "celery_app", Celery(broker=f"redis://127.0.0.1:{closed_port()}/0", set_as_current=False)
    )
    response = monitor().get("/health")
    assert response.status_code == 503
    assert "broker" in response.json()["down"]


def test_health_is_503_naming_the_channel_layer_when_it_is_down(db, settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port()}/0"]},
        }
    }
    channel_layers.backends.clear()
    try:
        response = monitor().get("/health")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    assert "channel_layer" in response.json()["down"]


@pytest.mark.django_db
def test_health_needs_no_login():
    assert Client().get("/health").status_code in (200, 503)


def test_health_flags_a_stale_market_feed_without_failing(db, stream_beating):
    from marketdata import live

    live.feed_set("market", {"name": "market", "connected": True, "stale": False, "last_message_ms": live.now_ms()})
    body = monitor().get("/health").json()
    assert body["stale"] is False and body["feeds"]["market"]["connected"] is True
    live.feed_set(
        "market", {"name": "market", "connected": True, "stale": False, "last_message_ms": live.now_ms() - 60_000}
    )
    response = monitor().get("/health")
    assert response.status_code == 200 and response.json()["stale"] is True


def test_health_is_503_degraded_without_a_stream_process_beat(db):
    """Issue 14: a dead stream process was invisible (/health stayed 200 "ok")."""
    from marketdata import live

    live.process_withdraw()
    response = monitor().get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["down"] == [] and body["stream"]["alive"] is False
    live.process_beat({"pid": 0, "accounts": 0})
    assert monitor().get("/health").json()["stream"]["alive"] is True
    live.process_withdraw()


def test_a_beat_older_than_the_stale_limit_is_not_alive(settings):
    from marketdata import live

    settings.STREAM_STALE_AFTER_S = 5
    now = live.now_ms()
    assert live.process_is_alive({"heartbeat_ms": now - 4_000}, at_ms=now)
    assert not live.process_is_alive({"heartbeat_ms": now - 5_001}, at_ms=now)
    assert not live.process_is_alive(None)
