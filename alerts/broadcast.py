"""Live push to the desk over the channel layer. Called on commit, with ids, so a
socket never shows a state that was rolled back.

Group names come from `account_group` alone: the consumer joins with it and every
sender (alerts here, risk and positions later) sends with it, so the two cannot drift.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from alerts.models import Alert


def account_group(account_id: int | None) -> str:
    """The group of one exchange account. Desk-wide events (no account, e.g. a silent
    market-data stream) go to "desk", which every desk member joins."""
    return "desk" if account_id is None else f"acct.{int(account_id)}"


def alert_changed(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:  # deleted since the commit that scheduled this
        return
    _send(alert.account_id, {"type": "alert.changed", "alert": alert.snapshot()})


def _send(account_id: int | None, event: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(account_group(account_id), event)
