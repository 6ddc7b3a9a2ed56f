"""Per-account baselines for the anomaly detectors, learned from the order log and fills, and the
loader that hands them (with each account's detector levels) to the stream process's watch.

``baselines_recompute`` is the beat job (rules.tasks.baselines_recompute_task): it reads the last
BASELINE_DAYS of each account's orders as the exchange reported them (OrderLog rows of source
"exchange": NEW and CANCELED executions) and its fills, and stores one AccountBaseline per account.
An account with fewer than MIN_ORDERS orders keeps no row: it uses the desk-wide defaults.

The order log stays hot for 7 days by default (ARCHIVE_RETENTION_DAYS) and the baseline looks back
30: the rows are read through the archive's history (positions.archive.history.history_page: the
database and the Parquet files as one, an archived row never also hot), so archiving a day changes
no baseline."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, timedelta
from typing import Any

from django.utils import timezone

from rules import anomalies

log = logging.getLogger(__name__)

BASELINE_DAYS = 30
MIN_ORDERS = 20  # fewer orders than this say nothing about the account: the desk-wide defaults apply
# LOSS_VELOCITY's windows are seeded at start from the snapshots this far back: the 5-minute window,
# plus the time the first load may take to reach the watch (what is too old by then is dropped).
SEED_MARGIN_S = 60.0


HISTORY_ROWS_MAX = 10_000_000  # per account and table: far above 30 days of any account's orders
ORDER_COLUMNS = ("created_at", "symbol", "quantity", "price", "details")
FILL_COLUMNS = ("order_id", "symbol", "qty", "price")


def _archived(table: str, since: Any, now: Any) -> bool:
    """Whether any day of the window is in the archive (and not restored to the database)."""
    from positions.models import ArchiveBatch

    return ArchiveBatch.objects.filter(
        table=table,
        day__gte=since.astimezone(UTC).date(),
        day__lte=now.astimezone(UTC).date(),
        restored_at__isnull=True,
    ).exists()


def _rows(
    table: str, account_id: int, since: Any, now: Any, equals: tuple, columns: tuple, *, archived: bool
) -> Iterable[Mapping[str, Any]]:
    """One account's rows of ``table`` from ``since`` to ``now``, hot and archived alike. With days in
    the archive, through its history (positions.archive.history.history_page: the database and the
    Parquet files as one, every row once, all in memory); without, streamed from the database."""
    from positions.archive.history import Query, history_page
    from positions.archive.tables import TABLES

    spec = TABLES[table]
    field = spec.time_field
    if not archived:
        hot = spec.model._default_manager.filter(
            account_id=account_id, **{f"{field}__gte": since, f"{field}__lte": now}, **dict(equals)
        )
        return hot.values(*columns).iterator(chunk_size=5000)
    query = Query(
        table=table,
        day_from=since.astimezone(UTC).date(),
        day_to=now.astimezone(UTC).date(),
        account_ids=frozenset({account_id}),
        equals=equals,
        limit=HISTORY_ROWS_MAX,
    )
    _, rows = history_page(query)
    return (row for row in rows if since <= row[field] <= now)


def _history(account_id: int, since: Any, now: Any = None, archived: tuple[bool, bool] | None = None) -> dict[str, Any]:
    """``archived``: whether the order log and the fills have days of the window in the archive (asked
    once per run by the caller; None: asked here)."""
    from positions.models import OrderDecision, OrderSource

    now = now or timezone.now()
    orders_archived, fills_archived = archived or (_archived("orderlog", since, now), _archived("fill", since, now))
    order_times, cancel_times, notionals, symbols = [], [], [], set()
    observed = (("source", str(OrderSource.EXCHANGE)), ("decision", str(OrderDecision.OBSERVED)))
    for row in _rows("orderlog", account_id, since, now, observed, ORDER_COLUMNS, archived=orders_archived):
        created_at, symbol, qty, price = row["created_at"], row["symbol"], row["quantity"], row["price"]
        execution = (row["details"] or {}).get("execution")
        if execution == "NEW":
            order_times.append(created_at.timestamp())
            symbols.add(symbol)
            if qty and price:
                notionals.append(float(qty * price))
        elif execution in ("CANCELED", "EXPIRED"):
            cancel_times.append(created_at.timestamp())
    # Market orders rest at price 0: their size is what filled, per order.
    by_order: dict[str, float] = {}
    trades = (("kind", "trade"),)
    for row in _rows("fill", account_id, since, now, trades, FILL_COLUMNS, archived=fills_archived):
        order_id, symbol, qty, price = row["order_id"], row["symbol"], row["qty"], row["price"]
        symbols.add(symbol)
        by_order[order_id] = by_order.get(order_id, 0.0) + float(qty * price)
    notionals += list(by_order.values())
    return {"order_times": order_times, "cancel_times": cancel_times, "notionals": notionals, "symbols": symbols}


def baselines_recompute(*, account_ids: list[int] | None = None, now: Any = None) -> int:
    """Recompute and store every account's baseline; the number stored."""
    from accounts.models import ExchangeAccount
    from rules.models import AccountBaseline

    now = now or timezone.now()
    since = now - timedelta(days=BASELINE_DAYS)
    ids = account_ids if account_ids is not None else list(ExchangeAccount.objects.values_list("id", flat=True))
    archived = (_archived("orderlog", since, now), _archived("fill", since, now))
    stored = 0
    for account_id in ids:
        history = _history(account_id, since, now, archived)
        if len(history["order_times"]) < MIN_ORDERS:
            AccountBaseline.objects.filter(account_id=account_id).delete()
            continue
        values = anomalies.baseline_from_history(**history)
        AccountBaseline.objects.update_or_create(account_id=account_id, defaults=values)
        stored += 1
    return stored


def levels_load(account_ids: list[int]) -> dict[int, anomalies.Levels]:
    """Each account's detector levels from the profile that governs it (its own, else the default)."""
    from accounts.models import ExchangeAccount
    from rules.models import RiskProfile
    from rules.services import profile_for_account

    default = RiskProfile.objects.filter(is_default=True).first()
    made: dict[int | None, anomalies.Levels] = {}
    out: dict[int, anomalies.Levels] = {}
    for account in ExchangeAccount.objects.filter(pk__in=account_ids).select_related("risk_profile"):
        profile = profile_for_account(account, default=default)
        key = profile.pk if profile is not None else None
        if key not in made:
            made[key] = anomalies.Levels.from_values(profile.limit_values()) if profile else anomalies.DEFAULT
        out[account.id] = made[key]
    return out


def watch_load(watch: anomalies.AnomalyWatch, account_ids: list[int] | None = None) -> None:
    """The levels and baselines of ``account_ids`` (default: every account) into ``watch``, whole."""
    from accounts.models import ExchangeAccount
    from rules.models import AccountBaseline

    ids = account_ids if account_ids is not None else list(ExchangeAccount.objects.values_list("id", flat=True))
    rows = AccountBaseline.objects.filter(account_id__in=ids).values(
        "account_id",
        "orders_10s_median",
        "orders_10s_mad",
        "cancels_10s_median",
        "cancels_10s_mad",
        "notional_p99",
        "symbols",
        "hour_shares",
        "orders_seen",
    )
    baselines = {row["account_id"]: anomalies.baseline_of_row(row) for row in rows}
    desk = anomalies.desk_baseline(list(baselines.values()))
    # The first load of a process seeds LOSS_VELOCITY's windows (a fall that straddles a restart);
    # later loads leave the live windows alone.
    balances = None if watch.loaded else balance_windows_load(ids, now_s=watch.clock())
    watch.load(levels=levels_load(ids), baselines=baselines, desk=desk, balances=balances)


def balance_windows_load(account_ids: list[int], *, now_s: float) -> dict[int, list[tuple[float, float]]]:
    """Each account's margin balances of the last LOSS_WINDOW_S (+ SEED_MARGIN_S) from its snapshots
    (written every SNAPSHOT_EVERY_S by the stream process), oldest first, as (epoch s, balance): what
    the detector's windows held before a restart, as the evaluator reloads the day's start and peak
    equity from today's snapshots (rules.evaluator.load_day_states)."""
    from datetime import datetime

    from positions.models import AccountSnapshot

    wanted = set(account_ids)
    since = datetime.fromtimestamp(now_s - anomalies.LOSS_WINDOW_S - SEED_MARGIN_S, tz=UTC)
    rows = (
        AccountSnapshot.objects.filter(time__gte=since)
        .order_by("time")
        .values_list("account_id", "time", "margin_balance")
        .iterator(chunk_size=5000)
    )
    out: dict[int, list[tuple[float, float]]] = {}
    for account_id, at, margin_balance in rows:
        if account_id in wanted and margin_balance is not None:
            out.setdefault(account_id, []).append((at.timestamp(), float(margin_balance)))
    return out
