"""How every Redis client of the desk connects: the cache, the channel layer and the order gate's
own clients (rules/gate.py). One place, so the three behave alike when Redis goes away and comes back.

- **Reconnect once.** A pooled connection that Redis closed (a restart, a failover, an idle
  timeout) is only found dead when it is used. redis.asyncio (the gate's event-loop client and
  channels_redis) then raised "Connection closed by server" to the first caller after every
  restart: the first check and the first socket failed (issue 14). A ``Retry`` of one attempt
  without back-off reconnects and repeats the command. Only on ConnectionError: a read that timed
  out means Redis is slow, and repeating it would double the wait. One retry may run a command
  twice when the connection died after Redis ran it: for the gate's counters that counts an order
  or a cancel twice, which only ever errs towards refusing.
- **Health checks.** A connection idle for ``HEALTH_CHECK_S`` is PINGed before use, so one that a
  firewall or NAT silently dropped is replaced instead of hanging a request.
- **Connect timeout.** Redis on the LAN connects in milliseconds; redis-py waits 5 s by default, and
  with Redis unreachable (not refused) every cancel and page would wait that long, twice with the
  retry. ``CONNECT_TIMEOUT_S`` bounds it.
"""

from __future__ import annotations

from typing import Any

HEALTH_CHECK_S = 10
CONNECT_TIMEOUT_S = 1.0


def _retry(*, asyncio: bool) -> Any:
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    if asyncio:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def client_options(*, asyncio: bool) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url`` / ``redis.asyncio.Redis.from_url``."""
    return {
        "retry": _retry(asyncio=asyncio),
        "health_check_interval": HEALTH_CHECK_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }


def cache_config(url: str) -> dict[str, Any]:
    """settings.CACHES["default"] on Redis (Django's backend hands OPTIONS to redis-py's pool)."""
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "OPTIONS": client_options(asyncio=False),
    }


def channel_layer_config(url: str) -> dict[str, Any]:
    """settings.CHANNEL_LAYERS["default"] on Redis.

    socket_timeout=None: redis-py 8 reads with a 5 s timeout by default while channels_redis blocks
    in BZPOPMIN for 5 s, so every idle /ws/desk/ consumer died with TimeoutError (channels_redis#422).
    A socket_timeout in the URL's query string still wins (redis-py lets URL options override).
    capacity: channels_redis keeps one inbox per web process for all its sockets (the channel name's
    part before "!"), holding at most `capacity` messages; past it a group_send drops the message, an
    alert included. The default 100 was one flush's risk.changed for 100 accounts to one socket.
    """
    host = {"address": url, "socket_timeout": None, **client_options(asyncio=True)}
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host], "capacity": 2000}}


def _down_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError)


# What a Redis client raises when Redis is down or unreachable (a restart's "loading the dataset"
# is a ConnectionError too). Callers that degrade catch these only: any other error is a bug.
REDIS_DOWN: tuple[type[Exception], ...] = _down_errors()
