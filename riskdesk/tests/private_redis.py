"""A private redis-server for tests that stop Redis: never the machine's own (CI shares it).

``redis_outage`` starts one on a free port with no persistence, points the cache, the channel
layer and the order gate at it (riskdesk.redis_clients, as settings.py does with REDIS_URL), and
hands the test ``stop()`` / ``start()``. Works on the embedded SQLite run too: only the
redis-server binary is needed (skipped without it, a failure in CI).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from conftest import require_service
from riskdesk import redis_clients

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not listen on {self.port} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def redis_outage(settings):
    """A private Redis behind the cache, the channel layer and the gate; stop() it to test an outage."""
    if shutil.which("redis-server") is None:
        require_service("redis-server")
    from rules import gate

    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": redis_clients.cache_config(server.url)}
    settings.CHANNEL_LAYERS = {"default": redis_clients.channel_layer_config(server.url)}
    gate.store_reset()
    try:
        yield server
    finally:
        server.stop()
        gate.store_reset()
