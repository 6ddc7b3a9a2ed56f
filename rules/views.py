"""Desk page: the risk profile applied to each account, read-only (risk managers edit in the admin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from accounts import access
from riskdesk.views import desk_member_required, render_page
from rules.limits import LIMITS, Limit
from rules.models import RiskProfile

FAMILIES = {
    "funds": _("Funds"),
    "positions": _("Positions"),
    "orders": _("Orders"),
    "accounts": _("Accounts"),
    "anomalies": _("Abnormal behaviour"),
}

# The catalogue's labels (rules.limits), marked for translation here: the catalogue is plain Python.
LABELS = {
    "min_equity": _("equity floor"),
    "max_utilization": _("fund utilization (initial margin / margin balance)"),
    "max_position_notional": _("notional per symbol"),
    "max_account_notional": _("gross notional per account"),
    "max_leverage": _("leverage"),
    "margin_ratio": _("margin ratio (maintenance / margin balance)"),
    "liq_distance": _("distance to liquidation"),
    "max_concentration": _("largest symbol's share of gross notional"),
    "max_hhi": _("Herfindahl index of the exposure by symbol"),
    "max_order_qty": _("quantity per order"),
    "max_order_notional": _("notional per order"),
    "max_price_deviation": _("limit price deviation from mark"),
    "max_market_slippage": _("market order slippage from mark"),
    "order_rate_per_second": _("orders per second"),
    "order_rate_per_minute": _("orders per minute"),
    "max_open_orders": _("open orders"),
    "max_daily_orders": _("orders per trading day"),
    "max_daily_cancels": _("cancels per trading day"),
    "max_daily_fills": _("fills per trading day"),
    "duplicate_window_s": _("duplicate-order window (s)"),
    "max_daily_loss": _("loss since the start of the trading day"),
    "max_drawdown": _("drawdown from peak equity"),
    "risk_degree": _("account margin ratio (all pools)"),
    "risk_score": _("risk score (0-100)"),
    "bypassed_orders": _("orders the gate never approved (per day)"),
    "order_burst": _("orders or cancels in 10 s, in MADs above the median"),
    "cancel_ratio": _("cancels per fill over 5 minutes"),
    "size_outlier": _("order notional as a multiple of the 30-day p99"),
    "new_symbols": _("symbols traded for the first time (per day)"),
    "off_hours_orders": _("orders in an unusual hour (per hour)"),
    "loss_per_minute": _("margin balance lost in one minute"),
    "loss_5m": _("share of margin balance lost in 5 minutes"),
    "leverage_jump": _("exchange-side leverage raised by a factor"),
    "key_permissions": _("risky API key permissions"),
}


@dataclass(frozen=True)
class LimitRow:
    label: str
    kind: str
    warning: Any
    critical: Any  # the single value of an unpaired (order) limit


def limit_rows(profile: RiskProfile) -> list[tuple[str, list[LimitRow]]]:
    """The profile's limits grouped by family, labelled with the model's (translated) field names."""
    groups: dict[str, list[LimitRow]] = {}
    for limit in LIMITS:
        groups.setdefault(limit.family, []).append(_row(profile, limit))
    return [(str(FAMILIES[family]), rows) for family, rows in groups.items()]


def _row(profile: RiskProfile, limit: Limit) -> LimitRow:
    label = str(LABELS.get(limit.name, limit.label))
    if not limit.pair:
        return LimitRow(label, limit.kind, None, getattr(profile, limit.name))
    return LimitRow(
        label, limit.kind, getattr(profile, f"{limit.name}_warning"), getattr(profile, f"{limit.name}_critical")
    )


@desk_member_required
def rule_list(request: HttpRequest) -> HttpResponse:
    accounts = list(access.accounts_visible_to(request.user).select_related("risk_profile").order_by("name"))
    profiles = {p.id: p for p in access.profiles_visible_to(request.user)}
    default = next((p for p in profiles.values() if p.is_default), None)
    applied = []
    for account in accounts:
        profile = profiles.get(account.risk_profile_id) if account.risk_profile_id else default
        applied.append((account, profile))
    shown = {p.id: p for _, p in applied if p is not None}
    context = {
        "applied": applied,
        "profiles": [(p, limit_rows(p)) for p in sorted(shown.values(), key=lambda p: p.name)],
        "can_edit": access.is_risk_manager(request.user),
    }
    return render_page(request, "rules/list.html", context)
