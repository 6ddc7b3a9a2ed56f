"""The live desk socket. Transport only: who may connect, which groups they join, and
one handler per event type that forwards the payload as it came."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts import access
from alerts.broadcast import account_group

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class DeskConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        account_ids = await database_sync_to_async(_visible_account_ids)(user)
        if account_ids is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        # Join before accepting, so a client that sees the socket open misses nothing sent after.
        for group in [account_group(None), *(account_group(i) for i in sorted(account_ids))]:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()

    async def _refuse(self, code: int) -> None:
        # Accept, then close: a close code only reaches the browser on an open socket, and the
        # dashboard tells "log in again" (4401) from "no access" (4403) by it.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """The desk only listens; anything a client sends is ignored."""

    async def alert_changed(self, event: dict) -> None:
        await self.send_json(event)

    async def risk_changed(self, event: dict) -> None:
        await self.send_json(event)

    async def position_changed(self, event: dict) -> None:
        await self.send_json(event)


def _visible_account_ids(user) -> set[int] | None:
    """The accounts this user may watch; None for an outsider, who may watch nothing."""
    if not access.is_desk_member(user):
        return None
    return access.visible_account_ids(user)
