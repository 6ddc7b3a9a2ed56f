from __future__ import annotations

import logging
from decimal import Decimal

from celery import shared_task
from django.db import transaction

from accounts.models import ExchangeAccount
from marketdata import live, services
from marketdata.exchange import ExchangeError
from marketdata.sink import WARNING, alert_clear, alert_raise

log = logging.getLogger(__name__)


@shared_task
def sync_positions_task() -> dict[str, int]:
    """REST reconciliation: the exchange's positions against the stream state. Drift raises
    an alert and asks the stream process to re-sync that account. Idempotent."""
    checked = drifted = 0
    for account in ExchangeAccount.objects.filter(enabled=True).exclude(api_key_encrypted=""):
        try:
            differences = services.positions_reconcile(account=account)
        except ExchangeError as exc:
            log.warning("reconciling %s failed: %s", account, exc)
            continue
        checked += 1
        with transaction.atomic():
            if differences:
                drifted += 1
                live.resync_request(account.id)
                alert_raise(
                    account_id=account.id,
                    rule="position_drift",
                    subject="positions",
                    level=WARNING,
                    reason_code="POSITION_DRIFT",
                    value=Decimal(len(differences)),
                    limit=Decimal(0),
                    mark_price=None,
                    details={"differences": differences},
                    message="The exchange's positions differ from the desk's stream state; a re-sync was requested.",
                )
            else:
                alert_clear(account_id=account.id, rule="position_drift", subject="positions")
    return {"checked": checked, "drifted": drifted}


@shared_task(autoretry_for=(ExchangeError,), retry_backoff=60, max_retries=5)
def refresh_symbols_task() -> int:
    return services.symbols_sync()


@shared_task(autoretry_for=(ExchangeError,), retry_backoff=60, max_retries=5)
def refresh_brackets_task() -> int:
    return services.brackets_sync()


@shared_task(autoretry_for=(ExchangeError,), retry_backoff=300, max_retries=3)
def refresh_klines_task(days: float = 2.0, keep_days: float = 400.0) -> dict[str, int]:
    """Daily: the last ``days`` of klines for every symbol the desk has bars of or trades, replacing
    the marks bars of those minutes with the exchange's (beat row from migration marketdata/0003),
    then bars older than ``keep_days`` are deleted (both are the beat row's kwargs, in the admin)."""
    from datetime import timedelta

    from django.utils import timezone

    from marketdata import bars
    from marketdata.models import MinuteBar, Symbol

    symbols = sorted(
        set(MinuteBar.objects.order_by().values_list("symbol", flat=True).distinct())
        | set(Symbol.objects.filter(status="TRADING").values_list("name", flat=True))
    )
    end = timezone.now().replace(second=0, microsecond=0)
    result = bars.backfill(symbols=symbols, start_ms=bars.to_ms(end - timedelta(days=days)), end_ms=bars.to_ms(end))
    pruned = bars.prune(before=end - timedelta(days=keep_days))
    if pruned:
        log.info("market history: %d bars older than %s days deleted", pruned, keep_days)
    return result.bars
