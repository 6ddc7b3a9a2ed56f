"""One ASGI application serves HTTP (Django, DRF, admin) and WebSocket (Channels) on one port.

With STREAMS_IN_PROCESS (the embedded demo), the stream engine runs inside this
process's event loop, started by the ASGI lifespan: the in-memory channel layer
does not cross processes, so the engine must live where the WebSocket consumers
are. In production the engine is its own process and Redis carries its pushes.

``POST /api/v1/orders/check`` with a Bearer token and a JSON body takes a lane in front of
Django (``CheckLane``): the same functions as the DRF view (rules/api_orders.py), on the event
loop, without Django's request cycle (signals, middleware, a thread per sync view). Anything
else on that path (a session cookie, another Accept, an unexpected host) goes to Django.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
django_asgi = get_asgi_application()  # loads the apps before anything imports a model

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from django.middleware.clickjacking import XFrameOptionsMiddleware  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.urls import reverse  # noqa: E402

from riskdesk.routing import websocket_urlpatterns  # noqa: E402
from rules import gate  # noqa: E402
from rules.api_orders import order_check_fast  # noqa: E402
from rules.consumers import OrderCheckConsumer  # noqa: E402

log = logging.getLogger(__name__)

http_app = django_asgi
if settings.SERVE_STATIC:
    # The demo has no nginx in front; production sets SERVE_STATIC=false and lets nginx serve /static/.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.exceptions import SuspiciousOperation
    from django.http import Http404

    class StaticFiles(ASGIStaticFilesHandler):
        """Django's handler, but a path out of /static/ (``/static/..%2f..%2f.env``) is a 404.
        Its finders refuse such a path with SuspiciousFileOperation, which the handler does not
        catch (only Http404): the request died as a 500, telling a prober the guard was there."""

        def serve(self, request):
            try:
                return super().serve(request)
            except SuspiciousOperation as exc:
                raise Http404("No such file.") from exc

    http_app = StaticFiles(django_asgi)

ORDER_LANE_PATH = "/ws/orders/check"
order_lane = OrderCheckConsumer.as_asgi()

router = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


class CheckLane:
    """``POST /orders/check`` for bots: what it takes, it answers exactly as OrderCheckApi would."""

    MAX_BODY = 64 * 1024  # an order is ~200 bytes; anything larger (or chunked) goes to Django's limits
    ACCEPTED = (None, b"*/*", b"application/json")  # DRF would pick its JSON renderer for these

    def __init__(self) -> None:
        self.path = reverse("v1:orders_check")
        self.hosts = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        self.headers = [(b"content-type", b"application/json"), (b"vary", b"Accept"), (b"allow", b"POST, OPTIONS")]
        self.headers += self._middleware_headers()

    @staticmethod
    def _middleware_headers() -> list[tuple[bytes, bytes]]:
        """The headers Django's security and clickjacking middleware add to a plain-HTTP answer,
        asked of the middleware once rather than restated here."""
        response = HttpResponse()
        before = set(response.headers)
        request = HttpRequest()
        SecurityMiddleware(lambda r: response).process_response(request, response)
        XFrameOptionsMiddleware(lambda r: response).process_response(request, response)
        return [(k.lower().encode(), v.encode()) for k, v in response.headers.items() if k not in before]

    def takes(self, scope: dict) -> bytes | None:
        """The Authorization header if the lane answers this request, else None (Django does)."""
        if scope["path"] != self.path or scope["method"] != "POST":
            return None
        h = dict(scope["headers"])  # ASGI names are lower-case bytes; a repeated header: the last
        authorization = h.get(b"authorization", b"")
        if not authorization.startswith(b"Bearer ") or h.get(b"accept") not in self.ACCEPTED:
            return None
        if h.get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
            return None
        length = h.get(b"content-length", b"")
        if not length.isdigit() or int(length) > self.MAX_BODY:
            return None
        domain, _port = split_domain_port(h.get(b"host", b"").decode("latin-1"))
        if not domain or not validate_host(domain, self.hosts):
            return None  # Django answers 400 DisallowedHost
        return authorization

    @staticmethod
    def _accept_language(scope: dict) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"accept-language":
                return value
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any, authorization: bytes) -> None:
        body = await self._body(receive)
        if body is None:
            return  # the client left
        try:
            status, payload, extra = await order_check_fast(authorization, body, self._accept_language(scope))
        except Exception:  # as Django: logged on django.request, a bare 500 (nothing about the cause)
            logging.getLogger("django.request").exception("Internal Server Error: %s", scope["path"])
            status, payload, extra = 500, b'{"detail":"A server error occurred."}', []
        headers = [*self.headers, (b"content-length", str(len(payload)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _body(receive: Any) -> bytes | None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)


check_lane = CheckLane()


class Lifespan:
    """Starts and stops the in-process stream engine (embedded mode only); at shutdown writes the
    order log's pending rows (atexit does too, but a worker's exit path is not always Python's)."""

    def __init__(self) -> None:
        self.engine = None

    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # the desk still serves pages; /health and the feed say why
                    log.exception("in-process streams failed to start")
                    await send({"type": "lifespan.startup.complete", "message": str(exc)})
                    continue
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.engine is not None:
                    await self.engine.stop()
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(gate.order_log_flush)()
        except Exception:  # the rows stay in memory; atexit tries once more
            log.exception("order log: flush at shutdown failed")
        await gate.store_aclose()

    async def startup(self) -> None:
        if settings.STREAMS_IN_PROCESS:
            await self.start_streams()
        # What is loaded by now (Django, DRF, the apps: ~116k objects) lives as long as the
        # process, yet every full collection walks it: 130-170 ms on the bench machine, about
        # once per 5,000 checks (rows waiting for the order log writer age into the oldest
        # generation). At 1,000 checks/s that pause alone holds over 1 % of them past the 25 ms
        # p99 target. Frozen objects are left out of collections (measured: max 34 ms after).
        gc.freeze()

    async def start_streams(self) -> None:
        from asgiref.sync import sync_to_async

        from marketdata.management.commands.run_streams import account_specs, build_engine, refresh_reference

        await sync_to_async(refresh_reference)()
        specs = await sync_to_async(account_specs)()
        if specs:
            self.engine = build_engine(specs)
            await self.engine.start()


lifespan = Lifespan()


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http" and (authorization := check_lane.takes(scope)) is not None:
        await check_lane(scope, receive, send, authorization)
    elif scope["type"] == "websocket" and scope.get("path") == ORDER_LANE_PATH:
        # The bots' order-check lane authenticates by a JWT in its first frame (docs/GATE_LANE.md):
        # no cookie is read, so the origin check (which stops a cross-site page riding /ws/desk/'s
        # session cookie) protects nothing here, and a bot sends no Origin. The session stack's
        # thread hop per connection is saved too.
        await order_lane(scope, receive, send)
    else:
        await router(scope, receive, send)


async def django_application(scope, receive, send) -> None:
    """The same without the lane: every /orders/check through the DRF view. For measuring the lane
    against it (`bench.gate http --app riskdesk.asgi:django_application`) or to switch it off."""
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    else:
        await router(scope, receive, send)
