"""Issue 17 item 2 with real processes: `manage.py run_streams` arms the exchange's dead-man switch
(countdownCancelAll) for an account with an open order; SIGKILL it and the simulator cancels the
order once the countdown runs out; the next stream process raises DEADMAN_FIRED. On MariaDB and
Redis (the processes share the database and the cache). A 3 s countdown renewed every second."""

from __future__ import annotations

import os
import signal
import time

import pytest

from accounts import services as account_services
from alerts.models import Alert
from marketdata.simulator import SimulatorThread, build_config
from riskdesk.tests.test_liquidation_end_to_end import _child_env, _start, _stop, _wait
from riskdesk.tests.test_stream_process_liveness import _needs_services
from rules.models import RiskProfile

COUNTDOWN_S = 3
ACCOUNTS = {
    "accounts": [
        {
            "api_key": "dm-key",
            "api_secret": "dm-secret",
            "position_mode": "one-way",
            "wallet": {"USDT": "10000"},
            "positions": [],
        }
    ]
}


@pytest.fixture
def sim():
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000", "ETHUSDT": "3400"}, tick_interval_s=1.0)
    with SimulatorThread(config) as thread:
        yield thread


def _place(sim: SimulatorThread) -> None:
    params = {
        "symbol": "ETHUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.010",
        "price": "3000.00",
        "timeInForce": "GTC",
        "newClientOrderId": "dm-resting-1",
    }
    sim.call(lambda s: s.exchange.place_order(s.exchange.accounts["dm-key"], params))


def _open(sim: SimulatorThread) -> int:
    return sim.call(lambda s: len(s.exchange.accounts["dm-key"].orders))


def _armed(sim: SimulatorThread) -> bool:
    return sim.call(lambda s: ("dm-key", "ETHUSDT") in s.exchange._countdowns)


@pytest.mark.django_db(transaction=True)
def test_sigkill_the_stream_process_and_the_exchange_cancels_then_the_next_process_raises_deadman_fired(sim, tmp_path):
    _needs_services()
    RiskProfile.objects.create(name="dm", is_default=True)
    account = account_services.account_create(name="dm", api_key="dm-key", api_secret="dm-secret")
    from django.core.cache import cache

    cache.delete("live:deadman")
    _place(sim)
    env = {**_child_env(sim), "DEADMAN_COUNTDOWN_S": str(COUNTDOWN_S), "DEADMAN_RENEW_S": "1"}
    logs = [tmp_path / "streams-1.log", tmp_path / "streams-2.log"]
    first = _start(["manage.py", "run_streams", "--no-refresh"], env, logs[0])
    second = None
    try:
        _wait(lambda: _armed(sim), 60, "the countdown armed", [first], [logs[0]])
        # Renewed while the process lives: past two countdowns the order still rests.
        time.sleep(2 * COUNTDOWN_S)
        assert _open(sim) == 1 and _armed(sim)
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.wait(10)
        while _open(sim) and time.monotonic() - killed < COUNTDOWN_S + 5:
            time.sleep(0.1)
        took = time.monotonic() - killed
        assert _open(sim) == 0, "the simulator did not cancel the open order"
        assert took <= COUNTDOWN_S + 1.5, took
        print(f"\nSIGKILL: the exchange cancelled the open order {took:.2f} s later (countdown {COUNTDOWN_S} s)")
        second = _start(["manage.py", "run_streams", "--no-refresh"], env, logs[1])
        _wait(
            lambda: Alert.objects.filter(account=account, reason_code="DEADMAN_FIRED").exists(),
            60,
            "DEADMAN_FIRED",
            [second],
            [logs[1]],
        )
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
    alert = Alert.objects.get(account=account, reason_code="DEADMAN_FIRED")
    assert alert.subject == "ETHUSDT" and alert.level == 30
    assert alert.details["count"] == 1 and alert.details["confirmed"] == 1
    assert alert.details["orders"][0]["client_order_id"] == "dm-resting-1"
    assert alert.details["orders"][0]["status"] == "CANCELED"
    assert "dead-man" in alert.message
