"""WebSocket front-end: market streams and user-data streams on the REST port.

Paths (python-binance >= 1.0.36 first, then the legacy ones):

* ``/market/stream?streams=a/b``  and ``/stream?streams=a/b``: ``{"stream": name, "data": payload}``
* ``/market/ws/<stream>`` and ``/ws/<stream>``: the raw payload of one stream
* ``/private/ws?listenKey=K``, ``/private/ws/K`` and ``/ws/K``: raw user-data events

Each tick's frame is serialised once and the same bytes go to every
subscriber; each socket has its own writer task and a bounded queue, so a slow
client loses its oldest market frames instead of stalling the others (user
events are never dropped that way). Compression is off: deflating a 40 kB
all-market frame per subscriber 50 times a second would cost more than
everything else together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import WSMsgType, web

from .clock import now_ms
from .errors import LISTEN_KEY
from .faults import Faults
from .numbers import fmt
from .symbols import SymbolSpec

log = logging.getLogger(__name__)

MARKET_QUEUE = 64  # frames a slow market subscriber may lag before its oldest are dropped
SLOW_EVERY = 3  # plain @markPrice streams update every 3 ticks (Binance: 3 s vs 1 s for @1s)
FUNDING_MS = 8 * 3600 * 1000
FUNDING_RATE = "0.00010000"
HEARTBEAT_S = 180.0  # Binance pings every 3 minutes
_CLOSE = object()


def canonical_stream(name: str, symbols: Mapping[str, SymbolSpec]) -> str | None:
    """The stream's canonical name if the simulator serves it (mark price streams), else None."""
    parts = name.split("@")
    tail = [p.lower() for p in parts[1:]]
    if parts[0] == "!markPrice" or parts[0].lower() == "!markprice":
        if tail in (["arr"], ["arr", "1s"]):
            return "!markPrice@" + "@".join(tail)
        return None
    if parts[0].upper() in symbols and tail in (["markprice"], ["markprice", "1s"]):
        return parts[0].lower() + "@markPrice" + ("@1s" if len(tail) == 2 else "")
    return None


class MarkFrames:
    """markPriceUpdate JSON, with each symbol's invariant part cached until its mark changes."""

    def __init__(self, marks: Mapping[str, Decimal]) -> None:
        self._marks = marks
        self._tails: dict[str, tuple[Decimal, str]] = {}

    def _tail(self, symbol: str) -> str:
        mark = self._marks[symbol]
        cached = self._tails.get(symbol)
        if cached is None or cached[0] != mark:
            p = fmt(mark)
            # Index and settle prices equal the mark: the simulator has no basis model.
            text = f',"s":"{symbol}","p":"{p}","i":"{p}","P":"{p}","r":"{FUNDING_RATE}","T":'
            cached = self._tails[symbol] = (mark, text)
        return cached[1]

    def item(self, symbol: str, event_ms: int, funding_ms: int) -> str:
        return f'{{"e":"markPriceUpdate","E":{event_ms}{self._tail(symbol)}{funding_ms}}}'

    def array(self, symbols: Iterable[str], event_ms: int, funding_ms: int) -> str:
        head, end = f'{{"e":"markPriceUpdate","E":{event_ms}', f"{funding_ms}}}"
        return "[" + ",".join(head + self._tail(s) + end for s in symbols) + "]"


def next_funding_ms(at_ms: int) -> int:
    return (at_ms // FUNDING_MS + 1) * FUNDING_MS


@dataclass(eq=False)
class Subscriber:
    ws: web.WebSocketResponse
    wrapped: bool
    streams: list[str] = field(default_factory=list)
    listen_key: str | None = None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    dropped: int = 0

    def push(self, payload: bytes, *, droppable: bool) -> None:
        if droppable and self.queue.qsize() >= MARKET_QUEUE:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait(payload)

    def close(self, code: int, message: str, *, flush: bool = True) -> None:
        """Close after the queued frames (``flush``) or at once, dropping them (a network drop)."""
        while not flush and not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait((_CLOSE, code, message))


class Hub:
    """Owns every socket; is the exchange's event sink."""

    def __init__(self, *, symbols: Mapping[str, SymbolSpec], marks: Mapping[str, Decimal], faults: Faults) -> None:
        self.symbols = symbols
        self.faults = faults
        self.frames = MarkFrames(marks)
        self.market_subs: set[Subscriber] = set()
        self.user_subs: dict[str, set[Subscriber]] = {}
        self.listen_key_valid = lambda key: False  # set by the Simulator (the exchange owns listen keys)
        self.ticks = 0
        self.frames_sent = 0

    # ----------------------------------------------------------------------- publishing

    def publish_marks(self, *, force: bool = False) -> None:
        """Send the current marks to every market subscriber whose streams are due."""
        self.ticks += 1
        if self.faults.silent() or not self.market_subs:
            return
        slow_due = force or self.ticks % SLOW_EVERY == 0
        event_ms = now_ms()
        funding_ms = next_funding_ms(event_ms)
        malformed = self.faults.take_malformed()
        built: dict[tuple[str, bool], bytes] = {}
        for sub in list(self.market_subs):
            for name in sub.streams:
                if not name.endswith("@1s") and not slow_due:
                    continue
                key = (name, sub.wrapped)
                if key not in built:
                    built[key] = self._frame(name, sub.wrapped, event_ms, funding_ms, malformed)
                sub.push(built[key], droppable=True)
                self.frames_sent += 1

    def _frame(self, name: str, wrapped: bool, event_ms: int, funding_ms: int, malformed: str | None) -> bytes:
        if name.startswith("!"):
            data = self.frames.array(self.symbols, event_ms, funding_ms)
        else:
            data = self.frames.item(name.split("@")[0].upper(), event_ms, funding_ms)
        if malformed == "shape":
            data = json.dumps({"e": "markPriceUpdate", "E": event_ms, "s": None, "p": "not-a-number"})
        text = f'{{"stream":"{name}","data":{data}}}' if wrapped else data
        if malformed == "json":
            text = text[: max(1, len(text) // 2)]  # cut mid-object: not parseable JSON
        return text.encode()

    def user_event(self, listen_key: str, event: dict) -> None:
        subs = self.user_subs.get(listen_key)
        if not subs or self.faults.silent():
            return
        payload = json.dumps(event, separators=(",", ":")).encode()
        for sub in subs:
            sub.push(payload, droppable=False)

    def close_listen_key(self, listen_key: str) -> None:
        for sub in self.user_subs.pop(listen_key, set()):
            sub.close(1000, "listen key expired")  # after listenKeyExpired, which is queued first

    def drop_all(self, code: int = 1001, message: str = "going away") -> int:
        subs = [*self.market_subs, *(s for group in self.user_subs.values() for s in group)]
        for sub in subs:
            sub.close(code, message, flush=False)
        return len(subs)

    # ----------------------------------------------------------------------- connections

    async def market_stream(self, request: web.Request) -> web.WebSocketResponse:
        names = [n for n in request.query.get("streams", "").split("/") if n]
        return await self._serve_market(request, names, wrapped=True)

    async def ws_path(self, request: web.Request) -> web.StreamResponse:
        """/ws/<x>: a listen key (legacy user stream) or one raw market stream."""
        name = request.match_info["name"]
        if self.listen_key_valid(name) or canonical_stream(name, self.symbols) is None:
            return await self._serve_user(request, name)
        return await self._serve_market(request, [name], wrapped=False)

    async def market_ws(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_market(request, [request.match_info["name"]], wrapped=False)

    async def private_ws(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info.get("name") or request.query.get("listenKey", "")
        return await self._serve_user(request, key)

    async def _open(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        return ws

    async def _serve_market(self, request: web.Request, names: list[str], *, wrapped: bool) -> web.WebSocketResponse:
        ws = await self._open(request)
        sub = Subscriber(ws, wrapped, [c for c in (canonical_stream(n, self.symbols) for n in names) if c])
        self.market_subs.add(sub)
        try:
            await self._run(sub, self._on_market_message)
        finally:
            self.market_subs.discard(sub)
        return ws

    async def _serve_user(self, request: web.Request, key: str) -> web.StreamResponse:
        if not self.listen_key_valid(key):
            # Refused before the upgrade. Accepting and then closing would look the same to a
            # client, but python-binance's reconnect loop marks such a socket "streaming" again
            # and can then never be closed; a failed handshake counts towards its 5 retries.
            return web.json_response({"code": LISTEN_KEY[0], "msg": LISTEN_KEY[1]}, status=400)
        ws = await self._open(request)
        sub = Subscriber(ws, wrapped=False, listen_key=key)
        self.user_subs.setdefault(key, set()).add(sub)
        try:
            await self._run(sub, None)
        finally:
            group = self.user_subs.get(key)
            if group is not None:
                group.discard(sub)
        return ws

    async def _run(self, sub: Subscriber, on_message) -> None:
        writer = asyncio.create_task(self._writer(sub))
        try:
            async for msg in sub.ws:
                if msg.type == WSMsgType.TEXT and on_message is not None:
                    reply = on_message(sub, msg.data)
                    if reply is not None:
                        sub.push(reply, droppable=False)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer

    async def _writer(self, sub: Subscriber) -> None:
        try:
            while True:
                item = await sub.queue.get()
                if isinstance(item, tuple):
                    await sub.ws.close(code=item[1], message=item[2].encode())
                    return
                await sub.ws.send_frame(item, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:  # peer went away mid-send
            log.debug("websocket writer stopped: %s", exc)

    def _on_market_message(self, sub: Subscriber, text: str) -> bytes | None:
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, as on Binance's stream endpoints."""
        try:
            request = json.loads(text)
            method, params, ident = request["method"], request.get("params", []), request.get("id")
        except (ValueError, KeyError, TypeError):
            return json.dumps({"code": 2, "msg": "Invalid request"}).encode()
        names = [c for c in (canonical_stream(str(n), self.symbols) for n in params) if c]
        if method == "SUBSCRIBE":
            sub.streams.extend(n for n in names if n not in sub.streams)
        elif method == "UNSUBSCRIBE":
            sub.streams[:] = [n for n in sub.streams if n not in names]
        elif method == "LIST_SUBSCRIPTIONS":
            return json.dumps({"result": sub.streams, "id": ident}).encode()
        else:
            return json.dumps({"code": 2, "msg": f"Invalid method {method}", "id": ident}).encode()
        return json.dumps({"result": None, "id": ident}).encode()

    def describe(self) -> dict:
        return {
            "market_sockets": len(self.market_subs),
            "user_sockets": sum(len(g) for g in self.user_subs.values()),
            "frames_sent": self.frames_sent,
            "frames_dropped_slow_clients": sum(s.dropped for s in self.market_subs),
        }
