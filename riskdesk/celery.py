from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")

app = Celery("riskdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["rules.allocation"])  # a package inside the rules app, not an app of its own

# Beat: periodic jobs. Later issues add exchange sync and reports here.
app.conf.beat_schedule = {
    "desk-concentration": {
        "task": "rules.tasks.desk_concentration_task",
        "schedule": float(os.environ.get("DESK_CONCENTRATION_EVERY_S", "30")),
        "options": {"expires": 25},
    },
    "worker-heartbeat": {"task": "riskdesk.tasks.heartbeat_task", "schedule": 15.0},
    # STREAM_DOWN within ~5 s of the beat lapsing (itself STREAM_STALE_AFTER_S after the last one).
    "watch-stream": {"task": "riskdesk.tasks.watch_stream_task", "schedule": 5.0, "options": {"expires": 4}},
    # alerts: both are idempotent sweeps, so unrun copies that piled up while no worker ran expire.
    "escalate-alerts": {"task": "alerts.tasks.escalate_alerts_task", "schedule": 15.0, "options": {"expires": 14}},
    "deliver-pending": {"task": "alerts.tasks.deliver_pending_task", "schedule": 10.0, "options": {"expires": 9}},
    "sync-positions": {
        "task": "marketdata.tasks.sync_positions_task",
        "schedule": float(os.environ.get("SYNC_POSITIONS_EVERY_S", "30")),
    },
    "refresh-symbols": {"task": "marketdata.tasks.refresh_symbols_task", "schedule": crontab(minute=5, hour=0)},
    "refresh-brackets": {"task": "marketdata.tasks.refresh_brackets_task", "schedule": crontab(minute=10, hour=0)},
    # anomaly detectors (rules.anomalies): baselines hourly, the API keys' permissions every 6 hours
    "anomaly-baselines": {"task": "rules.tasks.baselines_recompute_task", "schedule": crontab(minute=20)},
    "key-permissions": {"task": "rules.tasks.key_permissions_task", "schedule": crontab(minute=25, hour="*/6")},
    # history past its retention to the verified Parquet archive (positions/archive/, docs/ARCHIVE.md)
    "archive-history": {"task": "positions.tasks.archive_history_task", "schedule": crontab(minute=30, hour=1)},
    # desk VaR/ES and contributions, cached for /allocation/, the API and the overview (docs/ALLOCATION.md)
    "desk-var": {
        "task": "rules.allocation.tasks.risk_refresh_task",
        "schedule": float(os.environ.get("ALLOCATION_REFRESH_EVERY_S", "300")),
        "options": {"expires": 280},
    },
}
