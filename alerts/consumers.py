"""The live desk socket. Transport only: who may connect, which groups they join, and
one handler per event type that forwards the payload as it came."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts import access
from accounts.models import User
from alerts.broadcast import groups_to_join, user_group, visible_part
from riskdesk.redis_clients import REDIS_DOWN

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LIVE_UNAVAILABLE = 4503  # Redis (the channel layer) is down: the page keeps its banner and retries


class DeskConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]
    visible: set[int] | None  # the accounts this user may see; None: every account
    accepted = False

    async def __call__(self, scope, receive, send) -> None:
        # With Redis down, joining a group (connect) and the layer's read of this socket's channel
        # (Channels runs it beside the client's messages) raise. Uncaught, the handshake answered
        # 500 and an open socket died with an error (issue 14). Either way the socket now opens if
        # it had not, tells the page, and closes with CLOSE_LIVE_UNAVAILABLE: the page keeps the
        # banner its status strip shows and reconnects with back-off, which succeeds once Redis is back.
        try:
            await super().__call__(scope, receive, send)
        except REDIS_DOWN:
            if not self.accepted:
                await self.accept()
            await self.send_json({"type": "live.unavailable"})
            await self.close(code=CLOSE_LIVE_UNAVAILABLE)

    async def accept(self, subprotocol=None, headers=None) -> None:
        await super().accept(subprotocol, headers)
        self.accepted = True

    async def connect(self) -> None:
        self.groups_joined, self.visible = [], set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        found = await database_sync_to_async(_groups_for)(user)
        if found is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        groups, self.visible = found
        self.user_id = user.pk
        # Join before accepting, so a client that sees the socket open misses nothing sent after.
        for group in [user_group(user.pk), *groups]:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()

    async def _refuse(self, code: int) -> None:
        # Accept, then close: a close code only reaches the browser on an open socket, and the
        # dashboard tells "log in again" (4401) from "no access" (4403) by it.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        try:
            for group in getattr(self, "groups_joined", []):
                await self.channel_layer.group_discard(group, self.channel_name)
        except REDIS_DOWN:
            pass  # the group entries expire on their own (channels_redis's group_expiry)

    async def receive_json(self, content, **kwargs) -> None:
        """The desk only listens; anything a client sends is ignored."""

    async def alert_changed(self, event: dict) -> None:
        await self.send_json(event)

    async def risk_changed(self, event: dict) -> None:
        # A trader's socket hears every account's figures (one message per flush for the whole
        # desk, alerts/broadcast.py) and passes on only those of the accounts they may see.
        mine = visible_part(event, self.visible)
        if mine is not None:
            await self.send_json(mine)

    async def position_changed(self, event: dict) -> None:
        await self.send_json(event)

    async def access_changed(self, event: dict) -> None:
        # What this user may see changed (accounts/signals.py): re-read it from the database, leave
        # the groups of accounts no longer theirs, or close when they may see nothing now.
        found = await database_sync_to_async(_groups_for_user_id)(self.user_id)
        if found is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        groups, self.visible = found
        wanted = [user_group(self.user_id), *groups]
        for group in set(self.groups_joined) - set(wanted):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(wanted) - set(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = wanted


def _groups_for(user) -> tuple[list[str], set[int] | None] | None:
    """The groups carrying what this user may watch and the accounts they may see (None: all);
    None for an outsider, who may watch nothing."""
    if not access.is_desk_member(user):
        return None
    if access.can_see_all_accounts(user):
        return groups_to_join(sees_all=True, account_ids=set()), None
    visible = access.visible_account_ids(user)
    return groups_to_join(sees_all=False, account_ids=visible), visible


def _groups_for_user_id(user_id: int) -> tuple[list[str], set[int] | None] | None:
    """As `_groups_for`, with the user as the database has them now (the scope's copy is stale)."""
    user = User.objects.filter(pk=user_id).first()
    return None if user is None else _groups_for(user)
