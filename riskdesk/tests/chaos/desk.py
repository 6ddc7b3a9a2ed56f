"""The chaos suite's parts (issue 14, "The proof suite"): real processes around the simulator.

- ``Receiver``: the webhook's receiving end on loopback; it records every POST with its
  ``Idempotency-Key`` header, so a test can count deliveries per key.
- ``Desk``: ``manage.py run_streams``, a Celery worker with beat, and the web server (uvicorn on
  ``riskdesk.asgi:application``), each in its own process group so a test can SIGKILL one and
  start it again. They share the test's MariaDB database and a Redis (the CI one, or a private
  ``redis-server`` from riskdesk/tests/private_redis.py).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from conftest import require_service
from riskdesk.tests.private_redis import free_port
from riskdesk.tests.test_liquidation_end_to_end import _child_env, _start, _stop, _wait


def needs_services() -> None:
    if not settings.REDIS_URL:
        require_service("REDIS_URL")
    if connection.vendor != "mysql":
        require_service("DATABASE_URL")  # the processes share the test's database


class Receiver:
    """A webhook endpoint that answers 200 and records (Idempotency-Key, body) per POST."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((self.headers.get("Idempotency-Key") or "", json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def per_key(self) -> Counter:
        return Counter(key for key, _body in self.received)

    def close(self) -> None:
        self.server.shutdown()


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


class Desk:
    """The desk's processes against one simulator; ``kill(name)`` SIGKILLs one, ``start(name)`` restarts it."""

    COMMANDS = {
        "streams": ["manage.py", "run_streams"],
        "worker": ["-m", "celery", "-A", "riskdesk", "worker", "-B", "--pool", "solo", "--loglevel", "WARNING"],
    }

    def __init__(self, sim, tmp_path: Path, *, redis_url: str | None = None) -> None:
        self.env = _child_env(sim)
        if redis_url:
            self.env.update(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
        self.env["RISKDESK_VAR_DIR"] = str(tmp_path / "var")
        self.env["CELERY_BEAT_SCHEDULE_FILENAME"] = str(tmp_path / "beat-schedule")
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.starts: Counter = Counter()

    def command(self, name: str) -> list[str]:
        if name == "web":
            port = str(self.web_port)
            return ["-m", "uvicorn", "riskdesk.asgi:application", "--port", port, "--log-level", "warning"]
        if name == "worker":
            beat_file = str(self.tmp_path / f"beat-{self.starts[name]}")
            return [*self.COMMANDS[name], "--schedule", beat_file]
        return self.COMMANDS[name]

    def start(self, name: str) -> None:
        self.starts[name] += 1
        log = self.tmp_path / f"{name}-{self.starts[name]}.log"
        self.logs[name] = log
        self.procs[name] = _start(self.command(name), self.env, log)
        if name == "web":
            self.wait(self.web_answers, 60, "the web server")

    def web_answers(self) -> bool:
        try:
            return requests.get(f"{self.web_url}/health", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def wait(self, condition, timeout_s: float, what: str) -> None:
        names = list(self.procs)
        _wait(condition, timeout_s, what, [self.procs[n] for n in names], [self.logs[n] for n in names])

    def stop(self) -> None:
        for proc in self.procs.values():
            _stop(proc)

    def api(self, method: str, path: str, user, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return requests.request(method, f"{self.web_url}{path}", headers=bearer(user), **kwargs)


def sim_post(sim, path: str, body: dict) -> None:
    requests.post(f"{sim.base_url}/_sim/{path}", json=body, timeout=5).raise_for_status()


def elapsed(started: float) -> float:
    return round(time.monotonic() - started, 2)
