"""The gate's lean event-loop Redis client (riskdesk.redis_clients.LeanAsyncRedis, issue 19).

Against a private redis-server (riskdesk/tests/private_redis.py), in both test modes: the same
replies as redis.asyncio for the gate's commands, redis-py's exceptions (so the gate's REDIS_DOWN
and NOSCRIPT handling hold), concurrent commands matched to their replies, and recovery after a
dropped connection and a restart.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
import redis
import redis.asyncio

from conftest import require_service
from riskdesk import redis_clients
from riskdesk.redis_clients import REDIS_DOWN, LeanAsyncRedis, gate_async_client
from riskdesk.tests import private_redis
from riskdesk.tests.private_redis import PrivateRedis
from rules import gate

redis_outage = private_redis.redis_outage  # pytest finds fixtures by name in the module


@pytest.fixture
def server():
    if shutil.which("redis-server") is None:
        require_service("redis-server")
    s = PrivateRedis()
    s.start()
    yield s
    s.stop()


def run(coro):
    return asyncio.run(coro)


def test_the_factory_picks_the_lean_client_unless_switched_off(settings):
    assert isinstance(gate_async_client("redis://127.0.0.1:6379/3"), LeanAsyncRedis)
    assert isinstance(gate_async_client("unix:///tmp/redis.sock?db=2"), LeanAsyncRedis)
    assert not isinstance(gate_async_client("rediss://127.0.0.1:6379/3"), LeanAsyncRedis)  # TLS: redis-py's
    settings.GATE_LEAN_REDIS = False
    assert isinstance(gate_async_client("redis://127.0.0.1:6379/3"), redis.asyncio.Redis)


def test_the_gates_script_and_reads_answer_as_with_redis_asyncio(server):
    keys = ["gate:rate:1", "gate:dup:none", "gate:day:1:x:orders", "live:a", "live:b", "live:c"]
    sha = redis.Redis.from_url(server.url).script_load(gate.RATE_SCRIPT)
    args = ("EVALSHA", sha, len(keys), *keys, "m-1", -1, 5, 0, 0, 172800)

    async def both():
        plain = redis.asyncio.Redis.from_url(server.url, **redis_clients.client_options(asyncio=True))
        lean = LeanAsyncRedis(server.url)
        await plain.set("live:a", b"\x80\x04pickled")
        await plain.set("live:c", b"12")
        got = [await lean.execute_command(*args), await lean.execute_command("MGET", *keys[3:])]
        want = [await plain.execute_command(*args), await plain.execute_command("MGET", *keys[3:])]
        await plain.aclose()
        await lean.aclose()
        return got, want

    got, want = run(both())
    got[0][4] = want[0][4] = None  # Redis TIME: the two calls ran a moment apart
    assert got == want
    assert got[1] == [b"\x80\x04pickled", None, b"12"]


def test_errors_are_redis_pys(server):
    async def scenario():
        lean = LeanAsyncRedis(server.url)
        with pytest.raises(redis.exceptions.NoScriptError):
            await lean.execute_command("EVALSHA", "0" * 40, 0)
        with pytest.raises(redis.exceptions.ResponseError):
            await lean.execute_command("NOSUCHCOMMAND")
        with pytest.raises(redis.exceptions.DataError):
            await lean.execute_command("SET", "k", True)
        assert await lean.execute_command("SET", "k", 1.5) == b"OK"  # the connection is still in step
        assert await lean.execute_command("GET", "k") == b"1.5"
        await lean.aclose()

    run(scenario())


def test_concurrent_commands_share_one_connection_and_get_their_own_replies(server):
    async def scenario():
        lean = LeanAsyncRedis(server.url)
        await asyncio.gather(*[lean.execute_command("SET", f"k{i}", f"v{i}") for i in range(200)])
        replies = await asyncio.gather(*[lean.execute_command("GET", f"k{i}") for i in range(200)])
        clients = await lean.execute_command("CLIENT", "LIST")
        await lean.aclose()
        return replies, clients

    replies, clients = run(scenario())
    assert replies == [f"v{i}".encode() for i in range(200)]
    assert clients.count(b"cmd=client") == 1  # one connection did all of it


def test_a_dropped_connection_is_replaced_and_the_command_repeated_once(server):
    async def scenario():
        lean = LeanAsyncRedis(server.url)
        await lean.execute_command("SET", "k", "v")
        redis.Redis.from_url(server.url).execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await asyncio.sleep(0.05)
        value = await lean.execute_command("GET", "k")
        await lean.aclose()
        return value

    assert run(scenario()) == b"v"


def test_redis_down_raises_redis_down_and_a_restart_needs_nothing(server):
    async def scenario():
        lean = LeanAsyncRedis(server.url)
        assert await lean.execute_command("PING") == b"PONG"
        server.stop()
        with pytest.raises(REDIS_DOWN):
            await lean.execute_command("PING")
        server.start()
        pong = await lean.execute_command("PING")
        await lean.aclose()
        return pong

    assert run(scenario()) == b"PONG"


def test_an_idle_connection_is_not_trusted(server, monkeypatch):
    monkeypatch.setattr(redis_clients, "HEALTH_CHECK_S", 0.05)

    async def scenario():
        lean = LeanAsyncRedis(server.url)
        await lean.execute_command("PING")
        first = lean.proto
        await asyncio.sleep(0.1)
        await lean.execute_command("PING")
        second = lean.proto
        await lean.aclose()
        return first is second

    assert run(scenario()) is False


def test_a_database_number_and_a_password_are_used(server):
    redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
    url = server.url.replace("redis://", "redis://:s3cret@").rsplit("/", 1)[0] + "/5"

    async def scenario():
        lean = LeanAsyncRedis(url)
        await lean.execute_command("SET", "in-five", "yes")
        await lean.aclose()

    run(scenario())
    assert redis.Redis.from_url(url).get("in-five") == b"yes"
    assert redis.Redis.from_url(url.rsplit("/", 1)[0] + "/0").get("in-five") is None


def test_the_gate_checks_through_it(redis_outage):
    """The gate's own round trip (rate script + live keys) on the lean client, then Redis down:
    LIVE_STATE_UNAVAILABLE, as with redis.asyncio (rules/tests/test_redis_down.py)."""
    s = gate.store()

    async def scenario():
        assert isinstance(s._async_redis(), LeanAsyncRedis)
        got = await s.agather(account_id=1, order=None, profile=None, reserve=False)
        redis_outage.stop()
        with pytest.raises(REDIS_DOWN):
            await s.agather(account_id=1, order=None, profile=None, reserve=False)
        await s.aclose()
        return got

    gathered = run(scenario())
    assert gathered.state_raw is None and gathered.counters.daily_fills == 0
