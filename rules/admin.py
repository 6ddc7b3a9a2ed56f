from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from riskdesk.admin_audit import AuditAdminMixin
from rules import services
from rules.limits import LIMITS
from rules.models import RiskAction, RiskProfile, SymbolLimit, VarHistory

FAMILY_TITLES = {
    "funds": _("Funds"),
    "positions": _("Positions"),
    "orders": _("Orders"),
    "accounts": _("Accounts"),
    "anomalies": _("Abnormal behaviour"),
}


def _family_fields(family: str) -> tuple[str, ...]:
    return tuple(f for lim in LIMITS if lim.family == family for f in lim.fields())


class RiskProfileForm(forms.ModelForm):
    # The history shows why each limit moved; a bare "admin" said only where the change came from.
    # 100: simple_history's history_change_reason column. No Meta: the admin's fieldsets give the fields.
    change_reason = forms.CharField(
        label=_("Reason for this change"), max_length=100, help_text=_("Kept in the profile's history.")
    )


class SymbolLimitInline(admin.TabularInline):
    """Per-symbol overrides, edited on the profile's page; an empty field keeps the profile's limit."""

    model = SymbolLimit
    extra = 0
    fields = ("symbol", *SymbolLimit.LIMIT_FIELDS)


@admin.register(RiskProfile)
class RiskProfileAdmin(SimpleHistoryAdmin):
    form = RiskProfileForm
    inlines = (SymbolLimitInline,)
    list_display = (
        "name",
        "is_default",
        "max_leverage_critical",
        "margin_ratio_critical",
        "max_order_notional",
        "max_daily_loss_critical",
        "account_count",
        "updated_at",
    )
    list_filter = ("is_default", "auto_action", "auto_action_mode")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at", "account_count")
    fieldsets = (
        (None, {"fields": ("name", "description", "is_default", "account_count", "change_reason")}),
        (FAMILY_TITLES["funds"], {"fields": (*_family_fields("funds"), "asset_caps")}),
        (FAMILY_TITLES["positions"], {"fields": _family_fields("positions")}),
        (
            FAMILY_TITLES["orders"],
            {"fields": (*_family_fields("orders"), "symbol_allowlist", "symbol_denylist", "disabled_checks")},
        ),
        (FAMILY_TITLES["accounts"], {"fields": _family_fields("accounts")}),
        (FAMILY_TITLES["anomalies"], {"fields": (*_family_fields("anomalies"), "bypass_action")}),
        (
            _("Evaluation and actions"),
            {
                "fields": (
                    "breach_after_n",
                    "hysteresis",
                    "clear_dwell_s",
                    "clear_dwell_by_rule",
                    "reopen_window_s",
                    "auto_action",
                    "auto_action_mode",
                )
            },
        ),
        (_("Times"), {"fields": ("created_at", "updated_at")}),
    )
    history_list_display = ("is_default",)

    @admin.display(description=_("accounts"))
    def account_count(self, obj: RiskProfile) -> int:
        return obj.accounts.count() if obj.pk else 0

    def save_model(self, request, obj, form, change):
        # The admin and the API share one service per change (validation + history).
        reason = form.cleaned_data["change_reason"].strip()
        values = {
            f: form.cleaned_data[f]
            for f in (form.changed_data if change else form.cleaned_data)
            if f in services.EDITABLE
        }
        try:
            if change:
                saved = services.profile_update(profile=obj, values=values, by=request.user, reason=reason)
            else:
                saved = services.profile_create(values=values, by=request.user, reason=reason)
        except ValidationError as exc:  # already shown by the form; a race gets here
            raise exc
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if any(f.has_changed() for f in formsets):
            services.profiles_changed()  # the evaluator and the gate reload the overrides

    def delete_model(self, request, obj):
        services.profile_delete(profile=obj, by=request.user)


@admin.register(RiskAction)
class RiskActionAdmin(AuditAdminMixin, SimpleHistoryAdmin):
    list_display = (
        "created_at",
        "account",
        "trigger",
        "kind",
        "status",
        "decided_by",
        "decided_at",
        "decision_reason",
        "executed_at",
    )
    list_filter = ("status", "kind", "trigger", "account")
    search_fields = ("account__name", "trigger", "kind")
    actions = ["approve", "dismiss"]  # plans are evidence; only the services move them

    @admin.action(description=_("Execute the selected proposed plans"), permissions=["act"])
    def approve(self, request, queryset):
        return self._decide(request, queryset, "approve", services.action_approve, _("Queued for execution."))

    @admin.action(description=_("Dismiss the selected proposed plans"), permissions=["act"])
    def dismiss(self, request, queryset):
        return self._decide(request, queryset, "dismiss", services.action_dismiss, _("Dismissed."))

    def _decide(self, request, queryset, name, service, done):
        """Every decision records why: the first post shows the plans and asks for a reason,
        the second (with the reason) decides."""
        pending = queryset.filter(status=RiskAction.Status.PROPOSED)
        reason = (request.POST.get("reason") or "").strip()
        if "decide" not in request.POST or not reason:
            context = {
                **self.admin_site.each_context(request),
                "title": _("Reason for the decision"),
                "opts": self.model._meta,
                "actions": pending,
                "action_name": name,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "missing_reason": "decide" in request.POST,
            }
            return TemplateResponse(request, "rules/admin_action_reason.html", context)
        for action in pending:
            service(action=action, by=request.user, reason=reason)
        messages.success(request, done)
        return None


# --- allocation ---


@admin.register(VarHistory)
class VarHistoryAdmin(AuditAdminMixin, admin.ModelAdmin):
    """The beat job's record of the daily VaR: read-only (it is what was computed that day)."""

    list_display = ("day", "scope", "account", "var_historical", "es_historical", "var_parametric", "equity")
    list_filter = ("scope",)
    date_hierarchy = "day"
    ordering = ("-day", "scope")
    list_select_related = ("account",)
