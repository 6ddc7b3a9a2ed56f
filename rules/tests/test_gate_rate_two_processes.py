"""The order rate limit holds across two real uvicorn processes sharing one Redis.

Needs Redis and a database server both processes can reach (MariaDB in CI): the test commits
its users, accounts and profile, starts two `python -m uvicorn riskdesk.asgi:application`
processes on the test database, and fires orders at both from several threads at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from conftest import require_service
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish, sim_account

gate_env, exchange = fx.gate_env, fx.exchange  # pytest finds fixtures by name in the module

ROOT = Path(__file__).resolve().parents[2]
PER_MINUTE = 7
ORDERS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"mysql://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"


def _wait_up(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn on {port} exited: {process.stdout.read().decode()[-2000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/me/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"uvicorn on {port} did not come up")


@pytest.fixture
def two_servers(exchange):
    if not settings.REDIS_URL:
        require_service("REDIS_URL")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.mysql":
        require_service("DATABASE_URL")  # two processes cannot share the in-memory SQLite test database
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "BINANCE_FUTURES_REST_URL": settings.BINANCE_FUTURES_REST_URL,
        "BINANCE_FUTURES_WS_URL": settings.BINANCE_FUTURES_WS_URL,
        "STREAM_STALE_AFTER_S": "3600",  # the live state is written once, by the test
    }
    ports, processes = [_free_port(), _free_port()], []
    try:
        for port in ports:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "riskdesk.asgi:application",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        for port, process in zip(ports, processes, strict=True):
            _wait_up(port, process)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.django_db(transaction=True)
def test_the_rate_limit_holds_across_two_server_processes(trader_a, account_a, gate_env, exchange, two_servers):
    default_profile(order_rate_per_minute=PER_MINUTE)
    publish(account_a.id, positions=[long_btc()])
    headers = {"Authorization": f"Bearer {AccessToken.for_user(trader_a)}"}

    def fire(i: int) -> tuple[int, int, list[str]]:
        port = two_servers[i % 2]
        body = order_body(account_a.id, price=f"{40000 + i}.0", quantity="0.003")  # distinct resting buys, 120+ USDT
        response = requests.post(f"http://127.0.0.1:{port}/api/v1/orders", json=body, headers=headers, timeout=30)
        codes = [f["code"] for f in response.json().get("failures", [])]
        return port, response.status_code, codes

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fire, range(ORDERS)))
    admitted = [r for r in results if r[1] == 201]
    refused = [r for r in results if r[1] == 422]
    assert len(admitted) == PER_MINUTE, results
    assert len(refused) == ORDERS - PER_MINUTE and all(r[2] == ["RATE_PER_MINUTE"] for r in refused)
    assert {r[0] for r in results} == set(two_servers)  # both processes served (and counted) orders
    assert sim_account(exchange)["open_orders"] == PER_MINUTE  # only what passed reached the exchange
