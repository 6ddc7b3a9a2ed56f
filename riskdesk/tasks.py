from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

HEARTBEAT_KEY = "riskdesk:worker-heartbeat"
STREAM_DOWN_RULE, STREAM_DOWN_SUBJECT = "stream_down", "streams"


@shared_task
def heartbeat_task() -> str:
    """Proves end to end that beat schedules, the broker carries and a worker runs."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=300)
    return now


@shared_task
def watch_stream_task() -> bool:
    """The stream process's beat (marketdata.live.process_is_alive), checked from beat by a worker:
    missing, a STREAM_DOWN emergency to every channel (the desk is blind: no marks, no account
    events, no limit alerts); back, the alert resolves. Idempotent: a steady state writes nothing.
    Returns whether the stream process is alive."""
    from alerts import services as alert_services
    from alerts.models import Level
    from marketdata import live

    beat = live.process_get()
    alive = live.process_is_alive(beat)
    with transaction.atomic():
        if alive:
            alert_services.alert_clear(account_id=None, rule=STREAM_DOWN_RULE, subject=STREAM_DOWN_SUBJECT)
            return True
        params = {"heartbeat_ms": (beat or {}).get("heartbeat_ms")}
        alert_services.alert_raise(
            account_id=None,
            rule=STREAM_DOWN_RULE,
            subject=STREAM_DOWN_SUBJECT,
            level=Level.EMERGENCY,
            reason_code="STREAM_DOWN",
            value=None,
            limit=None,
            mark_price=None,
            details={"heartbeat": beat},
            message_code="stream_down",
            message_params=params,
            every_channel=True,
        )
    return False
