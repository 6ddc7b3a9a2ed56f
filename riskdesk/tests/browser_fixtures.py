"""A real desk for the browser tests (no tests here): the exchange simulator on loopback, a uvicorn
process serving riskdesk.asgi with the stream engine in-process (the embedded demo's shape) on a
file SQLite database seeded with the demo desk, and headless Debian Chromium driven by Playwright.

The server is its own process with its own database and file cache (RISKDESK_VAR_DIR in a temp
dir), so nothing here touches the pytest database or CI's Redis: the browser sees exactly what a
person running scripts/demo sees.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from marketdata.simulator import SimulatorThread, build_config

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RISKDESK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "riskdesk-demo"  # accounts/management/commands/seed_demo.py
MARKS = {"BTCUSDT": "50000", "ETHUSDT": "2500"}

# seed_demo's accounts sign with demo-key-1..4; small positions so every figure is easy to read.
ACCOUNTS = {
    "accounts": [
        {  # alpha-btc-20x (alice)
            "api_key": "demo-key-1",
            "api_secret": "demo-secret-1",
            "wallet": {"USDT": "3000"},
            "positions": [{"symbol": "BTCUSDT", "side": "BOTH", "qty": "0.5", "entry_price": "49000", "leverage": 20}],
        },
        {  # alpha-eth (alice)
            "api_key": "demo-key-2",
            "api_secret": "demo-secret-2",
            "wallet": {"USDT": "8000"},
            "positions": [{"symbol": "ETHUSDT", "side": "BOTH", "qty": "4", "entry_price": "2450", "leverage": 10}],
        },
        {  # beta-hedge (bob)
            "api_key": "demo-key-3",
            "api_secret": "demo-secret-3",
            "position_mode": "hedge",
            "wallet": {"USDT": "6000"},
            "positions": [
                {"symbol": "BTCUSDT", "side": "LONG", "qty": "0.2", "entry_price": "48000", "leverage": 10},
                {"symbol": "BTCUSDT", "side": "SHORT", "qty": "0.1", "entry_price": "51000", "leverage": 10},
            ],
        },
        {  # gamma-isolated (nobody's: risk managers and viewers only)
            "api_key": "demo-key-4",
            "api_secret": "demo-secret-4",
            "wallet": {"USDT": "5000"},
            "positions": [{"symbol": "ETHUSDT", "side": "BOTH", "qty": "-3", "entry_price": "2550", "leverage": 10}],
        },
    ]
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DeskServer:
    """One uvicorn process; stop() and start() again on the same port simulate a server restart."""

    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "riskdesk.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.port), "--lifespan", "on", "--log-level", "warning",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/login/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"uvicorn did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@dataclass
class LiveDesk:
    server: DeskServer
    sim: SimulatorThread
    account_ids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def set_mark(self, symbol: str, price: str) -> None:
        self.sim.call(lambda s: s.set_marks({symbol: Decimal(price)}))

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.server.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        return result.stdout


def _server_env(var: Path, sim: SimulatorThread) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY=os.environ.get("SECRET_KEY", "browser-test-secret-key"),
        FIELD_ENCRYPTION_KEY=os.environ.get("FIELD_ENCRYPTION_KEY", "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE="),
        RISKDESK_VAR_DIR=str(var),
        DATABASE_URL=f"sqlite:///{var / 'desk.sqlite3'}",
        REDIS_URL="",  # embedded: file cache and in-memory channel layer, as scripts/demo runs
        STREAMS_IN_PROCESS="true",
        BINANCE_FUTURES_REST_URL=sim.base_url,
        BINANCE_FUTURES_WS_URL=sim.ws_url,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SERVE_STATIC="true",
    )
    return env


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        from conftest import require_service

        require_service(f"Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def live_desk(tmp_path_factory) -> Iterator[LiveDesk]:
    _require_chromium()
    var = tmp_path_factory.mktemp("desk")
    sim = SimulatorThread(build_config(accounts=ACCOUNTS, marks=MARKS, tick_interval_s=0.2))
    sim.start()
    server = DeskServer(_server_env(var, sim), free_port(), var / "uvicorn.log")
    desk = LiveDesk(server, sim)
    try:
        desk.manage("migrate", "--no-input")
        desk.manage("seed_demo")
        desk.manage(
            "shell", "-c",
            "from accounts import services; "
            f"services.user_create(username='outsider', password='{PASSWORD}', role='none')",
        )  # fmt: skip
        ids = desk.manage(
            "shell", "-c",
            "import json; from accounts.models import ExchangeAccount as A; "
            "print(json.dumps(dict(A.objects.values_list('name', 'id'))))",
        )  # fmt: skip
        desk.account_ids = json.loads(ids.strip().splitlines()[-1])
        server.start()
        yield desk
    finally:
        server.stop()
        sim.stop()
        if os.environ.get("RISKDESK_KEEP_BROWSER_LOGS") != "1":
            shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _require_chromium()  # the browser fixture may be set up before the desk: skip here too, not error
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class ConsoleErrors:
    """Console errors and uncaught page errors; `allow_while` excuses a known outage window."""

    def __init__(self) -> None:
        self.errors: list[tuple[float, str]] = []
        self.excused: list[tuple[float, float]] = []

    def attach(self, page) -> None:
        page.on("console", lambda m: m.type == "error" and self.errors.append((time.monotonic(), m.text)))
        page.on("pageerror", lambda e: self.errors.append((time.monotonic(), f"pageerror: {e}")))

    def unexpected(self) -> list[str]:
        return [text for at, text in self.errors if not any(a <= at <= b for a, b in self.excused)]


@pytest.fixture
def console() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def open_page(browser, live_desk, console):
    """A fresh browser context (own cookies) per user; every page's console is watched."""
    contexts = []

    def make(username: str | None, *, locale: str = "en-US", timezone_id: str = "UTC"):
        context = browser.new_context(locale=locale, timezone_id=timezone_id, viewport={"width": 1440, "height": 900})
        contexts.append(context)
        page = context.new_page()
        console.attach(page)
        if username is not None:
            sign_in(page, live_desk.url, username)
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.unexpected() == [], console.unexpected()


def sign_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    wait_live(page)


def wait_live(page, timeout_ms: float = 15000) -> None:
    """The page's socket is open (the indicator says live)."""
    page.wait_for_selector('#conn[data-state="live"]', timeout=timeout_ms)
