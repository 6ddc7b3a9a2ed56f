"""Faults with every process running (issue 14, "The proof suite"): the stream process, a Celery
worker with beat and the web server, against the simulator and a private redis-server on a free port
(never the machine's Redis), all on MariaDB. Requests go over HTTP to the web server.

- A stale feed (the simulator's ``silent`` fault): new orders are denied with FEED_STALE, a cancel
  passes; the feed and the gate recover by themselves when the exchange speaks again.
- Redis stopped for 20 s: cancels and the kill switch work, new orders are denied
  (LIVE_STATE_UNAVAILABLE); after Redis returns, with nobody touching anything, new orders are
  allowed again and /health answers 200.
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from accounts import services as account_services
from conftest import require_service
from marketdata.simulator import SimulatorThread, build_config
from riskdesk.tests.chaos.desk import Desk, elapsed, needs_services, sim_post
from riskdesk.tests.private_redis import PrivateRedis
from rules.models import RiskProfile

REDIS_DOWN_S = 20
ORDERS = "/api/v1/orders"
DESK = {
    "accounts": [
        {
            "api_key": f"fault-key-{name}",
            "api_secret": f"fault-secret-{name}",
            "position_mode": "one-way",
            "wallet": {"USDT": "50000"},
            "positions": [],
        }
        for name in ("a", "b")
    ]
}


def _order(account_id: int, **overrides) -> dict:
    body = {"account": account_id, "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010"}
    return {**body, "price": "41000.0", **overrides}


def _codes(response) -> list[str]:
    return [f["code"] for f in response.json().get("failures", [])]


def _allowed(desk: Desk, account, user) -> bool:
    try:
        response = desk.api("POST", f"{ORDERS}/check", user, json=_order(account.id), timeout=3)
    except requests.RequestException:  # the server may still be coming back
        return False
    return response.status_code == 200 and response.json().get("allowed") is True


@pytest.mark.django_db(transaction=True)
def test_stale_feed_and_redis_down_keep_the_safety_controls(trader_a, trader_b, risk_manager, tmp_path):
    needs_services()
    if shutil.which("redis-server") is None:
        require_service("redis-server")
    RiskProfile.objects.create(name="faults", is_default=True)
    a, b = (
        account_services.account_create(
            name=f"fault-{n}", api_key=f"fault-key-{n}", api_secret=f"fault-secret-{n}", traders=[trader]
        )
        for n, trader in (("a", trader_a), ("b", trader_b))
    )
    redis = PrivateRedis()
    redis.start()
    config = build_config(accounts=DESK, marks={"BTCUSDT": "43000", "ETHUSDT": "3400"}, tick_interval_s=0.5)
    figures: dict[str, object] = {}
    with SimulatorThread(config) as sim:
        desk = Desk(sim, tmp_path, redis_url=redis.url)
        try:
            for name in ("streams", "worker", "web"):
                desk.start(name)
            desk.wait(lambda: _allowed(desk, a, trader_a) and _allowed(desk, b, trader_b), 60, "orders allowed")

            # --- a stale feed: nothing new, cancels pass
            placed = desk.api("POST", ORDERS, trader_a, json=_order(a.id))
            assert placed.status_code == 201, placed.text
            sim_post(sim, "fault", {"mode": "silent", "seconds": 30})
            started = time.monotonic()
            desk.wait(lambda: not _allowed(desk, a, trader_a), 15, "the feed to go stale")
            figures["stale_after_s"] = elapsed(started)
            denied = desk.api("POST", ORDERS, trader_a, json=_order(a.id, price="41500.0"))
            assert denied.status_code == 422 and "FEED_STALE" in _codes(denied), denied.text
            cancel = desk.api("DELETE", ORDERS, trader_a, params={"account": a.id, "symbol": "BTCUSDT"})
            assert cancel.status_code == 200 and cancel.json()["outcome"] == "cancelled", cancel.text
            requests.delete(f"{sim.base_url}/_sim/fault", timeout=5).raise_for_status()
            started = time.monotonic()
            desk.wait(lambda: _allowed(desk, a, trader_a), 15, "the feed to recover")
            figures["feed_recovered_s"] = elapsed(started)

            # --- Redis down for 20 s
            for price in ("41000.0", "40500.0"):
                assert desk.api("POST", ORDERS, trader_a, json=_order(a.id, price=price)).status_code == 201
                assert desk.api("POST", ORDERS, trader_b, json=_order(b.id, price=price)).status_code == 201
            redis.stop()
            down = time.monotonic()
            time.sleep(1)
            new = desk.api("POST", ORDERS, trader_a, json=_order(a.id, price="40000.0"))
            assert new.status_code == 422 and "LIVE_STATE_UNAVAILABLE" in _codes(new), new.text
            cancel = desk.api("DELETE", ORDERS, trader_a, params={"account": a.id, "symbol": "BTCUSDT"})
            assert cancel.status_code == 200 and cancel.json()["outcome"] == "cancelled", cancel.text
            kill = desk.api("POST", f"/api/v1/accounts/{b.id}/kill", risk_manager, json={"reason": "chaos drill"})
            assert kill.status_code == 200 and kill.json()["halted"] is True, kill.text
            assert kill.json()["remaining"]["open_orders"] == 0
            time.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - down)))
            again = desk.api("POST", ORDERS, trader_a, json=_order(a.id, price="40000.0"))
            assert again.status_code == 422, again.text  # still down at 20 s
            redis.start()
            back = time.monotonic()
            desk.wait(lambda: _allowed(desk, a, trader_a), 30, "new orders allowed after Redis returned")
            figures["orders_after_redis_s"] = elapsed(back)
            desk.wait(lambda: desk.api("GET", "/health", risk_manager).status_code == 200, 30, "/health 200")
            figures["health_after_redis_s"] = elapsed(back)
            assert not _allowed(desk, b, trader_b)  # the halt made while Redis was down holds
            assert desk.api("POST", ORDERS, trader_a, json=_order(a.id, price="40000.0")).status_code == 201
            for name, proc in desk.procs.items():
                assert proc.poll() is None, f"{name} died: {desk.logs[name].read_text()[-2000:]}"
        finally:
            desk.stop()
            redis.stop()
    print(f"\nfaults: {figures}")
