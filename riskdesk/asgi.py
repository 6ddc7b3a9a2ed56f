"""One ASGI application serves HTTP (Django, DRF, admin) and WebSocket (Channels) on one port."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
django_asgi = get_asgi_application()  # loads the apps before anything imports a model

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from riskdesk.routing import websocket_urlpatterns  # noqa: E402

http_app = django_asgi
if settings.SERVE_STATIC:
    # The demo has no nginx in front; production sets SERVE_STATIC=false and lets nginx serve /static/.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
