from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.management.commands.seed_demo import DEMO_PASSWORD, USERS


class Command(BaseCommand):
    help = "Run the whole desk on this machine: the ASGI web server, a Celery worker and beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker and beat")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options):
        python = sys.executable
        procs: dict[str, subprocess.Popen] = {}
        procs["web"] = subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                "riskdesk.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ]
        )
        if not no_worker:
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
                ]
            )
        url = f"http://{host}:{port}/"
        self.stdout.write(
            self.style.SUCCESS(f"\nriskdesk is running at {url}  (admin: {url}admin/, API docs: {url}api/docs)")
        )
        self.stdout.write(
            "demo logins (password " + DEMO_PASSWORD + "): " + ", ".join(f"{n} ({r.label})" for n, r in USERS)
        )
        self.stdout.write("press Ctrl-C to stop\n")
        self._supervise(procs)

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
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
