"""rundesk (issue 14 item 12): busy ports refused before anything starts, "running at" only once the
web server listens, a failing child fails the command, a normal stop leaves no process and logs no
ERROR (the simulator stops last). Real processes on the embedded defaults, each run bounded."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

ROOT = Path(__file__).resolve().parents[2]
KEY = "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(var_dir: Path) -> dict[str, str]:
    """The demo's embedded mode in a directory of its own: SQLite, file cache, filesystem broker."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEY=KEY, DEBUG="false", RISKDESK_VAR_DIR=str(var_dir))
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=timeout
    )


def left_behind(var_dir: Path) -> list[int]:
    """Processes still running with this test's RISKDESK_VAR_DIR (rundesk's children inherit it)."""
    marker = f"RISKDESK_VAR_DIR={var_dir}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def start_rundesk(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Path]:
    log = Path(env["RISKDESK_VAR_DIR"]) / "rundesk.log"
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rundesk", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    return proc, log


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.3)
    return False


@pytest.mark.parametrize("busy", ["--port", "--sim-port"])
def test_a_busy_port_is_refused_by_name_before_anything_starts(busy):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--sim-port": str(free_port()), busy: str(taken)}
        with pytest.raises(CommandError, match=rf"port in use: 127\.0\.0\.1:{taken}"):
            call_command("rundesk", "--simulate", *[a for kv in ports.items() for a in kv], stdout=io.StringIO())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    var_dir = tmp_path_factory.mktemp("rundesk")
    env = embedded_env(var_dir)
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "seed_demo")
    return var_dir


def test_a_normal_stop_exits_0_leaves_no_process_and_logs_no_error(seeded):
    env = embedded_env(seeded)
    port = free_port()
    proc, log = start_rundesk(env, "--simulate", "--port", str(port), "--sim-port", str(free_port()))
    try:
        assert wait_for_text(log, "running at", proc, 90), log.read_text()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # announced only once the web server accepts
        time.sleep(6)  # the streams connect to the simulator and the replay moves
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert " ERROR" not in output and "ERROR/" not in output and "Traceback" not in output, output
    deadline = time.monotonic() + 5
    while left_behind(seeded) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left_behind(seeded) == []


def test_a_child_that_fails_fails_rundesk_and_stops_the_others(tmp_path):
    env = embedded_env(tmp_path)  # never migrated: the stream process dies on its first query
    port = free_port()
    proc, log = start_rundesk(env, "--port", str(port), "--streams", "process", "--no-worker")
    try:
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == 1, output
    assert "streams exited with code 1" in output or "web server did not start" in output
    assert left_behind(tmp_path) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the web server is gone too
