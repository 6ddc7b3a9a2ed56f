"""The stream engine's Django side: persistence, live state and alerts for what the book reports."""

from __future__ import annotations

import dataclasses
import logging
import time
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from marketdata import live
from marketdata.services import marks_write
from marketdata.streams import FeedStatus
from positions.book import AccountRisk, PositionRisk
from positions.services import order_event_record, positions_write, snapshot_write

log = logging.getLogger(__name__)

CRITICAL, WARNING = 30, 20


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def account_state(risk: AccountRisk, positions: list[PositionRisk], open_orders: list[dict]) -> dict[str, Any]:
    """JSON-safe live figures for one account: Decimals as strings, with the time they describe."""
    figures = {k: _plain(v) for k, v in dataclasses.asdict(risk).items() if k != "per_asset"}
    return {
        "account_id": risk.account_id,
        "published_ms": live.now_ms(),
        "figures": figures,
        "positions": [{k: _plain(v) for k, v in dataclasses.asdict(p).items()} for p in positions],
        "open_orders": _plain(open_orders),
    }


async def push_risk(account_id: int, state: dict[str, Any]) -> None:
    """The account's live figures to the sockets allowed to see it (group naming: alerts.broadcast)."""
    from channels.layers import get_channel_layer

    from alerts.broadcast import account_group

    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(account_group(account_id), {"type": "risk.changed", "account": state})


def alert_raise(**kwargs: Any) -> None:
    from alerts import services as alert_services

    alert_services.alert_raise(**kwargs)


def alert_clear(**kwargs: Any) -> None:
    from alerts import services as alert_services

    alert_services.alert_clear(**kwargs)


PERSIST_EVERY_S = 5.0  # Position rows and snapshots per account; the live state and the push are per flush


class DjangoSink:
    """Implements streams.Sink against the database, the cache and the channel layer."""

    def __init__(self) -> None:
        self._persisted_at: dict[int, float] = {}

    async def account_changed(
        self, account_id: int, risk: AccountRisk, positions: list[PositionRisk], open_orders: list[dict]
    ) -> None:
        state = account_state(risk, positions, open_orders)
        live.accounts_set({account_id: state})
        await push_risk(account_id, state)
        now = time.monotonic()
        if now - self._persisted_at.get(account_id, 0.0) >= PERSIST_EVERY_S:
            self._persisted_at[account_id] = now
            await sync_to_async(self._persist_account)(account_id, risk, positions)

    @staticmethod
    def _persist_account(account_id: int, risk: AccountRisk, positions: list[PositionRisk]) -> None:
        with transaction.atomic():
            positions_write(account_id=account_id, positions=positions)
            snapshot_write(account_id=account_id, risk=risk)

    async def marks_changed(self, marks: dict[str, tuple[Decimal, int]]) -> None:
        live.marks_merge({s: [str(p), ts] for s, (p, ts) in marks.items()})
        await sync_to_async(marks_write)(marks=marks)

    async def feed_changed(self, status: FeedStatus, *, became_stale: bool, recovered: bool) -> None:
        live.feed_set(status.name, status.as_dict())
        if became_stale:
            await sync_to_async(self._feed_alert)(status)
        elif recovered:
            await sync_to_async(self._feed_clear)(status)

    @staticmethod
    def _feed_alert(status: FeedStatus) -> None:
        with transaction.atomic():
            alert_raise(
                account_id=None,
                rule="feed_stale",
                subject=status.name,
                level=CRITICAL,
                reason_code="FEED_STALE",
                value=None,
                limit=None,
                mark_price=None,
                details=status.as_dict(),
                message=f"The {status.name} feed is stale: no data since {status.last_message_ms} (epoch ms). "
                "Orders are denied until it recovers.",
            )

    @staticmethod
    def _feed_clear(status: FeedStatus) -> None:
        with transaction.atomic():
            alert_clear(account_id=None, rule="feed_stale", subject=status.name, details=status.as_dict())

    async def exchange_event(self, account_id: int, event: dict) -> None:
        if event.get("e") == "ORDER_TRADE_UPDATE":
            if (event.get("o") or {}).get("x") == "TRADE":
                live.fills_add(account_id)  # the order gate's daily fill cap
            await sync_to_async(order_event_record)(account_id=account_id, event=event)
        elif event.get("e") == "MARGIN_CALL":
            await sync_to_async(self._margin_call)(account_id, event)

    @staticmethod
    def _margin_call(account_id: int, event: dict) -> None:
        for row in event.get("p", []):
            with transaction.atomic():
                alert_raise(
                    account_id=account_id,
                    rule="margin_call",
                    subject=f"{row.get('s')}:{row.get('ps')}",
                    level=CRITICAL,
                    reason_code="EXCHANGE_MARGIN_CALL",
                    value=_dec(row.get("mm")),
                    limit=None,
                    mark_price=_dec(row.get("mp")),
                    details=_plain(row),
                    message="The exchange sent a margin call for this position.",
                )

    async def drift_found(self, account_id: int, differences: list[dict]) -> None:
        await sync_to_async(self._drift)(account_id, differences)

    @staticmethod
    def _drift(account_id: int, differences: list[dict]) -> None:
        with transaction.atomic():
            alert_raise(
                account_id=account_id,
                rule="position_drift",
                subject="positions",
                level=WARNING,
                reason_code="POSITION_DRIFT",
                value=Decimal(len(differences)),
                limit=Decimal(0),
                mark_price=None,
                details={"differences": differences},
                message="The desk's positions differed from the exchange's; the desk re-synced to the exchange.",
            )

    async def resync_requests(self) -> list[int]:
        return live.resync_take()


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None
