from __future__ import annotations

from django.urls import path

from alerts.consumers import DeskConsumer

# WebSocket routes. The live desk pushes alert, risk and position changes per account.
websocket_urlpatterns: list = [
    path("ws/desk/", DeskConsumer.as_asgi()),
]
