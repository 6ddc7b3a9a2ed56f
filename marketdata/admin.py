from __future__ import annotations

from django.contrib import admin

from marketdata.models import LeverageBracket, MinuteBar, Symbol, TickerHistory


class BracketInline(admin.TabularInline):
    model = LeverageBracket
    extra = 0
    fields = ("account", "bracket", "initial_leverage", "notional_floor", "notional_cap", "maint_margin_ratio", "cum")
    readonly_fields = fields  # brackets come from the exchange, never typed in
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "tick_size",
        "step_size",
        "min_qty",
        "max_qty",
        "min_notional",
        "mark_price",
        "mark_price_at",
    )
    list_filter = ("status", "margin_asset", "exchange")
    search_fields = ("name", "base_asset")
    readonly_fields = ("mark_price", "mark_price_at", "updated_at")
    inlines = [BracketInline]


@admin.register(LeverageBracket)
class LeverageBracketAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "account",
        "bracket",
        "initial_leverage",
        "notional_floor",
        "notional_cap",
        "maint_margin_ratio",
        "cum",
        "fetched_at",
    )
    list_filter = ("symbol", "account")
    search_fields = ("symbol__name",)
    readonly_fields = ("fetched_at",)


@admin.register(TickerHistory)
class TickerHistoryAdmin(admin.ModelAdmin):
    list_display = ("symbol", "time", "mark_price", "index_price", "funding_rate")
    list_filter = ("symbol",)
    search_fields = ("symbol__name",)
    date_hierarchy = "time"
    readonly_fields = ("symbol", "time", "mark_price", "index_price", "funding_rate")


@admin.register(MinuteBar)
class MinuteBarAdmin(admin.ModelAdmin):
    """Market history: written by the stream (marks) and the klines backfill, never typed in."""

    list_display = ("symbol", "open_time", "open", "high", "low", "close", "source")
    list_filter = ("source",)
    search_fields = ("symbol",)
    date_hierarchy = "open_time"
    readonly_fields = ("symbol", "open_time", "open", "high", "low", "close", "source")
    show_full_result_count = False  # millions of rows: no COUNT(*) per page

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
