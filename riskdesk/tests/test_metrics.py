"""/metrics (issue 14 item 11): protected, and every figure the issue lists is there."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert, AlertStatus, Delivery, DeliveryStatus, Level, NotificationChannel
from conftest import PASSWORD
from marketdata import live
from positions.models import OrderLog
from riskdesk import metrics

TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture(autouse=True)
def fresh_metric_keys():
    """The embedded cache is a directory that outlives a test run: start each test without our keys."""
    keys = [metrics.GATE_KEY, metrics.GATE_LOCK_KEY, metrics.STREAM_KEY, live.PROCESS_KEY]
    keys += [live.FEED_KEY.format(name="market")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)
    metrics.RECORDER = None


def scrape(client: Client | None = None, **headers) -> dict[str, list]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def value(samples: list, name: str | None = None, **labels) -> float:
    matching = [
        s for s in samples if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (labels, samples)
    return matching[0].value


# --- protected -----------------------------------------------------------------------------


def test_an_anonymous_caller_is_refused_with_a_bearer_challenge(db):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"riskdesk_" not in response.content


def test_a_trader_signed_in_is_refused(trader_a):
    client = Client()
    client.login(username="trader_a", password=PASSWORD)
    assert client.get("/metrics").status_code == 401


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_bearer_token_is_let_in_and_a_wrong_one_is_not(db):
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 401


@override_settings(METRICS_TOKEN="")
def test_without_a_token_setting_no_bearer_gets_in_but_staff_does(risk_manager):
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    client = Client()
    client.login(username="rm", password=PASSWORD)
    assert client.get("/metrics").status_code == 200


# --- content ---------------------------------------------------------------------------------


@override_settings(METRICS_TOKEN=TOKEN)
def test_it_shows_feeds_heartbeat_alerts_deliveries_gate_decisions_and_queue_depth(account_a):
    now = live.now_ms()
    live.feed_set("market", {"name": "market", "connected": True, "stale": False, "last_message_ms": now - 1500})
    live.process_beat({"pid": 1})
    Alert.objects.create(account=account_a, rule="margin_ratio", subject="account", level=Level.CRITICAL)
    Alert.objects.create(
        account=account_a, rule="leverage", subject="BTCUSDT:LONG", level=Level.WARNING, status=AlertStatus.ACKNOWLEDGED
    )
    channel = NotificationChannel.objects.create(name="ops", kind="webhook")
    for status in (DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.FAILED):
        Delivery.objects.create(channel=channel, level=Level.CRITICAL, status=status)
    for decision, codes in (("denied", ["MAX_LEVERAGE", "STALE_FEED"]), ("denied", ["STALE_FEED"]), ("allowed", [])):
        OrderLog.objects.create(
            account=account_a,
            source="api",
            symbol="BTCUSDT",
            side="BUY",
            order_type="MARKET",
            decision=decision,
            reason_codes=codes,
        )

    got = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert 1.0 <= value(got["riskdesk_feed_age_seconds"], feed="market") < 60
    assert value(got["riskdesk_feed_stale"]) == 0
    assert value(got["riskdesk_stream_up"]) == 1
    assert value(got["riskdesk_stream_heartbeat_age_seconds"]) < 5
    assert value(got["riskdesk_alerts_open"], level="critical", status="open") == 1
    assert value(got["riskdesk_alerts_open"], level="warning", status="acknowledged") == 1
    assert value(got["riskdesk_alerts_open"], level="emergency", status="open") == 0
    assert value(got["riskdesk_deliveries"], status="sent") == 2
    assert value(got["riskdesk_deliveries"], status="failed") == 1
    gate = got["riskdesk_gate_decisions"]
    assert value(gate, decision="denied", reason="STALE_FEED") == 2
    assert value(gate, decision="denied", reason="MAX_LEVERAGE") == 1
    assert value(gate, decision="allowed", reason="none") == 1
    assert value(got["riskdesk_celery_queue_depth"], queue="celery") >= 0
    assert all(s.value == 1 for s in got["riskdesk_metrics_section_up"])


@override_settings(METRICS_TOKEN=TOKEN)
def test_gate_decisions_count_each_order_log_row_once_over_scrapes(account_a):
    def log(decision: str, codes: list[str]) -> None:
        OrderLog.objects.create(
            account=account_a,
            source="api",
            symbol="BTCUSDT",
            side="BUY",
            order_type="MARKET",
            decision=decision,
            reason_codes=codes,
        )

    log("denied", ["DAILY_LOSS"])
    first = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")["riskdesk_gate_decisions"]
    second = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")["riskdesk_gate_decisions"]
    log("denied", ["DAILY_LOSS"])
    third = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")["riskdesk_gate_decisions"]
    counts = [value(s, decision="denied", reason="DAILY_LOSS") for s in (first, second, third)]
    assert counts == [1, 1, 2]


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_dead_stream_process_shows_down_and_a_stale_feed(db):
    got = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert value(got["riskdesk_stream_up"]) == 0
    assert value(got["riskdesk_feed_stale"]) == 1
    assert "riskdesk_stream_heartbeat_age_seconds" not in got


# --- the stream process's histograms ---------------------------------------------------------------


def test_the_stream_hook_observes_frame_to_book_and_frame_to_alert_and_publishes_them(db):
    engine = SimpleNamespace(on_market_frame=None, workers=[])
    recorder = metrics.instrument(engine)
    assert recorder.publisher in engine.workers
    event_ms = int(time.time() * 1000) - 40  # the frame left the exchange 40 ms ago
    engine.on_market_frame(event_ms)
    metrics.alert_written(evaluated_ms=int(time.time() * 1000))  # evaluated right after that frame
    metrics.alert_written(evaluated_ms=int(time.time() * 1000) - 60_000)  # long before: not that frame's
    recorder.publish()

    with override_settings(METRICS_TOKEN=TOKEN):
        got = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    book = got["riskdesk_frame_to_book_seconds"]
    assert value(book, "riskdesk_frame_to_book_seconds_count") == 1
    assert 0.04 <= value(book, "riskdesk_frame_to_book_seconds_sum") < 5
    assert value(book, "riskdesk_frame_to_book_seconds_bucket", le="0.025") == 0
    assert value(book, "riskdesk_frame_to_book_seconds_bucket", le="+Inf") == 1
    alert = got["riskdesk_frame_to_alert_seconds"]
    assert value(alert, "riskdesk_frame_to_alert_seconds_count") == 1


def test_the_hook_keeps_a_hook_already_set(db):
    seen = []
    engine = SimpleNamespace(on_market_frame=seen.append, workers=[])
    metrics.instrument(engine)
    engine.on_market_frame(123)
    assert seen == [123] and metrics.RECORDER.frame_to_book._sum.get() > 0


def test_an_alert_raised_in_the_stream_process_is_timed_from_its_frame(account_a):
    from alerts import services

    engine = SimpleNamespace(on_market_frame=None, workers=[])
    recorder = metrics.instrument(engine)
    engine.on_market_frame(int(time.time() * 1000) - 10)
    services.alert_raise(
        account_id=account_a.id,
        rule="margin_ratio",
        subject="account",
        level=Level.CRITICAL,
        reason_code="X",
        value=None,
        limit=None,
        mark_price=None,
        details={"time_ms": int(time.time() * 1000)},
    )
    assert recorder.frame_to_alert._sum.get() > 0


def test_the_filesystem_broker_queue_depth_counts_waiting_messages(tmp_path):
    (tmp_path / "1_a.celery.msg").write_text("{}")
    (tmp_path / "2_b.celery.msg").write_text("{}")
    (tmp_path / "3_c.other.msg").write_text("{}")
    options = {"data_folder_in": str(tmp_path)}
    with override_settings(CELERY_BROKER_URL="filesystem://", CELERY_BROKER_TRANSPORT_OPTIONS=options):
        assert metrics.celery_queue_depth() == {"celery": 2}


@override_settings(METRICS_TOKEN=TOKEN)
def test_every_metric_the_grafana_dashboard_reads_is_exposed(db):
    import json
    import re

    from django.conf import settings

    dashboard = json.loads((settings.BASE_DIR / "docs/grafana-riskdesk.json").read_text())
    wanted = {
        re.sub(r"_(bucket|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"riskdesk_\w+", target["expr"])
    }
    recorder = metrics.instrument(SimpleNamespace(on_market_frame=None, workers=[]))
    recorder.publish()  # the latency histograms appear once the stream process has published
    live.process_beat({"pid": 1})
    exposed = set(scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    assert wanted <= exposed, wanted - exposed
