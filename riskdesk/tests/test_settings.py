from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    # Empty, not absent: the settings read a .env beside manage.py without overwriting what the
    # environment already holds, and scripts/demo writes one with both secrets. Absent, the demo's
    # .env filled them in and the "refuses to start" tests failed after scripts/demo.
    env = {**os.environ, "SECRET_KEY": "", "FIELD_ENCRYPTION_KEY": "", "DEBUG": "false"}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="riskdesk.settings", RISKDESK_VAR_DIR=str(ROOT / "var/test"))
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd="/tmp",
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_a_secret_naming_it(missing, tmp_path):
    present = {"SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY": "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE="}
    present.pop(missing)
    result = start(present)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_it_starts_with_both_secrets_and_debug_off():
    result = start({"SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY": "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE="})
    assert result.returncode == 0, result.stderr


def test_debug_is_off_unless_asked_for():
    from django.conf import settings

    assert os.environ.get("DEBUG") or settings.DEBUG is False


def test_an_idle_desk_socket_outlives_redis_py_default_read_timeout():
    """channels_redis blocks in BZPOPMIN for 5 s and redis-py 8 reads with a 5 s timeout by
    default: with a plain host URL every consumer idle for ~5 s died (close 1006 in the browser).
    The settings turn the read timeout off; this waits 7 s on the real layer to prove it."""
    import asyncio

    from channels.layers import get_channel_layer
    from django.conf import settings

    from conftest import require_service

    if not settings.REDIS_URL:
        require_service("REDIS_URL")

    async def idle_receive() -> str:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        try:
            await asyncio.wait_for(layer.receive(channel), 7)
        except TimeoutError as exc:
            return type(exc).__module__  # "builtins" from wait_for; "redis.exceptions" was the bug
        return "received"

    assert asyncio.run(idle_receive()) == "builtins"


@pytest.mark.parametrize(("mode", "fails"), [("IMMEDIATE", False), ("DEFERRED", True)])
def test_embedded_sqlite_writers_wait_for_one_another_instead_of_failing(tmp_path, django_db_blocker, mode, fails):
    """Two processes' transactions on the embedded SQLite file: one reads, the other writes and
    commits, then the first writes. Deferred, the first fails at once with "database is locked"
    (seen in the demo's alert writer); with the settings' IMMEDIATE it holds the write lock from
    its start and the other waits."""
    import threading

    from django.db import OperationalError, connections, transaction

    from riskdesk.settings import SQLITE_OPTIONS

    alias = f"sqlite_probe_{mode.lower()}"
    path = tmp_path / "desk.sqlite3"
    options = {**SQLITE_OPTIONS, "timeout": 5, "transaction_mode": mode}
    probe = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options}
    connections.settings[alias] = connections.configure_settings({"default": dict(probe), alias: probe})[alias]
    read_done, other_done = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def first() -> None:
        try:
            with transaction.atomic(using=alias):
                cursor = connections[alias].cursor()
                cursor.execute("SELECT n FROM counter")
                read_done.set()
                other_done.wait(0.5)  # the other has committed (deferred) or waits for us (immediate)
                cursor.execute("UPDATE counter SET n = n + 1")
        except OperationalError as exc:
            errors.append(exc)
        finally:
            read_done.set()
            connections[alias].close()

    def second() -> None:
        read_done.wait(5)
        try:
            with transaction.atomic(using=alias):
                connections[alias].cursor().execute("UPDATE counter SET n = n + 10")
        except OperationalError as exc:
            errors.append(exc)
        finally:
            other_done.set()
            connections[alias].close()

    try:
        with django_db_blocker.unblock():
            setup = connections[alias]
            setup.cursor().execute("CREATE TABLE counter (n INTEGER)")
            setup.cursor().execute("INSERT INTO counter VALUES (0)")
            setup.close()
            threads = [threading.Thread(target=first), threading.Thread(target=second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            check = connections[alias]
            total = check.cursor().execute("SELECT n FROM counter").fetchone()[0]
            check.close()
    finally:
        del connections.settings[alias]
    if fails:
        assert errors and "database is locked" in str(errors[0])
    else:
        assert not errors and total == 11
