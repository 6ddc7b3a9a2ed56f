from __future__ import annotations

from django.urls import path

from alerts.consumers import DeskConsumer
from rules.consumers import OrderCheckConsumer

# WebSocket routes. The live desk pushes alert, risk and position changes per account.
websocket_urlpatterns: list = [
    path("ws/desk/", DeskConsumer.as_asgi()),
    # Bots: a persistent lane for /orders/check (docs/GATE_LANE.md); the token comes in the first frame.
    path("ws/orders/check", OrderCheckConsumer.as_asgi()),
]
