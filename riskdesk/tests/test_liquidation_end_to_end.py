"""A liquidation, end to end, with the parts production runs: the simulator replaying the real
2021-05-19 crash, `manage.py run_streams` as its own process, a Celery worker, MariaDB and Redis.

A 20x long BTC account (0.5 BTC @ 43,000 on a 5,000 USDT wallet) is liquidated by the exchange at
about 12:55 replay time. Before it, the desk raises the near-liquidation alert and proposes the
profile's action. After it, the desk must:
- raise a LIQUIDATED emergency within 2 s of the exchange's event, to the channel;
- have the Position row gone and the closed position kept with its realized loss;
- resolve the near-liquidation alert as `liquidated` (never "cleared") and expire the action;
- send no notification about that position after its liquidation, but the LIQUIDATED one.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts import services as account_services
from alerts.models import Alert, Delivery, Level, NotificationChannel
from alerts.outbox import channel_set_secrets
from conftest import require_service
from marketdata import live
from marketdata.simulator import SimulatorThread, build_config
from positions.models import Position
from rules.models import RiskAction, RiskProfile

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "marketdata/data"
SUBJECT = "BTCUSDT:BOTH"
ACCOUNT = {
    "accounts": [
        {
            "api_key": "e2e-key-1",
            "api_secret": "e2e-secret-1",
            "position_mode": "one-way",
            "wallet": {"USDT": "5000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "BOTH",
                    "qty": "0.5",
                    "entry_price": "43000",
                    "leverage": 20,
                    "margin_type": "cross",
                }
            ],
        }
    ]
}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """The webhook's receiving end: the network edge, on loopback."""

    received: list[tuple[float, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Recorder.received.append((time.time(), json.loads(body or b"{}")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    _Recorder.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _child_env(sim: SimulatorThread) -> dict[str, str]:
    """The test database and Redis db, seen from the processes the test starts."""
    db = connection.settings_dict
    env = os.environ.copy()
    env.update(
        DATABASE_URL=f"mysql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        BINANCE_FUTURES_REST_URL=sim.base_url,
        BINANCE_FUTURES_WS_URL=sim.ws_url,
        STREAM_STALE_AFTER_S="5",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait(condition, timeout_s: float, what: str, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for proc, log in zip(procs, logs, strict=True):
            assert proc.poll() is None, f"{log.name} exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def _liquidation_ms(sim: SimulatorThread) -> int | None:
    def find(s):
        orders = [o for orders in s.exchange.history.values() for o in orders if o.type == "LIQUIDATION"]
        return min((o.time_ms for o in orders), default=None)

    return sim.call(find)


@pytest.mark.django_db(transaction=True)
def test_a_liquidation_is_raised_recorded_and_closes_what_it_ended(webhook, tmp_path):
    if not settings.REDIS_URL:
        require_service("REDIS_URL")  # the stream process and the worker share the cache and broker
    if connection.vendor != "mysql":
        require_service("DATABASE_URL")  # ... and the database: an in-memory one cannot be shared
    account = account_services.account_create(name="e2e-btc-20x", api_key="e2e-key-1", api_secret="e2e-secret-1")
    RiskProfile.objects.create(
        name="e2e",
        is_default=True,
        liq_distance_warning=D("0.15"),
        liq_distance_critical=D("0.05"),
        breach_after_n=2,
        hysteresis=D("0.02"),
        auto_action="reduce_positions",
        auto_action_mode="propose",
    )
    channel = NotificationChannel(name="e2e hook", kind="webhook", min_level=Level.WARNING, settings={"url": webhook})
    channel_set_secrets(channel=channel, signing_secret="e2e-signing-secret")
    channel.save()
    config = build_config(
        accounts=ACCOUNT,
        replay=[str(DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv")],
        speed=120.0,
        tick_interval_s=0.05,
        start_at="12:25",
        loop_replay=False,
    )
    live.resync_take()  # nothing left over from another test
    with SimulatorThread(config) as sim:
        requests.post(f"{sim.base_url}/_sim/replay", json={"paused": True}, timeout=5).raise_for_status()
        env = _child_env(sim)
        logs = [tmp_path / "streams.log", tmp_path / "worker.log"]
        streams = _start(["manage.py", "run_streams"], env, logs[0])
        worker = _start(
            ["-m", "celery", "-A", "riskdesk", "worker", "--pool", "solo", "--loglevel", "WARNING"], env, logs[1]
        )
        procs = [streams, worker]
        try:
            _wait(
                lambda: (
                    Position.objects.filter(account=account).exists()
                    and (live.feed_get(f"user:{account.id}") or {}).get("connected")
                ),
                60,
                "the stream process to sync the account",
                procs,
                logs,
            )
            requests.post(f"{sim.base_url}/_sim/replay", json={"paused": False}, timeout=5).raise_for_status()
            _wait(lambda: _liquidation_ms(sim) is not None, 90, "the exchange to liquidate", procs, logs)
            liquidated_ms = _liquidation_ms(sim)
            _wait(
                lambda: Alert.objects.filter(account=account, reason_code="LIQUIDATED").exists(),
                10,
                "the LIQUIDATED alert",
                procs,
                logs,
            )
            _wait(
                lambda: Delivery.objects.filter(alert__reason_code="LIQUIDATED", status="sent").exists(),
                20,
                "the LIQUIDATED notification to be sent",
                procs,
                logs,
            )
            time.sleep(3)  # anything late would show up now
        finally:
            for proc in procs:
                _stop(proc)

    liquidated_at = datetime.fromtimestamp(liquidated_ms / 1000, tz=UTC)
    [emergency] = Alert.objects.filter(account=account, reason_code="LIQUIDATED")
    assert emergency.level == Level.EMERGENCY and emergency.subject == SUBJECT
    raised_after_s = (emergency.opened_at - liquidated_at).total_seconds()
    print(f"LIQUIDATED raised {raised_after_s * 1000:.0f} ms after the exchange's liquidation")  # -s shows it
    assert raised_after_s <= 2.0
    assert emergency.status == "open" and not emergency.resolution  # only a person resolves it
    assert D(emergency.details["realized_pnl"]) < 0
    assert D(emergency.details["last_liquidation_price"]) > 0

    # Rows follow the exchange: the position is gone, its closing kept with the realized loss.
    assert not Position.objects.filter(account=account).exclude(quantity=0).exists()
    from positions.models import ClosedPosition

    [closed] = ClosedPosition.objects.filter(account=account)
    assert closed.reason == "liquidated" and closed.realized_pnl < 0

    # The near-liquidation alert ended for the right reason; the proposed action expired.
    near = Alert.objects.get(account=account, rule="liq_distance", subject=SUBJECT)
    assert near.status == "resolved" and near.resolution == "liquidated"
    action = RiskAction.objects.get(account=account)
    assert action.status == "expired"

    # Nothing about the position went out once the desk knew of the liquidation, and nothing
    # raised after the exchange's event went out at all (the margin call and criticals that race
    # the liquidation wait ALERT_POSITION_SETTLE_S and are skipped), but the LIQUIDATED alert.
    about = Delivery.objects.filter(alert__account=account, alert__subject=SUBJECT).exclude(alert=emergency)
    story = [
        (d.alert.rule, d.event, d.level, d.status, d.created_at.isoformat(), d.sent_at and d.sent_at.isoformat())
        for d in about.select_related("alert")
    ]
    assert not about.filter(sent_at__gt=emergency.opened_at).exists(), (liquidated_at.isoformat(), story)
    assert not about.filter(created_at__gt=liquidated_at, status="sent").exists(), (liquidated_at.isoformat(), story)
    texts = [json.dumps(body) for at, body in _Recorder.received if at > liquidated_ms / 1000]
    assert any("LIQUIDATED" in text for text in texts)
