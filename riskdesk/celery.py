from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")

app = Celery("riskdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat: periodic jobs. Later issues add exchange sync and reports here.
app.conf.beat_schedule = {
    "worker-heartbeat": {"task": "riskdesk.tasks.heartbeat_task", "schedule": 15.0},
}
