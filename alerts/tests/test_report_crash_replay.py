"""A report over the crash replay shows the liquidation, the drawdown and the denials (issue 16,
"Correct to the cent"), with the parts production runs: the simulator replaying 2021-05-19,
`manage.py run_streams` as its own process, MariaDB and Redis (the setup of
riskdesk/tests/test_liquidation_end_to_end.py). While BTC falls, a trader's oversized order is
denied by the gate; the exchange then liquidates the 20x account."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts import services as account_services
from alerts.models import ReportPeriod
from alerts.reports import services
from conftest import require_service
from marketdata import live
from marketdata.simulator import SimulatorThread, build_config
from positions.models import AccountSnapshot, Position
from riskdesk.tests.test_liquidation_end_to_end import ACCOUNT, DATA, _child_env, _liquidation_ms, _start, _stop, _wait
from rules.models import RiskProfile


@pytest.mark.django_db(transaction=True)
def test_a_report_over_the_crash_replay_shows_the_liquidation_the_drawdown_and_the_denials(
    tmp_path, api_for, risk_manager
):
    if not settings.REDIS_URL:
        require_service("REDIS_URL")  # the stream process publishes marks the gate reads
    if connection.vendor != "mysql":
        require_service("DATABASE_URL")  # ... and writes snapshots to the database the report reads
    began = timezone.now()
    account = account_services.account_create(name="crash-20x", api_key="e2e-key-1", api_secret="e2e-secret-1")
    RiskProfile.objects.create(name="crash", is_default=True, max_order_qty=D("1"))
    config = build_config(
        accounts=ACCOUNT,
        replay=[str(DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv")],
        speed=120.0,
        tick_interval_s=0.05,
        start_at="12:25",
        loop_replay=False,
    )
    live.resync_take()
    with SimulatorThread(config) as sim:
        requests.post(f"{sim.base_url}/_sim/replay", json={"paused": True}, timeout=5).raise_for_status()
        logs = [tmp_path / "streams.log"]
        procs = [_start(["manage.py", "run_streams"], _child_env(sim), logs[0])]
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
            body = {"account": account.id, "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "5"}
            denied = api_for(risk_manager).post("/api/v1/orders/check", body, format="json")
            assert denied.status_code == 200 and denied.json()["decision"] == "denied", denied.content
            _wait(lambda: _liquidation_ms(sim) is not None, 90, "the exchange to liquidate", procs, logs)
            _wait(lambda: account.closed_positions.filter(reason="liquidated").exists(), 10, "the close", procs, logs)
            time.sleep(1)
        finally:
            for proc in procs:
                _stop(proc)

    assert AccountSnapshot.objects.filter(account=account).count() >= 2
    from rules import gate

    gate.order_log_flush()  # the gate writes its log in batches: this check's row is in before the report
    report = services.report_generate(
        period=ReportPeriod.CUSTOM, start=began, end=timezone.now() + timedelta(seconds=1), accounts=[account]
    )
    f = report.figures["accounts"][0]
    assert [x["symbol"] for x in f["liquidations"]] == ["BTCUSDT"]
    assert D(f["max_drawdown"]) > D(100)  # 0.5 BTC at 20x through the fall
    assert f["gate_denials"] == 1 and f["denials_by_reason"] == {"ORDER_QTY_HIGH": 1}
    assert D(f["realized_pnl"]) < 0
    assert "BTCUSDT" in report.html and bytes(report.pdf).startswith(b"%PDF")
