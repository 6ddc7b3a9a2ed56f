"""A real Celery worker SIGKILLed in the middle of a delivery: nothing is lost (the lease
runs out and a new worker takes the row over) and the receiver, de-duplicating by the
idempotency key, accepts the delivery exactly once.

The workers and this test share the test database but not the broker: they talk through a
filesystem broker in tmp_path, so no other worker on the developer's Redis can take the
messages. The broker is not what is under test; the outbox rows are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.utils import timezone

from alerts.models import Delivery, DeliveryStatus, Level
from conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 4

pytestmark = pytest.mark.django_db(transaction=True)


def worker_env(tmp_path: Path) -> dict[str, str]:
    """The test database (not the one DATABASE_URL names) and a broker of this test's own."""
    env = {**os.environ, "CELERY_BROKER_URL": "filesystem://", "RISKDESK_VAR_DIR": str(tmp_path / "var")}
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            # A worker process cannot open the in-memory SQLite test database; CI runs this on MariaDB.
            require_service("DATABASE_URL (MariaDB): the embedded test database is in memory")
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        env["DATABASE_URL"] = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path=f"/{name}"))
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "riskdesk", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def send_task(env: dict[str, str], name: str, *args: int) -> None:
    """Publish on the workers' broker, with the same settings they read (celery's own CLI)."""
    command = [sys.executable, "-m", "celery", "-A", "riskdesk", "call", name, "--args", json.dumps(list(args))]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_a_worker_killed_mid_delivery_is_replaced_and_the_receiver_accepts_it_once(
    tmp_path, make_channel, receiver, account_a, breach
):
    env = worker_env(tmp_path)
    receiver.hold_first = True  # the receiver takes the first request in and never answers it
    options = {"url": f"{receiver.url}/hook", "timeout_s": LEASE_S - 1, "lease_s": LEASE_S}
    make_channel("webhook", options=options, signing_secret="whsec")

    first = start_worker(env, tmp_path / "worker-1.log")
    try:
        breach(account_a, level=Level.CRITICAL)  # committed, with its outbox row
        delivery = Delivery.objects.get()
        send_task(env, "alerts.tasks.deliver_delivery_task", delivery.pk)  # the on-commit hand-off's message
        assert receiver.first_arrived.wait(60), (tmp_path / "worker-1.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=20)
    finally:
        stop(first)
    receiver.release.set()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENDING, 1)  # the dead worker's claim

    second = start_worker(env, tmp_path / "worker-2.log")
    try:
        # What beat does every 10 s; the row is due for takeover once the dead worker's lease runs out.
        lease_over = delivery.claimed_at + timedelta(seconds=LEASE_S)
        time.sleep(max((lease_over - timezone.now()).total_seconds(), 0) + 0.2)
        send_task(env, "alerts.tasks.deliver_pending_task")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and delivery.status != DeliveryStatus.SENT:
            assert second.poll() is None, (tmp_path / "worker-2.log").read_text()
            time.sleep(0.2)
            delivery.refresh_from_db()
    finally:
        stop(second)

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2), (tmp_path / "worker-2.log").read_text()
    key = str(delivery.idempotency_key)
    assert [r.key for r in receiver.requests] == [key, key]  # the cut-off request and its retry, same key
    assert receiver.accepted == [key]  # accepted once; the retry was acknowledged as a duplicate
