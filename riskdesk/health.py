"""/health: does every server the desk needs answer? 200 if so, 503 if not.

Anyone may ask (load balancers, compose, uptime monitors), but only the status: which server is
down, its error text, the worker's heartbeat and the feed say how the desk is built and where to
push. Those details need staff or the HEALTH_TOKEN in an ``X-Health-Token`` header.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone

from riskdesk.celery import app as celery_app
from riskdesk.tasks import HEARTBEAT_KEY

PROBE_TIMEOUT_S = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_cache() -> None:
    key = f"riskdesk:health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not return what was written")
    cache.delete(key)


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        await asyncio.wait_for(layer.receive(channel), PROBE_TIMEOUT_S)

    async_to_sync(roundtrip)()


def check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_S)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, probe in CHECKS.items():
        started = time.perf_counter()
        try:
            probe()
            results[name] = {"ok": True}
        except Exception as exc:  # any failure means "down"; the type tells the operator why
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return results


def _feeds(*, cache_up: bool) -> dict:
    """The market feed as the stream engine last published it. A stale feed (or none at all) does
    not make the desk "down", but it is flagged: the order gate denies new orders meanwhile."""
    from marketdata import live

    market = live.feed_get("market") if cache_up else None
    stale = live.feed_is_stale(market)
    return {"stale": stale, "feeds": {"market": {**(market or {"connected": False}), "stale": stale}}}


def _stream(*, cache_up: bool) -> dict:
    """The stream process's beat (issue 14): a dead stream process is not "ok". It makes the
    desk "degraded", not "down": pages and the gate still answer, from stale state, failing closed."""
    from marketdata import live

    beat = live.process_get() if cache_up else None
    return {"alive": live.process_is_alive(beat), "heartbeat_ms": (beat or {}).get("heartbeat_ms")}


def may_see_details(request) -> bool:
    token = settings.HEALTH_TOKEN
    given = request.headers.get("X-Health-Token", "")
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def health(request):
    checks = run_checks()
    down = sorted(name for name, result in checks.items() if not result["ok"])
    stream = _stream(cache_up="cache" not in down)
    body = {
        "status": "down" if down else "ok" if stream["alive"] else "degraded",
        "down": down,
        "checks": checks,
        "worker_heartbeat": cache.get(HEARTBEAT_KEY) if "cache" not in down else None,
        "stream": stream,
        **_feeds(cache_up="cache" not in down),
        "time": timezone.now().isoformat(),
    }
    if not may_see_details(request):
        body = {"status": body["status"]}
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)
