from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from alerts import notifiers, outbox, services
from alerts.models import Alert, AlertStatus, Delivery, DeliveryStatus, NotificationChannel, Report
from riskdesk.admin_audit import AuditAdmin


@admin.register(Alert)
class AlertAdmin(AuditAdmin):
    list_display = (
        "opened_at", "level", "status", "resolution", "account", "rule", "subject", "reason_code", "value",
        "peak_value", "limit", "reopen_count",
    )  # fmt: skip
    list_filter = ("level", "status", "resolution", "rule", "account")
    search_fields = ("reason_code", "rule", "subject", "account__name", "message")
    date_hierarchy = "opened_at"
    actions = ["acknowledge", "resolve"]  # alerts are evidence: only the lifecycle services change them

    def get_urls(self):
        from django.urls import path

        # Before the ModelAdmin's own: its "<path:object_id>/" would take "history/".
        view = self.admin_site.admin_view(self.history_view)
        return [path("history/", view, name="alerts_alert_history"), *super().get_urls()]

    def history_view(self, request):
        """Alerts for any date range, database and archive as one (docs/ARCHIVE.md)."""
        from positions.archive.admin_history import history_view

        return history_view(request, model_admin=self, table="alert")

    @admin.action(description=_("Acknowledge selected alerts"), permissions=["act"])
    def acknowledge(self, request, queryset):
        for alert in queryset.filter(status=AlertStatus.OPEN):
            services.alert_acknowledge(alert=alert, by=request.user, note=f"acknowledged in admin by {request.user}")
        messages.success(request, _("Acknowledged."))

    @admin.action(description=_("Resolve selected alerts"), permissions=["act"])
    def resolve(self, request, queryset):
        for alert in queryset.exclude(status=AlertStatus.RESOLVED):
            services.alert_resolve(alert=alert, by=request.user, note=f"resolved in admin by {request.user}")
        messages.success(request, _("Resolved."))


class ChannelForm(forms.ModelForm):
    # Write-only: the widgets never render a stored value back into the page.
    token = forms.CharField(
        label=_("Token"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "WeCom robot key, DingTalk access token, Feishu hook token, Telegram bot token, or SMTP password. "
            "Stored encrypted. Leave empty to keep the current one."
        ),
    )
    signing_secret = forms.CharField(
        label=_("Signing secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "Webhook HMAC secret, DingTalk SEC… secret or Feishu signing secret. "
            "Stored encrypted. Leave empty to keep the current one."
        ),
    )

    class Meta:
        model = NotificationChannel
        fields = (
            "name",
            "kind",
            "language",
            "enabled",
            "min_level",
            "accounts",
            "settings",
            "rate_limit_per_minute",
            "receives_reports",
        )

    def clean(self):
        data = super().clean()
        stored = set(self.instance.secrets()) if self.instance.pk else set()
        given = {name for name in ("token", "signing_secret") if data.get(name)}
        problems = notifiers.settings_problems(data.get("kind", ""), data.get("settings"), stored | given)
        if problems:
            raise forms.ValidationError(problems)
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(SimpleHistoryAdmin):
    form = ChannelForm
    list_display = (
        "name",
        "kind",
        "language",
        "enabled",
        "min_level",
        "rate_limit_per_minute",
        "receives_reports",
        "has_secret",
    )
    list_filter = ("kind", "language", "enabled", "min_level")
    search_fields = ("name",)
    filter_horizontal = ("accounts",)
    actions = ["send_test_message"]

    @admin.display(boolean=True, description=_("secret set"))
    def has_secret(self, obj: NotificationChannel) -> bool:
        return bool(obj.secret_encrypted)

    def save_model(self, request, obj, form, change):
        outbox.channel_set_secrets(
            channel=obj,
            token=form.cleaned_data.get("token", ""),
            signing_secret=form.cleaned_data.get("signing_secret", ""),
        )
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Send a test message"), permissions=["change"])
    def send_test_message(self, request, queryset):
        for channel in queryset:
            try:
                outbox.channel_send_test(channel=channel, by=request.user)
            except notifiers.DeliveryError as exc:
                # The error is already scrubbed of the channel's token and signing secret.
                messages.error(
                    request, _("%(channel)s: not sent: %(error)s") % {"channel": channel, "error": exc.message}
                )
            else:
                messages.success(request, _("%(channel)s: test message sent.") % {"channel": channel})


@admin.register(Delivery)
class DeliveryAdmin(AuditAdmin):
    list_display = (
        "created_at", "alert", "channel", "event", "level", "status", "attempts", "next_attempt_at", "sent_at",
        "digest", "held_reason", "last_error",
    )  # fmt: skip
    list_filter = ("status", "channel", "event")
    search_fields = ("alert__reason_code", "channel__name", "last_error")
    actions = ["retry"]

    @admin.action(description=_("Retry selected failed deliveries"), permissions=["act"])
    def retry(self, request, queryset):
        failed = list(queryset.filter(status=DeliveryStatus.FAILED))
        for delivery in failed:
            outbox.delivery_retry(delivery=delivery, by=request.user)
        messages.success(request, _("%(count)d deliveries queued again.") % {"count": len(failed)})


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Reports are generated, never edited: the figures are what was delivered. Schedules are
    django-celery-beat's "Periodic tasks" (task alerts.tasks.generate_report_task)."""

    list_display = ("id", "period", "start", "end", "language", "created_at", "created_by", "delivered_at")
    list_filter = ("period", "language")
    readonly_fields = (
        "period",
        "start",
        "end",
        "language",
        "accounts",
        "figures",
        "created_by",
        "delivered_at",
        "delivery_errors",
    )
    exclude = ("html", "csv", "pdf")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
