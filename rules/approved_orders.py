"""The client order ids the desk itself sent (the gate's approved orders, the kill switch's and the
automatic actions' closes): what ORDER_BYPASSED_GATE compares the exchange's orders with.

Written to the cache before the order leaves for the exchange, so the user stream's NEW event
never arrives before its id; read by the stream process's event writer thread. The order log
(OrderLog rows allowed / submitted / unknown with the client id) is the fallback when the cache
lost the entry or is away."""

from __future__ import annotations

import logging

from django.core.cache import cache

log = logging.getLogger(__name__)

KEY = "rd:approved:{account}:{client_id}"
TTL_S = 7 * 86_400  # longer than any order rests in practice; the order log covers the rest


def approved_add(account_id: int, client_order_id: str) -> None:
    """Mark ``client_order_id`` as sent by the desk. A cache error is logged, not raised: the order
    log still holds the id (a bypass alert would then need the log row to be written first)."""
    if not client_order_id:
        return
    try:
        cache.set(KEY.format(account=account_id, client_id=client_order_id), 1, timeout=TTL_S)
    except Exception as exc:  # the cache away: the order log is the fallback
        log.warning("recording approved client id %s failed: %s", client_order_id, exc)


def approved_in_cache(account_id: int, client_order_id: str) -> bool | None:
    """True / False from the cache; None when the cache could not answer."""
    try:
        return cache.get(KEY.format(account=account_id, client_id=client_order_id)) is not None
    except Exception as exc:
        log.warning("reading approved client id %s failed: %s", client_order_id, exc)
        return None


def approved_in_log(account_id: int, client_order_id: str) -> bool:
    from positions.models import OrderDecision, OrderLog, OrderSource

    decisions = (OrderDecision.ALLOWED, OrderDecision.SUBMITTED, OrderDecision.UNKNOWN)
    return (
        OrderLog.objects.filter(account_id=account_id, client_order_id=client_order_id[:64], decision__in=decisions)
        .exclude(source=OrderSource.EXCHANGE)
        .exists()
    )


def approved(account_id: int, client_order_id: str) -> bool:
    """Whether the desk sent this order: the cache first, the order log when the cache says no or is away."""
    if not client_order_id:
        return False
    if approved_in_cache(account_id, client_order_id):
        return True
    return approved_in_log(account_id, client_order_id)
