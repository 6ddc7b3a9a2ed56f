"""Beat runs on django-celery-beat's database (report schedules in the admin) and the fixed jobs
of riskdesk/celery.py come along with their expiry."""

from __future__ import annotations

import pytest
from django.conf import settings
from django_celery_beat.models import PeriodicTask

from riskdesk.beat import DeskScheduler
from riskdesk.celery import app


# transaction=True: django-celery-beat's scheduler closes old connections as it works, which on
# MariaDB ends a test's enclosing transaction (SQLite's in-memory connection never closes).
@pytest.mark.django_db(transaction=True)
def test_the_fixed_jobs_are_copied_in_with_their_expiry():
    assert settings.CELERY_BEAT_SCHEDULER == "riskdesk.beat:DeskScheduler"
    DeskScheduler(app=app, lazy=True).update_from_dict(app.conf.beat_schedule)
    watch = PeriodicTask.objects.get(name="watch-stream")
    assert watch.task == "riskdesk.tasks.watch_stream_task" and watch.interval.every == 5
    assert watch.expire_seconds == 4
    assert PeriodicTask.objects.get(name="escalate-alerts").expire_seconds == 14
    assert PeriodicTask.objects.get(name="sync-positions").expire_seconds is None
