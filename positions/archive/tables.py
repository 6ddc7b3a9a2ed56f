"""What is archived: one TableSpec per table, with its columns' exact Arrow types.

A table is archived by UTC day of `time_field`; a row is due when `due()` says so (older than the
retention, and finished: a resolved alert, an executed/expired/dismissed risk action). Rows another
hot row still points at (an alert with deliveries or a risk action left) wait: deleting them would
cascade or null the pointer, and a row is never deleted unless it is in the archive."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q

MONEY = pa.decimal128(32, 12)
UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    model_label: str
    time_field: str
    columns: tuple[tuple[str, pa.DataType], ...]
    # Extra conditions beyond "time_field before the cutoff" (and where the cutoff applies instead).
    due: Callable[[models.QuerySet, dt.datetime], models.QuerySet] = field(default=lambda qs, cutoff: qs, compare=False)
    # Archive these first: their rows point at this table's rows.
    after: tuple[str, ...] = ()

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, typ) for name, typ in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def due_rows(self, cutoff: dt.datetime) -> models.QuerySet:
        qs = self.model._default_manager.filter(**{f"{self.time_field}__lt": cutoff})
        return self.due(qs, cutoff)


def _alerts_due(qs: models.QuerySet, cutoff: dt.datetime) -> models.QuerySet:
    from alerts.models import AlertStatus, Delivery
    from rules.models import RiskAction

    return qs.filter(status=AlertStatus.RESOLVED, resolved_at__lt=cutoff).filter(
        ~Exists(Delivery.objects.filter(alert=OuterRef("pk"))),
        ~Exists(RiskAction.objects.filter(alert=OuterRef("pk"))),
    )


def _deliveries_due(qs: models.QuerySet, cutoff: dt.datetime) -> models.QuerySet:
    # A delivery goes with its resolved alert; digests (no alert) stay: folded rows point at them.
    from alerts.models import AlertStatus

    return qs.filter(alert__isnull=False, alert__status=AlertStatus.RESOLVED, alert__resolved_at__lt=cutoff)


def _risk_actions_due(qs: models.QuerySet, cutoff: dt.datetime) -> models.QuerySet:
    from rules.models import RiskAction

    done = (RiskAction.Status.EXECUTED, RiskAction.Status.EXPIRED, RiskAction.Status.DISMISSED)
    return qs.filter(status__in=done).filter(Q(decided_at__isnull=True) | Q(decided_at__lt=cutoff))


I64 = pa.int64()
S = pa.string()
B = pa.bool_()

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in [
        TableSpec(
            "orderlog",
            "positions.OrderLog",
            "created_at",
            (
                ("id", I64),
                ("created_at", UTC_TS),
                ("account_id", I64),
                ("source", S),
                ("user_id", I64),
                ("token_id", S),
                ("symbol", S),
                ("side", S),
                ("position_side", S),
                ("order_type", S),
                ("quantity", MONEY),
                ("price", MONEY),
                ("reduce_only", B),
                ("client_order_id", S),
                ("decision", S),
                ("reason_codes", S),  # JSON text
                ("details", S),  # JSON text
                ("exchange_order_id", S),
                ("exchange_status", S),
            ),
        ),
        TableSpec(
            "tickerhistory",
            "marketdata.TickerHistory",
            "time",
            (
                ("id", I64),
                ("symbol_id", I64),
                ("time", UTC_TS),
                ("mark_price", MONEY),
                ("index_price", MONEY),
                ("funding_rate", pa.decimal128(16, 10)),
            ),
        ),
        TableSpec(
            "accountsnapshot",
            "positions.AccountSnapshot",
            "time",
            (
                ("id", I64),
                ("account_id", I64),
                ("time", UTC_TS),
                ("wallet_balance", MONEY),
                ("margin_balance", MONEY),
                ("maint_margin", MONEY),
                ("unrealized_pnl", MONEY),
                ("realized_pnl_today", MONEY),
                ("margin_ratio", pa.decimal128(20, 10)),
            ),
        ),
        TableSpec(
            "delivery",
            "alerts.Delivery",
            "created_at",
            (
                ("id", I64),
                ("alert_id", I64),
                ("channel_id", I64),
                ("event", S),
                ("level", I64),
                ("status", S),
                ("attempts", I64),
                ("next_attempt_at", UTC_TS),
                ("claimed_at", UTC_TS),
                ("sent_at", UTC_TS),
                ("last_error", S),
                ("idempotency_key", S),
                ("snapshot", S),
                ("rate_limited", B),
                ("held_reason", S),
                ("digest_id", I64),
                ("created_at", UTC_TS),
            ),
            due=_deliveries_due,
        ),
        TableSpec(
            "riskaction",
            "rules.RiskAction",
            "created_at",
            (
                ("id", I64),
                ("account_id", I64),
                ("alert_id", I64),
                ("trigger", S),
                ("kind", S),
                ("status", S),
                ("plan", S),
                ("result", S),
                ("created_at", UTC_TS),
                ("decided_by_id", I64),
                ("decided_at", UTC_TS),
                ("decision_reason", S),
                ("executed_at", UTC_TS),
            ),
            due=_risk_actions_due,
        ),
        TableSpec(
            "alert",
            "alerts.Alert",
            "opened_at",
            (
                ("id", I64),
                ("account_id", I64),
                ("rule", S),
                ("subject", S),
                ("level", I64),
                ("reason_code", S),
                ("message", S),
                ("value", MONEY),
                ("limit", MONEY),
                ("mark_price", MONEY),
                ("details", S),
                ("status", S),
                ("open_key", S),
                ("opened_at", UTC_TS),
                ("escalated_at", UTC_TS),
                ("acknowledged_at", UTC_TS),
                ("acknowledged_by_id", I64),
                ("resolved_at", UTC_TS),
                ("resolved_by_id", I64),
                ("note", S),
                ("resolution", S),
                ("value_at_open", MONEY),
                ("peak_value", MONEY),
                ("reopen_count", I64),
                ("notified_level", I64),
                ("message_code", S),
                ("message_params", S),
                ("updated_at", UTC_TS),
            ),
            due=_alerts_due,
            after=("delivery", "riskaction"),
        ),
        TableSpec(
            "fill",
            "positions.Fill",
            "time",
            (
                ("id", I64),
                ("account_id", I64),
                ("symbol", S),
                ("side", S),
                ("position_side", S),
                ("order_id", S),
                ("client_order_id", S),
                ("trade_id", I64),
                ("qty", MONEY),
                ("cum_qty", MONEY),
                ("price", MONEY),
                ("realized_pnl", MONEY),
                ("commission", MONEY),
                ("commission_asset", S),
                ("kind", S),
                ("time", UTC_TS),
                ("dedupe_key", S),
            ),
        ),
        TableSpec(
            "fundingfee",
            "positions.FundingFee",
            "time",
            (
                ("id", I64),
                ("account_id", I64),
                ("asset", S),
                ("symbol", S),
                ("amount", MONEY),
                ("time", UTC_TS),
            ),
        ),
        TableSpec(
            "closedposition",
            "positions.ClosedPosition",
            "closed_at",
            (
                ("id", I64),
                ("account_id", I64),
                ("symbol", S),
                ("side", S),
                ("qty", MONEY),
                ("entry_price", MONEY),
                ("exit_price", MONEY),
                ("realized_pnl", MONEY),
                ("commission", MONEY),
                ("reason", S),
                ("closed_at", UTC_TS),
                ("details", S),
                ("exchange_order_id", S),
                ("close_key", S),
            ),
        ),
    ]
}

# Deliveries and risk actions before the alerts they point at.
ORDER = [
    "orderlog",
    "tickerhistory",
    "accountsnapshot",
    "delivery",
    "riskaction",
    "alert",
    "fill",
    "fundingfee",
    "closedposition",
]

DEFAULT_RETENTION_DAYS = {
    "orderlog": 7,
    "tickerhistory": 30,
    "accountsnapshot": 30,
    "delivery": 180,
    "riskaction": 180,
    "alert": 180,
    "fill": 180,
    "fundingfee": 180,
    "closedposition": 180,
}


def retention_days(table: str) -> int | None:
    """Days the table stays hot: the admin's ArchivePolicy, else settings, else the default.
    None: archiving of this table is switched off in the admin."""
    from positions.models import ArchivePolicy

    policy = ArchivePolicy.objects.filter(table=table).first()
    if policy is not None:
        return policy.retention_days if policy.enabled else None
    configured = getattr(settings, "ARCHIVE_RETENTION_DAYS", {}) or {}
    return int(configured.get(table, DEFAULT_RETENTION_DAYS[table]))


def cutoff_for(table: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """The start of the UTC day `retention` days ago: whole days are archived, one night each.
    A table switched off gets a cutoff at the epoch, so nothing is due."""
    days = retention_days(table)
    if days is None:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=days)).date()
    return dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
