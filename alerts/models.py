from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from accounts import crypto

MONEY = {"max_digits": 32, "decimal_places": 12}


def decimal_str(value: Decimal | None) -> str | None:
    """A Decimal as a plain string without the column's trailing zeros ("0.85", never "8.5E-1")."""
    if value is None:
        return None
    text = f"{Decimal(value).normalize():f}"
    return "0" if text in ("-0", "") else text


class Level(models.IntegerChoices):
    # Integers so "worse" is a plain comparison and the admin sorts by severity.
    INFO = 10, _("Info")
    WARNING = 20, _("Warning")
    CRITICAL = 30, _("Critical")
    EMERGENCY = 40, _("Emergency")


class AlertStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    RESOLVED = "resolved", _("Resolved")


class Resolution(models.TextChoices):
    """Why an alert ended: the history must tell a position the exchange closed from a value
    that came back within its limit (docs/NOTIFICATIONS.md, "The alert lifecycle")."""

    CLEARED = "cleared", _("Back within limit")
    POSITION_CLOSED = "position_closed", _("Position closed")
    LIQUIDATED = "liquidated", _("Position liquidated")
    LIMIT_CHANGED = "limit_changed", _("Limit changed")
    RESTART_RECONCILED = "restart_reconciled", _("No longer held after a restart")
    MANUAL = "manual", _("Resolved by a person")


# Resolutions that mean "the exchange ended the position": nothing more is said about it.
POSITION_GONE = (Resolution.POSITION_CLOSED, Resolution.LIQUIDATED)


class Alert(models.Model):
    """A breach or an event a person must know about. One open alert per
    (account, rule, subject): `open_key` holds that triple while the alert is
    open and NULL after, so the unique index refuses a second open alert."""

    account = models.ForeignKey(
        "accounts.ExchangeAccount", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    rule = models.CharField(_("rule"), max_length=64)
    subject = models.CharField(_("subject"), max_length=64, default="account")
    level = models.PositiveSmallIntegerField(_("level"), choices=Level.choices)
    reason_code = models.CharField(_("reason code"), max_length=64)
    message = models.TextField(_("message"), blank=True, default="")
    value = models.DecimalField(_("value"), null=True, blank=True, **MONEY)
    limit = models.DecimalField(_("limit"), null=True, blank=True, **MONEY)
    mark_price = models.DecimalField(_("mark price"), null=True, blank=True, **MONEY)
    details = models.JSONField(_("numbers behind it"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    open_key = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    opened_at = models.DateTimeField(_("opened"), auto_now_add=True, db_index=True)
    escalated_at = models.DateTimeField(_("escalated"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(_("note"), blank=True, default="")
    resolution = models.CharField(_("resolution"), max_length=20, choices=Resolution.choices, blank=True, default="")
    # The number when the row opened and the worst one since (max, or min when lower is worse):
    # `value` alone only says where it is now.
    value_at_open = models.DecimalField(_("value at open"), null=True, blank=True, **MONEY)
    peak_value = models.DecimalField(_("worst value"), null=True, blank=True, **MONEY)
    # A re-crossing within the re-open window re-opens this row instead of a new one (no flapping).
    reopen_count = models.PositiveIntegerField(_("times re-opened"), default=0)
    # The highest level anyone was notified of on this row: a re-open or a re-escalation at or
    # below it is not worth a second page.
    notified_level = models.PositiveSmallIntegerField(
        _("highest level notified"), choices=Level.choices, null=True, blank=True
    )
    # What the message says as data (alerts/messages.py), rendered in each reader's language;
    # `message` keeps an English rendering for search and the admin.
    message_code = models.CharField(_("message code"), max_length=64, blank=True, default="")
    message_params = models.JSONField(_("message parameters"), default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [
            models.Index(fields=["account", "status", "level"]),
            # The re-open window looks up the last resolved row of (account, rule, subject).
            models.Index(fields=["account", "rule", "subject", "resolved_at"]),
        ]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")

    def __str__(self) -> str:
        return f"[{self.get_level_display()}] {self.reason_code} {self.account or ''} {self.subject}"

    @staticmethod
    def open_key_for(account_id: int | None, rule: str, subject: str) -> str:
        return f"{account_id or '-'}|{rule}|{subject}"

    def snapshot(self) -> dict:
        """The alert as JSON-safe values: what the live desk receives and what a
        delivery freezes at the moment of its event."""
        return {
            "id": self.pk,
            "account_id": self.account_id,
            "rule": self.rule,
            "subject": self.subject,
            "level": int(self.level),
            "status": str(self.status),
            "reason_code": self.reason_code,
            "value": decimal_str(self.value),
            "limit": decimal_str(self.limit),
            "mark_price": decimal_str(self.mark_price),
            "message": self.message,
            "message_code": self.message_code,
            "message_params": self.message_params,
            "resolution": self.resolution,
            "value_at_open": decimal_str(self.value_at_open),
            "peak_value": decimal_str(self.peak_value),
            "reopen_count": self.reopen_count,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


class ChannelKind(models.TextChoices):
    EMAIL = "email", _("Email")
    WEBHOOK = "webhook", _("Webhook")
    WECOM = "wecom", _("WeCom group robot")
    DINGTALK = "dingtalk", _("DingTalk robot")
    FEISHU = "feishu", _("Feishu / Lark bot")
    TELEGRAM = "telegram", _("Telegram bot")


class NotificationChannel(models.Model):
    """Where alerts go. `settings` holds non-secret options (URL, recipients,
    chat id); the signing secret or bot token is encrypted like exchange keys."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=12, choices=ChannelKind.choices)
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, default="en")
    enabled = models.BooleanField(_("enabled"), default=True)
    min_level = models.PositiveSmallIntegerField(_("minimum level"), choices=Level.choices, default=Level.WARNING)
    accounts = models.ManyToManyField(
        "accounts.ExchangeAccount", blank=True, related_name="+", verbose_name=_("accounts (empty: all)")
    )
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    secret_encrypted = models.TextField(editable=False, blank=True, default="")
    rate_limit_per_minute = models.PositiveIntegerField(
        _("messages per minute before folding into a digest"), default=10
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Scheduled risk reports go to the channels that ask for them (alerts/reports/delivery.py).
    receives_reports = models.BooleanField(_("receives scheduled risk reports"), default=False)

    history = HistoricalRecords(excluded_fields=["secret_encrypted"])

    class Meta:
        ordering = ["name"]
        verbose_name = _("notification channel")
        verbose_name_plural = _("notification channels")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def secrets(self) -> dict[str, str]:
        """The decrypted {"token": .., "signing_secret": ..}. Only the senders call this.

        A value stored before the two-part format (one plain string) serves as both."""
        if not self.secret_encrypted:
            return {}
        plain = crypto.decrypt(self.secret_encrypted)
        try:
            parts = json.loads(plain)
        except ValueError:
            parts = None
        if not isinstance(parts, dict):
            return {"token": plain, "signing_secret": plain}
        return {k: str(v) for k, v in parts.items() if v}


class DeliveryEvent(models.TextChoices):
    OPENED = "opened", _("opened")
    ESCALATED = "escalated", _("escalated")
    RESOLVED = "resolved", _("resolved")
    DIGEST = "digest", _("digest")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    DIGESTED = "digested", _("Folded into a digest")
    SKIPPED = "skipped", _("Skipped")


class Delivery(models.Model):
    """One alert event to one channel: the outbox row a worker claims (see docs/NOTIFICATIONS.md).

    A digest is a Delivery too: no alert, event "digest", and the rows it folded
    point at it through `digest`."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(_("event"), max_length=16, choices=DeliveryEvent.choices, default=DeliveryEvent.OPENED)
    level = models.PositiveSmallIntegerField(_("level"), choices=Level.choices)
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True, db_index=True)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="")
    idempotency_key = models.UUIDField(_("idempotency key"), default=uuid.uuid4, unique=True, editable=False)
    # The alert as it was when the event happened: the message describes that moment,
    # not whatever the alert has become by the time a retry goes out.
    snapshot = models.JSONField(_("alert at the event"), default=dict, blank=True)
    # Held back by the channel's rate limit or the subject's budget; the next send on the channel
    # folds it into a digest.
    rate_limited = models.BooleanField(_("held by the rate limit"), default=False)
    # Why a row was held or skipped, in words for the admin (e.g. "position closed before sending").
    held_reason = models.CharField(_("held or skipped because"), max_length=200, blank=True, default="")
    digest = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="folded", verbose_name=_("digest")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        unique_together = [("alert", "channel", "event", "level")]
        indexes = [
            # The rate window counts a channel's recent sends; the sweep scans by status.
            models.Index(fields=["channel", "status", "sent_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")

    def __str__(self) -> str:
        return f"{self.alert_id or self.event} → {self.channel} ({self.status})"


class ReportPeriod(models.TextChoices):
    DAY = "day", _("Daily")
    WEEK = "week", _("Weekly")
    MONTH = "month", _("Monthly")
    CUSTOM = "custom", _("Date range")


class Report(models.Model):
    """A risk report over a period, as generated: the figures as JSON (money as strings to the
    cent and beyond), the HTML, CSV and PDF it was delivered as (alerts/reports/, docs/REPORTS.md)."""

    period = models.CharField(_("period"), max_length=8, choices=ReportPeriod.choices)
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("to"))
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, default="en")
    accounts = models.ManyToManyField("accounts.ExchangeAccount", related_name="+", verbose_name=_("accounts"))
    figures = models.JSONField(_("figures"), default=dict)
    html = models.TextField(editable=False, blank=True, default="")
    csv = models.TextField(editable=False, blank=True, default="")
    pdf = models.BinaryField(editable=False, blank=True, default=b"")
    created_at = models.DateTimeField(_("generated"), auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    delivery_errors = models.JSONField(_("delivery errors"), default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Beat may run a schedule twice: one scheduled report per period, start and language.
        indexes = [models.Index(fields=["period", "start"])]
        verbose_name = _("risk report")
        verbose_name_plural = _("risk reports")

    def __str__(self) -> str:
        return f"{self.get_period_display()} {self.start:%Y-%m-%d} – {self.end:%Y-%m-%d}"
