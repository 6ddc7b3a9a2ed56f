from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from positions.models import (
    AccountSnapshot,
    ArchiveBatch,
    ArchivePolicy,
    ClosedPosition,
    Fill,
    FundingFee,
    OrderLog,
    Position,
)
from riskdesk.admin_audit import AuditAdmin


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = (
        "account",
        "symbol",
        "side",
        "quantity",
        "entry_price",
        "mark_price",
        "notional",
        "leverage",
        "margin_type",
        "unrealized_pnl",
        "liquidation_price",
        "updated_at",
    )
    list_filter = ("account", "side", "margin_type", "symbol")
    search_fields = ("account__name", "symbol__name")
    # Positions mirror the exchange; the desk computes the rest. Nothing here is typed in.
    readonly_fields = ("mark_price", "unrealized_pnl", "liquidation_price", "notional", "updated_at")

    @admin.display(description="notional")
    def notional(self, obj: Position):
        return obj.notional


@admin.register(AccountSnapshot)
class AccountSnapshotAdmin(AuditAdmin):
    list_display = (
        "account",
        "time",
        "wallet_balance",
        "margin_balance",
        "maint_margin",
        "margin_ratio",
        "unrealized_pnl",
        "realized_pnl_today",
    )
    list_filter = ("account",)
    search_fields = ("account__name",)
    date_hierarchy = "time"


@admin.register(OrderLog)
class OrderLogAdmin(AuditAdmin):
    list_display = (
        "created_at",
        "account",
        "source",
        "user",
        "symbol",
        "side",
        "order_type",
        "quantity",
        "price",
        "decision",
        "codes",
    )
    list_filter = ("decision", "source", "account")
    search_fields = ("symbol", "client_order_id", "exchange_order_id", "account__name", "user__username")
    date_hierarchy = "created_at"
    change_list_template = "admin/positions/orderlog/change_list.html"  # the log is written by the gate only

    def get_urls(self):
        from django.urls import path

        # Before the ModelAdmin's own: its "<path:object_id>/" would take "history/".
        view = self.admin_site.admin_view(self.history_view)
        return [path("history/", view, name="positions_orderlog_history"), *super().get_urls()]

    def history_view(self, request):
        """The order log for any date range, database and archive as one (docs/ARCHIVE.md)."""
        from positions.archive.admin_history import history_view

        return history_view(request, model_admin=self, table="orderlog")

    @admin.display(description="reason codes")
    def codes(self, obj: OrderLog) -> str:
        return ", ".join(obj.reason_codes or [])

    def changelist_view(self, request, extra_context=None):
        # Denials per account and per code, for the risk manager's first glance.
        denied = OrderLog.objects.filter(decision="denied")
        per_account = denied.values("account__name").annotate(n=Count("id")).order_by("-n")[:20]
        per_code: dict[str, int] = {}
        for codes in denied.values_list("reason_codes", flat=True)[:10000]:
            for code in codes or []:
                per_code[code] = per_code.get(code, 0) + 1
        extra_context = {
            **(extra_context or {}),
            "denials_per_account": per_account,
            "denials_per_code": sorted(per_code.items(), key=lambda kv: -kv[1])[:20],
        }
        return super().changelist_view(request, extra_context)


class LedgerAdmin(AuditAdmin):
    """The ledger is what the exchange reported: read-only, never typed in or deleted by hand."""


@admin.register(Fill)
class FillAdmin(LedgerAdmin):
    list_display = (
        "time",
        "account",
        "symbol",
        "side",
        "position_side",
        "qty",
        "price",
        "realized_pnl",
        "commission",
        "commission_asset",
        "kind",
        "order_id",
    )
    list_filter = ("kind", "account")
    search_fields = ("symbol", "order_id", "client_order_id", "account__name")
    date_hierarchy = "time"


@admin.register(FundingFee)
class FundingFeeAdmin(LedgerAdmin):
    list_display = ("time", "account", "asset", "symbol", "amount")
    list_filter = ("account", "asset")
    search_fields = ("symbol", "account__name")
    date_hierarchy = "time"


@admin.register(ClosedPosition)
class ClosedPositionAdmin(LedgerAdmin):
    list_display = (
        "closed_at",
        "account",
        "symbol",
        "side",
        "qty",
        "entry_price",
        "exit_price",
        "realized_pnl",
        "commission",
        "reason",
        "last_liquidation_price",
    )
    list_filter = ("reason", "account")
    search_fields = ("symbol", "exchange_order_id", "account__name")
    date_hierarchy = "closed_at"

    @admin.display(description=_("last liquidation price before"))
    def last_liquidation_price(self, obj: ClosedPosition):
        return (obj.details or {}).get("liquidation_price") or "–"


@admin.register(ArchivePolicy)
class ArchivePolicyAdmin(admin.ModelAdmin):
    """Retention per table, overriding settings.ARCHIVE_RETENTION_DAYS (docs/ARCHIVE.md)."""

    list_display = ("table", "retention_days", "enabled", "updated_at")
    list_editable = ("retention_days", "enabled")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "table":
            from django import forms

            from positions.archive.tables import ORDER

            return forms.ChoiceField(choices=[(t, t) for t in ORDER], label=db_field.verbose_name)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(ArchiveBatch)
class ArchiveBatchAdmin(AuditAdmin):
    """The archive's ledger: read-only, written only by the archive run and restore."""

    list_display = ("table", "day", "part", "rows", "first_pk", "last_pk", "size", "created_at", "restored_at")
    list_filter = ("table", "restored_at")
    date_hierarchy = "day"
    search_fields = ("uri", "sha256")
