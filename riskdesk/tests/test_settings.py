from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG")}
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
