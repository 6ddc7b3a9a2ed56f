from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "riskdesk:worker-heartbeat"


@shared_task
def heartbeat_task() -> str:
    """Proves end to end that beat schedules, the broker carries and a worker runs."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=300)
    return now
