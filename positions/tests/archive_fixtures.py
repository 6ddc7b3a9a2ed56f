"""Rows with times in the past for the archive tests (auto_now_add fields are set after insert)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from positions.archive.services import _times_as_given
from positions.models import OrderLog

DAY1 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def make_order_logs(account, n: int, *, start: dt.datetime = DAY1, step_s: float = 60.0) -> list[int]:
    """n rows, one every step_s seconds from start, in key order."""
    rows = [
        OrderLog(
            created_at=start + dt.timedelta(seconds=step_s * i),
            account=account,
            source="api",
            symbol="BTCUSDT" if i % 2 else "ETHUSDT",
            side="BUY" if i % 3 else "SELL",
            order_type="LIMIT",
            quantity=Decimal("0.001") * (i + 1),
            price=Decimal("65000.123456789012") + i,
            client_order_id=f"c{i}",
            decision="denied" if i % 5 == 0 else "allowed",
            reason_codes=["MAX_LEVERAGE"] if i % 5 == 0 else [],
            details={"i": i, "leverage": "12.5"},
        )
        for i in range(n)
    ]
    with _times_as_given(OrderLog):  # created_at is auto_now_add
        OrderLog.objects.bulk_create(rows, batch_size=1000)
    return list(OrderLog.objects.order_by("pk").values_list("pk", flat=True))


def snapshot(model) -> dict[int, tuple]:
    fields = [f.attname for f in model._meta.concrete_fields]
    return {row[0]: row for row in model._base_manager.order_by("pk").values_list(*fields)}
