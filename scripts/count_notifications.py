"""Count the notifications the demo desk sends over the crash replay, per (account, rule, subject).

Runs `scripts/demo`'s desk (seed_demo, then `rundesk --simulate`) in a scratch var directory with
one webhook channel (every account, warnings and up) pointing at a recorder on loopback, for
``--seconds`` of real time, then reports, per (account, rule, subject), the most notifications any
10-minute window held and the deliveries held back (digested or skipped). Issue 13 asks for at
most 2 per (account, rule, subject) in any 10 minutes.

    .venv/bin/python scripts/count_notifications.py --seconds 420

Not a test: it takes minutes and measures the demo as a person would run it.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            Recorder.received.append({"at": time.time(), "body": json.loads(body or b"{}")})
        except ValueError:
            Recorder.received.append({"at": time.time(), "body": {"raw": body[:200].decode(errors="replace")}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=420.0, help="real seconds to run the desk")
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch var directory")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="riskdesk-count-"))
    hook_port, web_port, sim_port = free_port(), free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "RISKDESK_VAR_DIR": str(var),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "count-notifications-not-secret"),
        "FIELD_ENCRYPTION_KEY": os.environ.get("FIELD_ENCRYPTION_KEY", "Y291bnQtbm90aWZpY2F0aW9ucy1rZXktMzItYnl0ZXM="),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)  # the demo's embedded defaults
    python = str(ROOT / ".venv/bin/python")
    run = dict(cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([python, "manage.py", "migrate", "--no-input"], **run)
    subprocess.run([python, "manage.py", "seed_demo"], **run)
    setup = (
        "from alerts.models import NotificationChannel as C\n"
        "from alerts.outbox import channel_set_secrets\n"
        f"c = C(name='count', kind='webhook', min_level=20, settings={{'url': 'http://127.0.0.1:{hook_port}/'}})\n"
        "channel_set_secrets(channel=c, signing_secret='count-notifications')\n"
        "c.save()\n"
    )
    subprocess.run([python, "manage.py", "shell", "-c", setup], **run)
    print(f"running the demo desk for {args.seconds:.0f} s (var {var})", flush=True)
    desk = subprocess.Popen(
        [python, "manage.py", "rundesk", "--simulate", "--port", str(web_port), "--sim-port", str(sim_port)]
        + ["--speed", str(args.speed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(var / "desk.log", "w"),  # noqa: SIM115 (lives as long as the desk)
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.seconds and desk.poll() is None:
            time.sleep(2)
            print(f"\r  {time.monotonic() - started:5.0f} s, {len(Recorder.received)} webhooks", end="", flush=True)
    finally:
        os.killpg(desk.pid, signal.SIGTERM)
        try:
            desk.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(desk.pid, signal.SIGKILL)
    print()
    report = subprocess.run(
        [python, "-c", REPORT], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    print(report)
    print(f"webhook requests received: {len(Recorder.received)}")
    if not args.keep:
        shutil.rmtree(var, ignore_errors=True)
    return 0


REPORT = r"""
import django, os, json
from collections import defaultdict
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
django.setup()
from alerts.models import Delivery
rows = defaultdict(list)
held = defaultdict(int)
for d in Delivery.objects.select_related("alert__account").exclude(alert=None).order_by("created_at"):
    a = d.alert
    key = (a.account.name if a.account_id else "-", a.rule, a.subject, d.channel_id)
    if d.status in ("sent", "failed", "pending", "sending"):
        rows[key].append((d.created_at.timestamp(), d.event, d.level))
    else:
        held[key] += 1
worst = {}
for key, events in rows.items():
    times = [t for t, _, _ in events]
    worst[key] = max(sum(1 for u in times if t <= u < t + 600) for t in times)
print(f"{'account':16} {'rule':18} {'subject':16} max/10min  total  held  events")
for key in sorted(rows, key=lambda k: (-worst[k], k)):
    events = ", ".join(f"{e}:{l}" for _, e, l in rows[key])
    print(f"{key[0]:16} {key[1]:18} {key[2]:16} {worst[key]:9}  {len(rows[key]):5}  {held[key]:4}  {events}")
over = sum(1 for v in worst.values() if v > 2)
print(f"subjects: {len(rows)}; over 2 in 10 minutes: {over}; worst: {max(worst.values(), default=0)}")
print(f"digests: {Delivery.objects.filter(alert=None).count()}")
"""

if __name__ == "__main__":
    sys.exit(main())
