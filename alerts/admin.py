from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from accounts import crypto
from alerts import services
from alerts.models import Alert, AlertStatus, Delivery, NotificationChannel


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("opened_at", "level", "status", "account", "rule", "subject", "reason_code", "value", "limit")
    list_filter = ("level", "status", "rule", "account")
    search_fields = ("reason_code", "rule", "subject", "account__name", "message")
    date_hierarchy = "opened_at"
    actions = ["acknowledge", "resolve"]

    def get_readonly_fields(self, request, obj=None):
        # Alerts are evidence: only the lifecycle services change them.
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Acknowledge selected alerts"), permissions=["change"])
    def acknowledge(self, request, queryset):
        for alert in queryset.filter(status=AlertStatus.OPEN):
            services.alert_acknowledge(alert=alert, by=request.user)
        messages.success(request, _("Acknowledged."))

    @admin.action(description=_("Resolve selected alerts"), permissions=["change"])
    def resolve(self, request, queryset):
        for alert in queryset.exclude(status=AlertStatus.RESOLVED):
            services.alert_resolve(alert=alert, by=request.user, note="resolved in admin")
        messages.success(request, _("Resolved."))


class ChannelForm(forms.ModelForm):
    secret = forms.CharField(
        label=_("Secret or token"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Signing secret or bot token, stored encrypted. Leave empty to keep the current one."),
    )

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "language", "enabled", "min_level", "accounts", "settings", "rate_limit_per_minute")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(SimpleHistoryAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "language", "enabled", "min_level", "rate_limit_per_minute", "has_secret")
    list_filter = ("kind", "language", "enabled", "min_level")
    search_fields = ("name",)
    filter_horizontal = ("accounts",)

    @admin.display(boolean=True, description=_("secret set"))
    def has_secret(self, obj: NotificationChannel) -> bool:
        return bool(obj.secret_encrypted)

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("secret"):
            obj.secret_encrypted = crypto.encrypt(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "alert", "channel", "event", "level", "status", "attempts", "sent_at", "last_error")
    list_filter = ("status", "channel", "event")
    search_fields = ("alert__reason_code", "channel__name", "last_error")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
