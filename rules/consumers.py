"""The WebSocket order-check lane for bots (issue 19): ``/ws/orders/check``.

Transport only. One persistent socket carries many checks; each is answered by
``api_orders.order_check_answer``, the function behind ``POST /api/v1/orders/check`` (the same
token check, permissions, validation, access, gate service, order log row, status and body), so
the two doors cannot drift apart. docs/GATE_LANE.md is the protocol:

* the token comes in the first frame ``{"type": "auth", "token": "<access JWT>"}`` (or as the
  subprotocol ``bearer.<JWT>`` beside ``riskdesk.orders.v1``), never in the URL, whose query
  string lands in access logs;
* a check is ``{"id": <client's id>, "order": {<the REST body>}}`` and its answer
  ``{"type": "check", "id": <the same>, "status": <the REST status>, "body": <the REST body>}``;
* a bad frame (not JSON, nested too deep, binary, too large, no order) is answered with an
  ``error`` frame carrying a 400 and the socket stays open;
* the token and the user are checked again on every check and every ACCESS_CACHE_S while idle:
  an expired token, a deactivated user (401) or one who lost their desk role (403) gets an error
  frame and the socket closes (4401 / 4403), as the REST check would refuse them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError

from rules import api_orders

log = logging.getLogger(__name__)

SUBPROTOCOL = "riskdesk.orders.v1"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
AUTH_TIMEOUT_S = 10.0  # a socket that has not authenticated by then is closed
MAX_FRAME = 64 * 1024  # as the HTTP lane's body limit; an order is ~200 bytes
MAX_ID_LENGTH = 64
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
ENVELOPE_KEYS = frozenset(("type", "id", "order"))
MAX_IN_FLIGHT = 64  # checks of one socket answered concurrently (answers still in order)
MIN_RECHECK_S = 0.2  # the idle re-check runs every ACCESS_CACHE_S, never more often than this


def _frame(kind: bytes, request_id: bytes, status: int, body: bytes) -> str:
    # The REST body is spliced in as rendered (render_json's bytes), not parsed and re-encoded.
    return (b'{"type":"%s","id":%s,"status":%d,"body":%s}' % (kind, request_id, status, body)).decode()


def _error(request_id: bytes, status: int, detail: Any) -> str:
    return _frame(
        b"error", request_id, status, orjson.dumps(detail if isinstance(detail, dict) else {"detail": detail})
    )


class OrderCheckConsumer(AsyncWebsocketConsumer):
    """One bot connection: authenticate once, then check orders as fast as they come."""

    # No channel layer: nothing is pushed to this socket from elsewhere, so it needs no channel
    # (a Redis round trip to open, a reader task per socket) and keeps working with Redis down
    # (its checks then answer LIVE_STATE_UNAVAILABLE, as the REST check does).
    channel_layer_alias = "__order_lane_has_no_layer__"

    authorization: bytes | None = None
    watchdog: asyncio.Task | None = None
    auth_timer: asyncio.TimerHandle | None = None
    closed = False
    in_flight: collections.deque

    async def dispatch(self, message: dict) -> None:
        # channels' AsyncConsumer.dispatch first closes stale database connections in a thread, for
        # every message: a thread hop per check, which was most of the lane's CPU. The lane reaches
        # the database only through gate.off_loop, which closes stale connections around its call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.in_flight = collections.deque()
        # The answers' messages in the language of the handshake's Accept-Language (the default without).
        accept = next((v for k, v in self.scope.get("headers") or [] if k == b"accept-language"), None)
        self.language = api_orders.language_of(accept)
        offered = self.scope.get("subprotocols") or []
        token = next(
            (p[len(TOKEN_SUBPROTOCOL_PREFIX) :] for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)), None
        )
        # Echo only the protocol name: the token must not come back in a response header.
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if token:
            await self._authenticate(token, b"null")
        else:
            loop = asyncio.get_running_loop()
            self.auth_timer = loop.call_later(AUTH_TIMEOUT_S, lambda: asyncio.ensure_future(self._auth_timeout()))

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        if self.watchdog is not None:
            self.watchdog.cancel()
        for task in getattr(self, "in_flight", ()):
            task.cancel()

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # Nothing after our close (a check finishing, the idle re-check): the server would refuse
        # the message and the task die with an error; the client that left wants nothing more.
        if self.closed:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except (OSError, RuntimeError):  # the client left mid-send (uvicorn: ClientDisconnected)
            self.closed = True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return  # frames still arriving after we closed
        if text_data is None:
            await self.send(_error(b"null", 400, _("Send text frames of JSON, not binary frames.")))
            return
        raw = text_data.encode()
        if len(raw) > MAX_FRAME:
            await self.send(_error(b"null", 400, _("A frame holds at most %(n)d bytes.") % {"n": MAX_FRAME}))
            return
        try:
            frame = api_orders.parse_json(raw)
        except ParseError as exc:
            await self.send(_error(b"null", 400, exc.detail))
            return
        if type(frame) is not dict:
            await self.send(_error(b"null", 400, _("A frame is a JSON object.")))
            return
        request_id = frame.get("id")
        if request_id is not None and not (
            (type(request_id) is str and len(request_id) <= MAX_ID_LENGTH) or type(request_id) is int
        ):
            await self.send(
                _error(
                    b"null",
                    400,
                    {"id": [_("A string of at most %(n)d characters or an integer.") % {"n": MAX_ID_LENGTH}]},
                )
            )
            return
        try:
            rid = orjson.dumps(request_id)
        except orjson.JSONEncodeError:  # an integer past 64 bits
            await self.send(
                _error(
                    b"null",
                    400,
                    {"id": [_("A string of at most %(n)d characters or an integer.") % {"n": MAX_ID_LENGTH}]},
                )
            )
            return
        kind = frame.get("type", "check")
        if kind == "auth":
            token = frame.get("token")
            if type(token) is not str or not token:
                await self.send(_error(rid, 400, {"token": [_("An access token is required.")]}))
                return
            await self._authenticate(token, rid)
            return
        if kind != "check" or not frame.keys() <= ENVELOPE_KEYS or "order" not in frame:
            await self.send(
                _error(
                    rid,
                    400,
                    _('A check frame is {"id": …, "order": {…}}; authenticate with {"type": "auth", "token": …}.'),
                )
            )
            return
        if self.authorization is None:
            await self._refuse(rid, 401, _('Authenticate first: {"type": "auth", "token": …}.'), CLOSE_UNAUTHENTICATED)
            return
        # The next frame is read while this check waits on Redis: a bot's checks overlap (their
        # round trips share the gate's connection) instead of queueing one round trip behind
        # another, and the answers still leave in the order the checks came (each waits for the one
        # before it). At most MAX_IN_FLIGHT at a time: past that the socket is read no further.
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait({self.in_flight[0]})
            self._forget_done()
        previous = self.in_flight[-1] if self.in_flight else None
        self.in_flight.append(asyncio.ensure_future(self._check(rid, frame["order"], previous)))
        self._forget_done()

    async def _check(self, rid: bytes, order: Any, previous: asyncio.Future | None) -> None:
        authorization = self.authorization
        try:
            status, payload, _headers = await api_orders.order_check_answer(
                authorization, data=order, language=self.language
            )
        except Exception:  # as the HTTP lane: logged like Django's, a bare 500 (nothing about the cause)
            log.exception("order lane: check failed")
            status, payload = 500, b'{"detail":"A server error occurred."}'
        if previous is not None:
            await asyncio.wait({previous})
        if self.closed:
            return
        await self.send(_frame(b"check", rid, status, payload))
        if status in (401, 403):  # the token expired or the user lost access since the last check
            await self._close(CLOSE_UNAUTHENTICATED if status == 401 else CLOSE_FORBIDDEN)

    def _forget_done(self) -> None:
        while self.in_flight and self.in_flight[0].done():
            self.in_flight.popleft()

    # ----------------------------------------------------------------------- auth

    async def _authenticate(self, token: str, rid: bytes) -> None:
        authorization = b"Bearer " + token.encode()
        status, payload = await api_orders.order_lane_access(authorization)
        if status != 200:
            await self.send(_frame(b"auth", rid, status, payload))
            await self._close(CLOSE_UNAUTHENTICATED if status == 401 else CLOSE_FORBIDDEN)
            return
        self.authorization = authorization
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None
        await self.send(_frame(b"auth", rid, 200, payload))
        if self.watchdog is None:
            self.watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """Between checks, the token and the user as the next check would find them: an idle lane of
        a user who was deactivated or lost their role is closed too, not only a busy one."""
        while not self.closed:
            await asyncio.sleep(max(api_orders.ACCESS_CACHE_S, MIN_RECHECK_S))
            if self.closed or self.authorization is None:
                return
            try:
                status, payload = await api_orders.order_lane_access(self.authorization)
            except Exception:  # e.g. the database away for a moment: the next check decides
                log.warning("order lane: access re-check failed", exc_info=True)
                continue
            if status != 200:
                await self._refuse_bytes(b"null", status, payload)
                return

    async def _auth_timeout(self) -> None:
        if self.authorization is None and not self.closed:
            await self._refuse(
                b"null",
                401,
                _("No authentication within %(s)d seconds.") % {"s": AUTH_TIMEOUT_S},
                CLOSE_UNAUTHENTICATED,
            )

    async def _refuse(self, rid: bytes, status: int, detail: Any, code: int) -> None:
        await self.send(_error(rid, status, detail))
        await self._close(code)

    async def _refuse_bytes(self, rid: bytes, status: int, payload: bytes) -> None:
        await self.send(_frame(b"error", rid, status, payload))
        await self._close(CLOSE_UNAUTHENTICATED if status == 401 else CLOSE_FORBIDDEN)

    async def _close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            self.authorization = None
            with contextlib.suppress(Exception):  # the client may be gone already
                await self.close(code=code)
