from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from accounts import services
from accounts.models import ExchangeAccount, User

PRIVILEGE_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    fieldsets = (*DjangoUserAdmin.fieldsets, (_("Desk"), {"fields": ("role", "timezone")}))
    add_fieldsets = (*DjangoUserAdmin.add_fieldsets, (_("Desk"), {"fields": ("role",)}))

    def get_readonly_fields(self, request, obj=None):
        # Risk managers manage the desk's users and their roles; the role decides staff status and
        # groups (services.user_set_role). Superuser status, groups and single permissions are
        # only a superuser's to give, or a risk manager could grant themselves anything.
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += [f for f in PRIVILEGE_FIELDS if f not in fields]
        return fields

    def has_change_permission(self, request, obj=None) -> bool:
        # Changing a superuser (its password above all) is taking it over.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The role decides admin rights; one service keeps the two in step.
        services.user_set_role(user=obj, role=obj.role)


class ExchangeAccountForm(forms.ModelForm):
    # Write-only: the widgets never render a stored value back into the page.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted. Leave empty to keep the current key."),
    )
    api_secret = forms.CharField(
        label=_("API secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted. Leave empty to keep the current secret."),
    )

    class Meta:
        model = ExchangeAccount
        fields = (
            "name",
            "exchange",
            "position_mode",
            "enabled",
            "risk_profile",
            "traders",
            "trading_state",
            "trading_state_reason",
        )

    def clean(self):
        data = super().clean()
        key, secret = data.get("api_key"), data.get("api_secret")
        creating = self.instance.pk is None
        if (creating or key or secret) and not (key and secret):
            raise forms.ValidationError(_("Enter both the API key and the API secret."))
        return data


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(SimpleHistoryAdmin):
    form = ExchangeAccountForm
    list_display = (
        "name",
        "exchange",
        "position_mode",
        "trading_state",
        "enabled",
        "risk_profile",
        "realized_today",
        "api_key_hint",
    )
    list_filter = ("exchange", "position_mode", "trading_state", "enabled", "risk_profile")
    search_fields = ("name", "traders__username")
    readonly_fields = ("api_key_hint", "credentials_updated_at", "trading_state_changed_at", "created_at", "updated_at")
    filter_horizontal = ("traders",)
    fieldsets = (
        (None, {"fields": ("name", "exchange", "position_mode", "enabled", "risk_profile", "traders")}),
        (_("Credentials"), {"fields": ("api_key", "api_secret", "api_key_hint", "credentials_updated_at")}),
        (_("Trading state"), {"fields": ("trading_state", "trading_state_reason", "trading_state_changed_at")}),
        (_("Times"), {"fields": ("created_at", "updated_at")}),
    )
    history_list_display = ("trading_state", "risk_profile", "credentials_updated_at")

    def get_queryset(self, request):
        from positions.selectors import realized_pnl_today_annotation

        # One query for the page: the ledger sums are subqueries, not one aggregate per row.
        return super().get_queryset(request).annotate(realized_pnl_today=realized_pnl_today_annotation())

    @admin.display(description=_("realized PnL today"), ordering="realized_pnl_today")
    def realized_today(self, obj: ExchangeAccount) -> str:
        value = getattr(obj, "realized_pnl_today", None)
        return "–" if value is None else f"{value:,.2f}"

    def save_model(self, request, obj, form, change):
        key, secret = form.cleaned_data.get("api_key"), form.cleaned_data.get("api_secret")
        if key and secret:
            services.account_set_credentials(account=obj, api_key=key, api_secret=secret)
        super().save_model(request, obj, form, change)
