"""One ASGI application serves HTTP (Django, DRF, admin) and WebSocket (Channels) on one port.

With STREAMS_IN_PROCESS (the embedded demo), the stream engine runs inside this
process's event loop, started by the ASGI lifespan: the in-memory channel layer
does not cross processes, so the engine must live where the WebSocket consumers
are. In production the engine is its own process and Redis carries its pushes.
"""

from __future__ import annotations

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
django_asgi = get_asgi_application()  # loads the apps before anything imports a model

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from riskdesk.routing import websocket_urlpatterns  # noqa: E402

log = logging.getLogger(__name__)

http_app = django_asgi
if settings.SERVE_STATIC:
    # The demo has no nginx in front; production sets SERVE_STATIC=false and lets nginx serve /static/.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi)

router = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


class Lifespan:
    """Starts and stops the in-process stream engine (embedded mode only)."""

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
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if not settings.STREAMS_IN_PROCESS:
            return
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
    else:
        await router(scope, receive, send)
