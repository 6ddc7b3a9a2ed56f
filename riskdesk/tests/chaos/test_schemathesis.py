"""schemathesis over /api/schema against the real web server (issue 14, "The proof suite").

uvicorn serves riskdesk.asgi:application on the test's MariaDB database and Redis, with the
simulator as the exchange (the kill switch answers 502 when the exchange is unreachable, by design,
so it must be reachable). A risk manager's token, a trader and two accounts, so operations reach
past authentication. Bounded budget: a few examples per operation, no shrinking, a wall-clock cap.
Asserted: 0 server errors (schemathesis's ``not_a_server_error`` check).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from accounts import services as account_services
from marketdata.simulator import SimulatorThread, build_config
from riskdesk.tests.chaos.desk import Desk, bearer, needs_services
from rules.models import RiskProfile

MAX_EXAMPLES = 8
WALL_S = 150
DESK = {
    "accounts": [
        {
            "api_key": f"st-key-{i}",
            "api_secret": f"st-secret-{i}",
            "position_mode": "one-way",
            "wallet": {"USDT": "20000"},
            "positions": [],
        }
        for i in range(2)
    ]
}


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error(risk_manager, trader_a, tmp_path):
    needs_services()
    RiskProfile.objects.create(name="st", is_default=True)
    for i in range(2):
        account_services.account_create(
            name=f"st-{i}", api_key=f"st-key-{i}", api_secret=f"st-secret-{i}", traders=[trader_a]
        )
    config = build_config(accounts=DESK, marks={"BTCUSDT": "43000", "ETHUSDT": "3400"}, tick_interval_s=1.0)
    with SimulatorThread(config) as sim:
        desk = Desk(sim, tmp_path)
        try:
            desk.start("web")
            started = time.monotonic()
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "run",
                    f"{desk.web_url}/api/schema",
                    "--header",
                    f"Authorization: {bearer(risk_manager)['Authorization']}",
                    "--checks",
                    "not_a_server_error",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--max-examples",
                    str(MAX_EXAMPLES),
                    "--no-shrink",
                    "--seed",
                    "14",
                    "--request-timeout",
                    "20",
                    "--workers",
                    "1",
                    "--generation-database",
                    "none",
                ],
                capture_output=True,
                text=True,
                timeout=WALL_S,
            )
            took = time.monotonic() - started
        finally:
            desk.stop()
    summary = run.stdout[-3000:]
    print(f"\nschemathesis: exit {run.returncode} in {took:.0f} s\n{summary}")
    assert run.returncode == 0, summary + run.stderr[-2000:]
