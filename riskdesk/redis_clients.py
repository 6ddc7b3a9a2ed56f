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


# --------------------------------------------------------------------------- the gate's event-loop client


def gate_async_client(url: str) -> Any:
    """The order gate's event-loop client (rules/gate.py ``RedisStore._async_redis``).

    ``LeanAsyncRedis`` where it applies (a redis:// or unix:// URL, hiredis installed,
    ``settings.GATE_LEAN_REDIS``), else redis.asyncio's client with ``client_options``. The gate
    uses two methods of either: ``await execute_command(*args)`` and ``await aclose()``.
    """
    from django.conf import settings

    if getattr(settings, "GATE_LEAN_REDIS", True) and LeanAsyncRedis.supports(url):
        return LeanAsyncRedis(url)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, **client_options(asyncio=True))


class _LeanProtocol:
    """One Redis connection: commands written in order, replies matched to them in order (RESP
    guarantees it), so every check running on the loop shares the one socket: a pipeline built
    by arrival. Writes made in one turn of the loop leave in one ``write`` (one send syscall)."""

    def __init__(self, loop: Any, reader: Any) -> None:
        import collections

        self.loop = loop
        self.reader = reader
        self.waiting: Any = collections.deque()  # (future, monotonic time sent)
        self.out: list[bytes] = []
        self.transport: Any = None
        self.alive = False
        self.last_used = 0.0
        self.watchdog: Any = None

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.alive = True
        self.watchdog = self.loop.call_later(1.0, self._watch)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step, start again
                self._lost(_connection_error("Unexpected reply from Redis."))
                return
            future, _sent = waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, _ReplyError):
                future.set_exception(_reply_exception(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(_connection_error("Connection closed by server."))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:  # the kernel's buffer is full: the watchdog bounds the wait
        pass

    def resume_writing(self) -> None:
        pass

    # ours
    def call(self, packed: bytes) -> Any:
        import time

        future = self.loop.create_future()
        now = time.monotonic()
        self.waiting.append((future, now))
        self.last_used = now
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(packed)
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if self.alive and out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _watch(self) -> None:
        import time

        if not self.alive:
            return
        if self.waiting and time.monotonic() - self.waiting[0][1] > READ_TIMEOUT_S:
            from redis.exceptions import TimeoutError as RedisTimeoutError

            self._lost(RedisTimeoutError("Timeout reading from Redis."))
            return
        self.watchdog = self.loop.call_later(1.0, self._watch)

    def _lost(self, error: Exception) -> None:
        self.alive = False
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.transport is not None:
            self.transport.close()
        waiting, self.waiting = self.waiting, type(self.waiting)()
        for future, _sent in waiting:
            if not future.done():
                future.set_exception(error)
        self.out = []


READ_TIMEOUT_S = 5.0  # redis-py's default socket timeout for redis.asyncio clients made from a URL


class _ReplyError(Exception):
    """hiredis hands back an error reply as an instance of this (not raised)."""


def _reply_exception(reply: _ReplyError) -> Exception:
    # redis-py's own mapping ("NOSCRIPT ..." -> NoScriptError, else ResponseError, ...), so the
    # gate's handling of a script Redis lost is the same whichever client ran it.
    from redis._parsers.base import BaseParser

    return BaseParser.parse_error(str(reply.args[0]) if reply.args else "")


def _connection_error(message: str) -> Exception:
    from redis.exceptions import ConnectionError as RedisConnectionError

    return RedisConnectionError(message)


def _pack(args: tuple) -> bytes:
    """RESP for one command. A check's EVALSHA has 19 arguments: redis-py's encoder objects and
    buffer bookkeeping cost ~80 µs of CPU for it, this ~10 µs."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            value = arg
        elif kind is str:
            value = arg.encode()
        elif kind is int:
            value = b"%d" % arg
        elif isinstance(arg, bool) or arg is None:
            from redis.exceptions import DataError

            raise DataError(
                f"Invalid input of type: {type(arg).__name__!r}. Convert to a bytes, string, int or float first."
            )
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            value = bytes(arg)
        elif isinstance(arg, float):
            value = repr(arg).encode()  # as redis-py's Encoder
        elif isinstance(arg, (str, int)):
            value = str(arg).encode()
        else:
            from redis.exceptions import DataError

            raise DataError(f"Invalid input of type: {type(arg).__name__!r}.")
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


class LeanAsyncRedis:
    """A minimal redis.asyncio stand-in for the gate's one hot command (issue 19).

    Behaves as ``client_options`` asks of every client: one reconnect-and-repeat on a connection
    error (never on a timeout), a connection idle for HEALTH_CHECK_S is not trusted (replaced,
    where redis-py would PING it first), CONNECT_TIMEOUT_S to connect, READ_TIMEOUT_S for a reply.
    Raises redis-py's exceptions. RESP2 replies through hiredis: lists, bytes, ints, None.
    """

    def __init__(self, url: str) -> None:
        from redis.asyncio.connection import parse_url

        options = parse_url(url)
        self.path = options.get("path")
        self.host, self.port = options.get("host", "localhost"), int(options.get("port", 6379))
        self.db = int(options.get("db") or 0)
        self.username, self.password = options.get("username"), options.get("password")
        self.proto: _LeanProtocol | None = None
        self.connecting: Any = None

    @staticmethod
    def supports(url: str) -> bool:
        try:
            import hiredis  # noqa: F401
        except ImportError:
            return False
        return url.startswith(("redis://", "unix://"))

    async def execute_command(self, *args: Any) -> Any:
        packed = _pack(args)
        try:
            return await (await self._connection()).call(packed)
        except _down_errors()[0]:  # ConnectionError: reconnect once and repeat (client_options' Retry)
            self._drop()
            return await (await self._connection()).call(packed)

    async def _connection(self) -> _LeanProtocol:
        import time

        proto = self.proto
        if proto is not None and proto.alive:
            if not proto.waiting and time.monotonic() - proto.last_used > HEALTH_CHECK_S:
                self._drop()  # idle: possibly dropped silently on the way; a new one costs one connect
            else:
                return proto
        if self.connecting is None:
            import asyncio

            self.connecting = asyncio.ensure_future(self._connect())
        connecting = self.connecting
        try:
            return await connecting
        finally:
            if self.connecting is connecting:
                self.connecting = None

    async def _connect(self) -> _LeanProtocol:
        import asyncio

        import hiredis

        loop = asyncio.get_running_loop()
        proto = _LeanProtocol(loop, hiredis.Reader(replyError=_ReplyError))
        try:
            if self.path:
                connect = loop.create_unix_connection(lambda: proto, self.path)
            else:
                connect = loop.create_connection(lambda: proto, self.host, self.port)
            await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            raise _connection_error(f"Error connecting to Redis: {exc!r}") from exc
        hello = []
        if self.password:
            hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        for command in hello:
            await proto.call(_pack(command))
        self.proto = proto
        return proto

    def _drop(self) -> None:
        if self.proto is not None:
            self.proto._lost(_connection_error("Connection replaced."))
            self.proto = None

    async def aclose(self) -> None:
        self._drop()
