"""/metrics for Prometheus (issue 14 item 11), and the stream process's latency histograms.

One endpoint, on the web server, behind a token or a staff sign-in. Everything it shows is read
when Prometheus scrapes, from where the desk already keeps it: the live keys in the cache (feeds,
the stream process's heartbeat), the database (alerts, deliveries, the order log) and the broker
(queue depth). So any web process answers the same, and nothing counts on the request path.

The two latencies happen in the stream process, a process of its own in production (run_streams)
or inside the web server in the embedded demo. It keeps them in prometheus-client histograms and
publishes their buckets to the cache every few seconds; /metrics re-exposes them. Chosen over an
HTTP server in run_streams (a second port to protect and scrape, nothing behind a token) and over
prometheus-client's multiprocess mode (files per pid, a cleanup on every restart, a shared directory
between containers). Per frame the stream pays a timestamp, a deque append and a histogram observe.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# --- the stream process's side ----------------------------------------------------------------

STREAM_KEY = "metrics:stream"
PUBLISH_EVERY_S = 5.0
# Seconds. Frame→book is the exchange's event time to the book holding the mark: network and the
# stream's backlog, normally tens of ms. Frame→alert adds evaluation and the alert's commit.
BOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ALERT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# An alert evaluated this soon after a frame arrived was that frame's work (the evaluator runs
# synchronously right after the book takes the frame; others come from user events or timers).
CAUSED_BY_FRAME_MS = 250


class StreamRecorder:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.frame_to_book = Histogram(
            "riskdesk_frame_to_book_seconds",
            "Mark-price frame's event time (E) to the risk book holding it.",
            buckets=BOOK_BUCKETS,
            registry=self.registry,
        )
        self.frame_to_alert = Histogram(
            "riskdesk_frame_to_alert_seconds",
            "Mark-price frame's event time (E) to the alert it caused being committed (opened or escalated).",
            buckets=ALERT_BUCKETS,
            registry=self.registry,
        )
        # (arrival ms, E ms) of the last frames: an alert written a few ms later finds its frame here,
        # though newer frames may have arrived meanwhile (markPrice@1s: 16 s of them).
        self.frames: deque[tuple[int, int]] = deque(maxlen=16)

    def on_frame(self, event_ms: int) -> None:
        now = time.time()
        # Whole ms, as the evaluator stamps its work (rules.evaluator.now_ms): compared below.
        self.frames.append((int(now * 1000), event_ms))
        self.frame_to_book.observe(max(0.0, now * 1000 - event_ms) / 1000)

    def alert_written(self, evaluated_ms: int) -> None:
        """Called from the alert writer's thread; `evaluated_ms` is the evaluation's time (the
        alert's details["time_ms"]). Alerts not caused by a frame are not observed."""
        for arrived_ms, event_ms in reversed(list(self.frames)):  # list(): one atomic copy under the GIL
            if arrived_ms <= evaluated_ms:
                if evaluated_ms - arrived_ms <= CAUSED_BY_FRAME_MS:
                    self.frame_to_alert.observe(max(0.0, time.time() * 1000 - event_ms) / 1000)
                return

    def snapshot(self) -> dict[str, Any]:
        histograms = {}
        for metric in self.registry.collect():
            buckets, total = [], 0.0
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((sample.labels["le"], sample.value))
                elif sample.name.endswith("_sum"):
                    total = sample.value
            histograms[metric.name] = {"doc": metric.documentation, "buckets": buckets, "sum": total}
        return {"published_ms": int(time.time() * 1000), "pid": os.getpid(), "histograms": histograms}

    def publish(self) -> None:
        # Expires if the process dies: a scrape then shows no latency rather than a frozen one.
        cache.set(STREAM_KEY, self.snapshot(), int(PUBLISH_EVERY_S * 6))

    async def publisher(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            try:
                await asyncio.to_thread(self.publish)
            except Exception:  # the cache away: the next round publishes the totals again
                log.warning("publishing stream metrics failed; retrying", exc_info=True)


RECORDER: StreamRecorder | None = None


def instrument(engine: Any) -> StreamRecorder:
    """Record the engine's frames (its on_market_frame hook) and publish from one of its workers."""
    global RECORDER
    RECORDER = recorder = StreamRecorder()
    earlier = engine.on_market_frame
    if earlier is None:
        engine.on_market_frame = recorder.on_frame
    else:

        def both(event_ms: int) -> None:
            recorder.on_frame(event_ms)
            earlier(event_ms)

        engine.on_market_frame = both
    engine.workers.append(recorder.publisher)
    return recorder


def alert_written(*, evaluated_ms: int | None) -> None:
    """An alert was opened or escalated; in the stream process, its frame→alert time is observed."""
    if RECORDER is not None and evaluated_ms:
        RECORDER.alert_written(int(evaluated_ms))


# --- what /metrics reads when scraped ---------------------------------------------------------

GATE_KEY = "metrics:gate"
GATE_LOCK_KEY = "metrics:gate:lock"
# One scrape reads at most this many new order-log rows (id, decision, codes): ~50 s of a busy
# gate at 1,000 checks/s; a longer backlog is caught up over the next scrapes.
GATE_BATCH = 50_000
# The first scrape starts counting an hour back, not from the start of a large table.
GATE_LOOKBACK = timedelta(hours=1)


def gate_totals() -> dict[str, int]:
    """Order-gate decisions by reason code, "decision|code" -> count, counted from the order log.

    The gate runs in every web process (and the fast check lane in front of Django), so counting
    in memory would need per-process files; the order log already holds every decision. The count
    advances from a cursor kept in the cache, one scrape at a time (the lock), so each row counts
    once. A row with two reasons counts under both; a row with none under "none"."""
    state = cache.get(GATE_KEY)
    if cache.add(GATE_LOCK_KEY, 1, 60):
        try:
            state = _gate_advance(state)
            cache.set(GATE_KEY, state, None)
        finally:
            cache.delete(GATE_LOCK_KEY)
    return dict(state["totals"]) if state else {}


def _gate_advance(state: dict | None) -> dict:
    from positions.models import OrderLog

    last_id = OrderLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if state is not None and state["cursor"] > last_id:  # a restored or recreated database: start again
        state = None
    if state is None:
        since = timezone.now() - GATE_LOOKBACK
        first = OrderLog.objects.filter(created_at__gte=since).order_by("created_at").values_list("id", flat=True)
        first_id = first.first()
        state = {"cursor": last_id if first_id is None else first_id - 1, "totals": {}}
    totals = dict(state["totals"])
    cursor = state["cursor"]
    rows = OrderLog.objects.filter(id__gt=cursor).order_by("id").values_list("id", "decision", "reason_codes")
    for row_id, decision, codes in rows[:GATE_BATCH]:
        for code in codes or ["none"]:
            key = f"{decision}|{code}"
            totals[key] = totals.get(key, 0) + 1
        cursor = row_id
    return {"cursor": cursor, "totals": totals}


def celery_queue_depth() -> dict[str, int]:
    """Messages waiting in the broker for the default queue (the only one the desk uses)."""
    queue = "celery"
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        return {queue: sum(1 for p in folder.glob(f"*.{queue}.msg"))}
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            # kombu keeps each priority step in a list of its own: "celery", "celery\x06\x163", ...
            names = [queue] + [f"{queue}\x06\x16{p}" for p in (1, 2, 3, 4, 5, 6, 7, 8, 9)]
            pipe = client.pipeline()
            for name in names:
                pipe.llen(name)
            return {queue: sum(pipe.execute())}
        finally:
            client.close()
    return {}


class DeskCollector(Collector):
    """Each section on its own: one that fails (Redis away, say) is reported by
    riskdesk_metrics_section_up 0 and the others still answer."""

    def collect(self) -> Iterator:
        up = GaugeMetricFamily(
            "riskdesk_metrics_section_up", "1 when the section's source answered this scrape.", labels=["section"]
        )
        for name, section in (
            ("feeds", self._feeds),
            ("stream", self._stream),
            ("gate", self._gate),
            ("deliveries", self._deliveries),
            ("alerts", self._alerts),
            ("celery", self._celery),
        ):
            try:
                families = list(section())
            except Exception:
                log.warning("metrics: the %s section failed", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def _feeds(self) -> Iterator:
        from accounts.models import ExchangeAccount
        from marketdata import live

        names = ["market"] + [
            f"user:{a}" for a in ExchangeAccount.objects.filter(enabled=True).values_list("id", flat=True)
        ]
        found = cache.get_many([live.FEED_KEY.format(name=n) for n in names])
        now_ms = live.now_ms()
        age = GaugeMetricFamily("riskdesk_feed_age_seconds", "Seconds since the feed's last message.", labels=["feed"])
        connected = GaugeMetricFamily(
            "riskdesk_feed_connected", "1 while the feed's socket is open (absent or expired: 0).", labels=["feed"]
        )
        for name in names:
            status = found.get(live.FEED_KEY.format(name=name)) or {}
            if status.get("last_message_ms"):
                age.add_metric([name], max(0, now_ms - int(status["last_message_ms"])) / 1000)
            connected.add_metric([name], 1 if status.get("connected") else 0)
        # Stale is the market feed's judgement (the gate fails closed on it); a quiet user stream is normal.
        market = found.get(live.FEED_KEY.format(name="market"))
        stale = GaugeMetricFamily(
            "riskdesk_feed_stale",
            "1 when the market feed is stale: new orders are denied.",
            value=1 if live.feed_is_stale(market, at_ms=now_ms) else 0,
        )
        yield from (age, connected, stale)

    def _stream(self) -> Iterator:
        from marketdata import live

        beat = live.process_get()
        yield GaugeMetricFamily(
            "riskdesk_stream_up",
            "1 while the stream process's heartbeat is fresh.",
            value=1 if live.process_is_alive(beat) else 0,
        )
        if beat and beat.get("heartbeat_ms"):
            yield GaugeMetricFamily(
                "riskdesk_stream_heartbeat_age_seconds",
                "Seconds since the stream process's last heartbeat.",
                value=max(0, live.now_ms() - int(beat["heartbeat_ms"])) / 1000,
            )
        snapshot = cache.get(STREAM_KEY)
        for name, histogram in (snapshot or {}).get("histograms", {}).items():
            yield HistogramMetricFamily(
                name, histogram["doc"], buckets=[tuple(b) for b in histogram["buckets"]], sum_value=histogram["sum"]
            )

    def _gate(self) -> Iterator:
        # A counter: totals only grow (a cleared cache starts them again, which rate() handles).
        family = CounterMetricFamily(
            "riskdesk_gate_decisions",
            "Order-gate decisions by reason code, from the order log (a row with two codes counts twice).",
            labels=["decision", "reason"],
        )
        for key, count in sorted(gate_totals().items()):
            decision, reason = key.split("|", 1)
            family.add_metric([decision, reason], count)
        yield family

    def _deliveries(self) -> Iterator:
        from alerts.models import Delivery, DeliveryStatus

        counts = dict(Delivery.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        family = GaugeMetricFamily(
            "riskdesk_deliveries", "Notification deliveries by status (rows in the outbox).", labels=["status"]
        )
        for status in DeliveryStatus.values:
            family.add_metric([status], counts.get(status, 0))
        yield family

    def _alerts(self) -> Iterator:
        from alerts.models import Alert, AlertStatus, Level

        rows = (
            Alert.objects.filter(status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED])
            .values_list("level", "status")
            .annotate(n=Count("id"))
        )
        counts = {(level, status): n for level, status, n in rows}
        family = GaugeMetricFamily(
            "riskdesk_alerts_open", "Alerts not yet resolved, by level and status.", labels=["level", "status"]
        )
        for level in Level:
            for status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED):
                family.add_metric([level.name.lower(), status.value], counts.get((level.value, status.value), 0))
        yield family

    def _celery(self) -> Iterator:
        family = GaugeMetricFamily(
            "riskdesk_celery_queue_depth", "Tasks waiting in the broker for a worker.", labels=["queue"]
        )
        for queue, depth in celery_queue_depth().items():
            family.add_metric([queue], depth)
        yield family


# --- the view ---------------------------------------------------------------------------------


def may_scrape(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        # The figures say how busy the desk is, who trades and what fails: not for anyone.
        response = HttpResponse("metrics need a bearer token (METRICS_TOKEN) or a staff sign-in\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="riskdesk metrics"'
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeskCollector())
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
