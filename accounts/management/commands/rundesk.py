from __future__ import annotations

import contextlib
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


def wait_for_port(host: str, port: int, timeout_s: float, *, child: subprocess.Popen | None = None) -> bool:
    """True once something accepts on host:port; False after `timeout_s` or when `child` has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return False
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def port_is_free(host: str, port: int) -> bool:
    # Bind, not connect: a port held by a process that does not accept yet is taken all the same.
    # SO_REUSEADDR as uvicorn and aiohttp set it, so a socket in TIME_WAIT does not count as taken.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _own_group() -> None:
    """In each child, before exec: a process group of its own, so a stop reaches the Celery worker's
    pool processes and beat too (a SIGTERM to the worker alone left them behind), and, on Linux,
    a SIGTERM when rundesk itself dies, even by SIGKILL, instead of living on as an orphan."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Command(BaseCommand):
    help = (
        "Run the whole desk on this machine: the ASGI web server, the stream engine, a Celery worker with beat "
        "and, with --simulate, the bundled exchange simulator replaying the 2021-05-19 crash."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulate", action="store_true", help="start the exchange simulator and use it")
        parser.add_argument(
            "--sim-port", type=int, default=9100, help="port of the exchange simulator (with --simulate; default 9100)"
        )
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
        self._check_ports_free(o)
        env = os.environ.copy()
        # A person reads the demo's lines; production sets LOG_FORMAT (json) itself.
        env.setdefault("LOG_FORMAT", "plain")
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
            procs["simulator"] = self._start(command, env)
            if not wait_for_port("127.0.0.1", o["sim_port"], 30, child=procs["simulator"]):
                self._stop(procs)
                raise CommandError(f"the simulator did not open port {o['sim_port']}")
        env["STREAMS_IN_PROCESS"] = "true" if o["streams"] == "in-process" else "false"
        procs["web"] = self._start(
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
            env,
        )
        if o["streams"] == "process":
            procs["streams"] = self._start([python, "manage.py", "run_streams"], env)
        if not o["no_worker"]:
            # One worker with embedded beat is enough for a demo; production runs them apart.
            procs["worker"] = self._start(
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
                env,
            )
        # "running at" only once the web server accepts: uvicorn imports Django and the apps first.
        if not wait_for_port(o["host"], o["port"], 60, child=procs["web"]):
            self._stop(procs)
            raise CommandError(f"the web server did not start listening on {o['host']}:{o['port']}")
        self._announce(o, procs)
        failed = self._supervise(procs)
        if failed:
            raise CommandError(f"{failed} failed; the desk was stopped", returncode=1)

    def _check_ports_free(self, o: dict) -> None:
        wanted = [("web", o["host"], o["port"])]
        if o["simulate"]:
            wanted.append(("simulator", "127.0.0.1", o["sim_port"]))
        taken = [f"{o_host}:{port} ({name})" for name, o_host, port in wanted if not port_is_free(o_host, port)]
        if taken:
            raise CommandError(
                f"port in use: {', '.join(taken)}. Stop what holds it, or pick others with --port / --sim-port."
            )

    @staticmethod
    def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(command, env=env, preexec_fn=_own_group)  # preexec_fn: rundesk runs no threads

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

    def _supervise(self, procs: dict[str, subprocess.Popen]) -> str:
        """Until Ctrl-C, SIGTERM or a child's exit; returns the name of a child that exited ("" if none)."""
        stopping = False
        failed = ""

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
                        stopping, failed = True, failed or name
                time.sleep(0.5)
        finally:
            self._stop(procs)
        return failed

    @staticmethod
    def _stop(procs: dict[str, subprocess.Popen]) -> None:
        # The simulator last: stopped first, the stream engine and the worker logged ERROR lines
        # about an exchange that went away while the desk was merely shutting down.
        first = {name: proc for name, proc in procs.items() if name != "simulator"}
        last = {name: proc for name, proc in procs.items() if name == "simulator"}
        for group in (first, last):
            for proc in group.values():
                # The leader only: the worker stops its own pool processes (warm shutdown); SIGTERM
                # to the pool as well made it log each as an ERROR ("exited with signal 15").
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in group.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=5)
                # What the leader left behind in its group (a pool process of a killed worker) goes too.
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # each child leads its own group (_own_group)
