from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

MONEY = {"max_digits": 32, "decimal_places": 12}


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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["account", "status", "level"])]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")

    def __str__(self) -> str:
        return f"[{self.get_level_display()}] {self.reason_code} {self.account or ''} {self.subject}"


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

    history = HistoricalRecords(excluded_fields=["secret_encrypted"])

    class Meta:
        ordering = ["name"]
        verbose_name = _("notification channel")
        verbose_name_plural = _("notification channels")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    DIGESTED = "digested", _("Folded into a digest")


class Delivery(models.Model):
    """One alert event to one channel: the outbox row a worker claims."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(_("event"), max_length=16, default="opened")
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        unique_together = [("alert", "channel", "event", "level")]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")

    def __str__(self) -> str:
        return f"{self.alert_id} → {self.channel} ({self.status})"
