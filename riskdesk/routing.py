from __future__ import annotations

# WebSocket routes (the live desk at /ws/desk/ arrives with the dashboard issue).
websocket_urlpatterns: list = []
