from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from accounts import crypto


class Role(models.TextChoices):
    NONE = "none", _("No access")
    RISK_MANAGER = "risk_manager", _("Risk manager")
    TRADER = "trader", _("Trader")
    VIEWER = "viewer", _("Viewer")


class User(AbstractUser):
    """A desk user. The role decides what they see; `accounts.access` applies it."""

    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.NONE)
    timezone = models.CharField(_("timezone"), max_length=64, default="UTC")

    @property
    def is_risk_manager(self) -> bool:
        return self.is_active and (self.role == Role.RISK_MANAGER or self.is_superuser)


class Exchange(models.TextChoices):
    BINANCE_USDM = "binance_usdm", _("Binance USDⓈ-M futures")


class PositionMode(models.TextChoices):
    ONE_WAY = "one_way", _("One-way")
    HEDGE = "hedge", _("Hedge")


class TradingState(models.TextChoices):
    ACTIVE = "ACTIVE", _("Active")
    REDUCING = "REDUCING", _("Reducing only")
    HALTED = "HALTED", _("Halted")


class ExchangeAccount(models.Model):
    """One exchange (sub-)account the desk watches.

    The API key and secret are stored Fernet-encrypted; only `api_key_hint`
    (the key's last four characters) is ever shown again.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    exchange = models.CharField(_("exchange"), max_length=20, choices=Exchange.choices, default=Exchange.BINANCE_USDM)
    api_key_encrypted = models.TextField(editable=False, blank=True, default="")
    api_secret_encrypted = models.TextField(editable=False, blank=True, default="")
    api_key_hint = models.CharField(_("API key (last 4)"), max_length=8, editable=False, blank=True, default="")
    credentials_updated_at = models.DateTimeField(_("credentials updated"), null=True, blank=True, editable=False)
    position_mode = models.CharField(
        _("position mode"), max_length=10, choices=PositionMode.choices, default=PositionMode.ONE_WAY
    )
    trading_state = models.CharField(
        _("trading state"), max_length=10, choices=TradingState.choices, default=TradingState.ACTIVE
    )
    trading_state_reason = models.CharField(_("trading state reason"), max_length=255, blank=True, default="")
    trading_state_changed_at = models.DateTimeField(_("trading state changed"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    risk_profile = models.ForeignKey(
        "rules.RiskProfile",
        verbose_name=_("risk profile"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="accounts",
        help_text=_("Empty means the default profile."),
    )
    traders = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned traders"),
        blank=True,
        related_name="exchange_accounts",
        limit_choices_to={"role": Role.TRADER},
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The ciphertexts stay out of history: rotating a key is recorded through
    # credentials_updated_at, and old ciphertexts are not kept around.
    history = HistoricalRecords(excluded_fields=["api_key_encrypted", "api_secret_encrypted", "updated_at"])

    class Meta:
        ordering = ["name"]
        verbose_name = _("exchange account")
        verbose_name_plural = _("exchange accounts")

    def __str__(self) -> str:
        return self.name

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key_encrypted and self.api_secret_encrypted)

    def credentials(self) -> tuple[str, str]:
        """The decrypted (key, secret). Only the exchange adapter calls this."""
        return crypto.decrypt(self.api_key_encrypted), crypto.decrypt(self.api_secret_encrypted)
