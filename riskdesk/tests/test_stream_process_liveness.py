"""Issue 15 with real processes: `manage.py run_streams` against the simulator, on MariaDB and Redis.

- SIGKILL: nothing the dead process said stays true. Every account is stale within
  STREAM_STALE_AFTER_S + 1 s, and the gate answers ACCOUNT_STATE_STALE as well as FEED_STALE.
- SIGTERM: every feed is marked stale and the beat withdrawn at once; the log has no ERROR and no
  traceback (it had "cannot schedule new futures after interpreter shutdown")."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.db import connection

from accounts import services as account_services
from conftest import require_service
from marketdata import live
from marketdata.simulator import SimulatorThread, build_config
from riskdesk.tests.test_liquidation_end_to_end import _child_env, _start, _stop, _wait
from rules import gate
from rules.models import RiskProfile

N_ACCOUNTS = 3
ACCOUNTS = {
    "accounts": [
        {
            "api_key": f"live-key-{i}",
            "api_secret": f"live-secret-{i}",
            "position_mode": "one-way",
            "wallet": {"USDT": "10000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "BOTH",
                    "qty": "0.1",
                    "entry_price": "43000",
                    "leverage": 5,
                    "margin_type": "cross",
                }
            ]
            if i == 0
            else [],
        }
        for i in range(N_ACCOUNTS)
    ]
}


def _accounts():
    RiskProfile.objects.create(name="live", is_default=True, breach_after_n=2)
    return [
        account_services.account_create(name=f"live-{i}", api_key=f"live-key-{i}", api_secret=f"live-secret-{i}")
        for i in range(N_ACCOUNTS)
    ]


def _all_live(accounts) -> bool:
    fresh = live.process_is_alive(live.process_get()) and not live.feed_is_stale(live.feed_get("market"))
    return fresh and all(
        (live.feed_get(f"user:{a.id}") or {}).get("connected") and live.account_get(a.id) for a in accounts
    )


def _stale_reasons(accounts) -> dict[int, list[str]]:
    return {a.id: gate.account_risk(account=a)["stale_reasons"] for a in accounts}


def _needs_services():
    if not settings.REDIS_URL:
        require_service("REDIS_URL")  # the stream process and this test share the cache
    if connection.vendor != "mysql":
        require_service("DATABASE_URL")


@pytest.fixture
def sim():
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000", "ETHUSDT": "3400"}, tick_interval_s=1.0)
    with SimulatorThread(config) as thread:
        yield thread


@pytest.mark.django_db(transaction=True)
def test_sigkill_leaves_every_account_stale_within_the_limit_and_the_gate_denies(sim, tmp_path):
    _needs_services()
    accounts = _accounts()
    log = tmp_path / "streams.log"
    streams = _start(["manage.py", "run_streams", "--no-refresh"], _child_env(sim), log)
    try:
        _wait(lambda: _all_live(accounts), 60, "every account live", [streams], [log])
        assert all(not reasons for reasons in _stale_reasons(accounts).values()), _stale_reasons(accounts)
        os.killpg(streams.pid, signal.SIGKILL)
        killed = time.monotonic()
        streams.wait(10)
        limit_s = settings.STREAM_STALE_AFTER_S + 1
        while time.monotonic() - killed < limit_s:
            reasons = _stale_reasons(accounts)
            beat = live.process_is_alive(live.process_get())
            if not beat and all("ACCOUNT_STATE_STALE" in r and "FEED_STALE" in r for r in reasons.values()):
                break
            time.sleep(0.1)
        took = time.monotonic() - killed
        reasons = _stale_reasons(accounts)
        assert all("ACCOUNT_STATE_STALE" in r and "FEED_STALE" in r for r in reasons.values()), (took, reasons)
        print(f"\nSIGKILL: every account stale after {took:.2f} s (limit {limit_s} s)")
        assert all(not gate.account_risk(account=a)["user_stream_connected"] for a in accounts)
        assert not live.process_is_alive(live.process_get())
    finally:
        _stop(streams)


@pytest.mark.django_db(transaction=True)
def test_sigterm_marks_every_feed_stale_at_once_and_logs_no_error(sim, tmp_path):
    _needs_services()
    accounts = _accounts()
    log = tmp_path / "streams.log"
    streams = _start(["manage.py", "run_streams", "--no-refresh"], _child_env(sim), log)
    try:
        _wait(lambda: _all_live(accounts), 60, "every account live", [streams], [log])
        time.sleep(2)  # a few flushes, persistence and beats in flight
        os.killpg(streams.pid, signal.SIGTERM)
        assert streams.wait(30) == 0, log.read_text()[-3000:]
    finally:
        _stop(streams)
    text = log.read_text()
    assert "ERROR" not in text and "Traceback" not in text, text[-3000:]
    assert "cannot schedule new futures" not in text
    assert live.process_get() is None
    assert live.feed_is_stale(live.feed_get("market"))
    for a in accounts:
        feed = live.feed_get(f"user:{a.id}")
        assert feed is None or (feed["stale"] and not feed["connected"])
        assert not gate.account_risk(account=a)["user_stream_connected"]
    assert "FEED_STALE" in gate.account_risk(account=accounts[0])["stale_reasons"]
    assert D(gate.account_risk(account=accounts[0])["stale_after_s"]) == D(str(settings.STREAM_STALE_AFTER_S))
