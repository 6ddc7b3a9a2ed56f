"""A real Celery worker, on the configured broker (Redis in CI, the filesystem transport
embedded), runs what beat schedules."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from riskdesk.tasks import HEARTBEAT_KEY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker():
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "riskdesk", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    proc.terminate()
    proc.wait(timeout=20)


def test_a_worker_runs_the_heartbeat_task_from_the_broker(worker):
    from riskdesk.tasks import heartbeat_task

    cache.delete(HEARTBEAT_KEY)
    heartbeat_task.delay()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cache.get(HEARTBEAT_KEY) is None:
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.2)
    assert cache.get(HEARTBEAT_KEY) is not None
