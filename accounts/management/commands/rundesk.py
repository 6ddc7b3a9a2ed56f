from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands.seed_demo import DEMO_PASSWORD, USERS

DATA = Path(settings.BASE_DIR) / "marketdata"
CRASH_REPLAYS = [
    DATA / "data/binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv",
    DATA / "data/binance_spot_ETHUSDT_1m_2021-05-19_crashday.csv",
]


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


class Command(BaseCommand):
    help = (
        "Run the whole desk on this machine: the ASGI web server, the stream engine, a Celery worker with beat "
        "and, with --simulate, the bundled exchange simulator replaying the 2021-05-19 crash."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulate", action="store_true", help="start the exchange simulator and use it")
        parser.add_argument("--sim-port", type=int, default=9100)
        parser.add_argument("--speed", type=float, default=30.0, help="replay speed (simulated s per real s)")
        parser.add_argument("--start-at", default="12:15", help="replay start time of day (UTC) on 2021-05-19")
        parser.add_argument(
            "--streams",
            choices=["in-process", "process", "off"],
            default="process" if settings.REDIS_URL else "in-process",
            help="where the stream engine runs (in-process: inside the web server, needed without Redis)",
        )
        parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker and beat")

    def handle(self, *args, **o):
        env = os.environ.copy()
        procs: dict[str, subprocess.Popen] = {}
        python = sys.executable
        if o["simulate"]:
            base = f"127.0.0.1:{o['sim_port']}"
            env.update(BINANCE_FUTURES_REST_URL=f"http://{base}", BINANCE_FUTURES_WS_URL=f"ws://{base}")
            command = [
                python,
                "manage.py",
                "simulate_exchange",
                "--port",
                str(o["sim_port"]),
                "--accounts",
                str(DATA / "fixtures/demo_accounts.yaml"),
                "--speed",
                str(o["speed"]),
                "--start-at",
                o["start_at"],
            ]
            for replay in CRASH_REPLAYS:
                command += ["--replay", str(replay)]
            procs["simulator"] = subprocess.Popen(command, env=env)
            if not wait_for_port("127.0.0.1", o["sim_port"], 30):
                self._stop(procs)
                raise CommandError(f"the simulator did not open port {o['sim_port']}")
        env["STREAMS_IN_PROCESS"] = "true" if o["streams"] == "in-process" else "false"
        procs["web"] = subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                "riskdesk.asgi:application",
                "--host",
                o["host"],
                "--port",
                str(o["port"]),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
            ],
            env=env,
        )
        if o["streams"] == "process":
            procs["streams"] = subprocess.Popen([python, "manage.py", "run_streams"], env=env)
        if not o["no_worker"]:
            # One worker with embedded beat is enough for a demo; production runs them apart.
            procs["worker"] = subprocess.Popen(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "riskdesk",
                    "worker",
                    "--beat",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    "2",
                    "--schedule",
                    settings.CELERY_BEAT_SCHEDULE_FILENAME,
                ],
                env=env,
            )
        self._announce(o, procs)
        self._supervise(procs)

    def _announce(self, o: dict, procs: dict) -> None:
        url = f"http://{o['host']}:{o['port']}/"
        self.stdout.write(self.style.SUCCESS(f"\nriskdesk is running at {url}"))
        self.stdout.write(f"  sign in at {url}   admin {url}admin/   API docs {url}api/docs   health {url}health")
        self.stdout.write(
            "  demo logins (password " + DEMO_PASSWORD + "): " + ", ".join(f"{n} ({r.label})" for n, r in USERS)
        )
        if "simulator" in procs:
            self.stdout.write(
                f"  exchange simulator on port {o['sim_port']}, replaying 2021-05-19 from "
                f"{o['start_at']} UTC at {o['speed']:g}x"
            )
        self.stdout.write("  press Ctrl-C to stop\n")

    def _supervise(self, procs: dict[str, subprocess.Popen]) -> None:
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the desk")
                        stopping = True
                time.sleep(0.5)
        finally:
            self._stop(procs)

    @staticmethod
    def _stop(procs: dict[str, subprocess.Popen]) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
