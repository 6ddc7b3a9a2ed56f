from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from rules.limits import (
    ACTION_FIELDS,
    AUTO_ACTION_MODES,
    AUTO_ACTIONS,
    BYPASS_ACTIONS,
    SYMBOL_LIMIT_FIELDS,
    validate_limits,
)

AMOUNT = {"max_digits": 32, "decimal_places": 12}
FRACTION = {"max_digits": 12, "decimal_places": 8}
FACTOR = {"max_digits": 12, "decimal_places": 4}


class RiskProfile(models.Model):
    """A named set of limits assigned to exchange accounts; one profile is the default.

    Every limit is optional (empty = not enforced). Paired limits have a warning
    and a critical level. The catalogue and the validation live in
    `rules.limits`; this model only stores the values.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True, default="")
    is_default = models.BooleanField(_("default profile"), default=False)

    min_equity_warning = models.DecimalField(_("equity floor (warning)"), null=True, blank=True, **AMOUNT)
    min_equity_critical = models.DecimalField(_("equity floor (critical)"), null=True, blank=True, **AMOUNT)
    max_utilization_warning = models.DecimalField(
        _("fund utilization (initial margin / margin balance) (warning)"), null=True, blank=True, **FRACTION
    )
    max_utilization_critical = models.DecimalField(
        _("fund utilization (initial margin / margin balance) (critical)"), null=True, blank=True, **FRACTION
    )
    max_position_notional_warning = models.DecimalField(
        _("notional per symbol (warning)"), null=True, blank=True, **AMOUNT
    )
    max_position_notional_critical = models.DecimalField(
        _("notional per symbol (critical)"), null=True, blank=True, **AMOUNT
    )
    max_account_notional_warning = models.DecimalField(
        _("gross notional per account (warning)"), null=True, blank=True, **AMOUNT
    )
    max_account_notional_critical = models.DecimalField(
        _("gross notional per account (critical)"), null=True, blank=True, **AMOUNT
    )
    max_leverage_warning = models.PositiveIntegerField(_("leverage (warning)"), null=True, blank=True)
    max_leverage_critical = models.PositiveIntegerField(_("leverage (critical)"), null=True, blank=True)
    margin_ratio_warning = models.DecimalField(
        _("margin ratio (maintenance / margin balance) (warning)"), null=True, blank=True, **FRACTION
    )
    margin_ratio_critical = models.DecimalField(
        _("margin ratio (maintenance / margin balance) (critical)"), null=True, blank=True, **FRACTION
    )
    liq_distance_warning = models.DecimalField(
        _("distance to liquidation (warning)"), null=True, blank=True, **FRACTION
    )
    liq_distance_critical = models.DecimalField(
        _("distance to liquidation (critical)"), null=True, blank=True, **FRACTION
    )
    max_concentration_warning = models.DecimalField(
        _("largest symbol's share of gross notional (warning)"), null=True, blank=True, **FRACTION
    )
    max_concentration_critical = models.DecimalField(
        _("largest symbol's share of gross notional (critical)"), null=True, blank=True, **FRACTION
    )
    max_hhi_warning = models.DecimalField(
        _("Herfindahl index of the exposure by symbol (warning)"), null=True, blank=True, **FRACTION
    )
    max_hhi_critical = models.DecimalField(
        _("Herfindahl index of the exposure by symbol (critical)"), null=True, blank=True, **FRACTION
    )
    max_order_qty = models.DecimalField(_("quantity per order"), null=True, blank=True, **AMOUNT)
    max_order_notional = models.DecimalField(_("notional per order"), null=True, blank=True, **AMOUNT)
    max_price_deviation = models.DecimalField(_("limit price deviation from mark"), null=True, blank=True, **FRACTION)
    max_market_slippage = models.DecimalField(_("market order slippage from mark"), null=True, blank=True, **FRACTION)
    order_rate_per_second = models.PositiveIntegerField(_("orders per second"), null=True, blank=True)
    order_rate_per_minute = models.PositiveIntegerField(_("orders per minute"), null=True, blank=True)
    max_open_orders = models.PositiveIntegerField(_("open orders"), null=True, blank=True)
    max_daily_orders = models.PositiveIntegerField(_("orders per trading day"), null=True, blank=True)
    max_daily_cancels = models.PositiveIntegerField(_("cancels per trading day"), null=True, blank=True)
    max_daily_fills = models.PositiveIntegerField(_("fills per trading day"), null=True, blank=True)
    duplicate_window_s = models.PositiveIntegerField(_("duplicate-order window (s)"), null=True, blank=True)
    max_daily_loss_warning = models.DecimalField(
        _("loss since the start of the trading day (warning)"), null=True, blank=True, **AMOUNT
    )
    max_daily_loss_critical = models.DecimalField(
        _("loss since the start of the trading day (critical)"), null=True, blank=True, **AMOUNT
    )
    max_drawdown_warning = models.DecimalField(
        _("drawdown from peak equity (warning)"), null=True, blank=True, **FRACTION
    )
    max_drawdown_critical = models.DecimalField(
        _("drawdown from peak equity (critical)"), null=True, blank=True, **FRACTION
    )
    # Named risk_degree for the stored profiles, open alerts and actions' triggers; it measures, as it
    # always did, the account-wide margin ratio. The risk degree shown is now the risk score.
    risk_degree_warning = models.DecimalField(
        _("account margin ratio (all pools) (warning)"), null=True, blank=True, **FRACTION
    )
    risk_degree_critical = models.DecimalField(
        _("account margin ratio (all pools) (critical)"), null=True, blank=True, **FRACTION
    )
    risk_score_warning = models.DecimalField(
        _("risk score (0-100) (warning)"), null=True, blank=True, max_digits=5, decimal_places=2
    )
    risk_score_critical = models.DecimalField(
        _("risk score (0-100) (critical)"), null=True, blank=True, max_digits=5, decimal_places=2
    )
    # Abnormal-behaviour detectors (rules.anomalies): warning and critical levels, on by default.
    bypassed_orders_warning = models.PositiveIntegerField(
        _("orders the gate never approved (per day) (warning)"), null=True, blank=True
    )
    bypassed_orders_critical = models.PositiveIntegerField(
        _("orders the gate never approved (per day) (critical)"), null=True, blank=True, default=1
    )
    order_burst_warning = models.DecimalField(
        _("orders or cancels in 10 s, in MADs above the median (warning)"), null=True, blank=True, default=8, **FACTOR
    )
    order_burst_critical = models.DecimalField(
        _("orders or cancels in 10 s, in MADs above the median (critical)"), null=True, blank=True, default=16, **FACTOR
    )
    cancel_ratio_warning = models.DecimalField(
        _("cancels per fill over 5 minutes (warning)"), null=True, blank=True, default=20, **FACTOR
    )
    cancel_ratio_critical = models.DecimalField(
        _("cancels per fill over 5 minutes (critical)"), null=True, blank=True, default=50, **FACTOR
    )
    size_outlier_warning = models.DecimalField(
        _("order notional as a multiple of the 30-day p99 (warning)"), null=True, blank=True, default=3, **FACTOR
    )
    size_outlier_critical = models.DecimalField(
        _("order notional as a multiple of the 30-day p99 (critical)"), null=True, blank=True, default=10, **FACTOR
    )
    new_symbols_warning = models.PositiveIntegerField(
        _("symbols traded for the first time (per day) (warning)"), null=True, blank=True, default=1
    )
    new_symbols_critical = models.PositiveIntegerField(
        _("symbols traded for the first time (per day) (critical)"), null=True, blank=True
    )
    off_hours_orders_warning = models.PositiveIntegerField(
        _("orders in an unusual hour (per hour) (warning)"), null=True, blank=True, default=3
    )
    off_hours_orders_critical = models.PositiveIntegerField(
        _("orders in an unusual hour (per hour) (critical)"), null=True, blank=True
    )
    loss_per_minute_warning = models.DecimalField(
        _("margin balance lost in one minute (warning)"), null=True, blank=True, **AMOUNT
    )
    loss_per_minute_critical = models.DecimalField(
        _("margin balance lost in one minute (critical)"), null=True, blank=True, **AMOUNT
    )
    loss_5m_warning = models.DecimalField(
        _("share of margin balance lost in 5 minutes (warning)"), null=True, blank=True, default="0.05", **FRACTION
    )
    loss_5m_critical = models.DecimalField(
        _("share of margin balance lost in 5 minutes (critical)"), null=True, blank=True, default="0.1", **FRACTION
    )
    leverage_jump_warning = models.DecimalField(
        _("exchange-side leverage raised by a factor (warning)"), null=True, blank=True, default=2, **FACTOR
    )
    leverage_jump_critical = models.DecimalField(
        _("exchange-side leverage raised by a factor (critical)"), null=True, blank=True, default=5, **FACTOR
    )
    key_permissions_warning = models.PositiveIntegerField(
        _("risky API key permissions (warning)"), null=True, blank=True, default=1
    )
    key_permissions_critical = models.PositiveIntegerField(
        _("risky API key permissions (critical)"), null=True, blank=True
    )
    bypass_action = models.CharField(
        _("action on an order the gate never approved"),
        max_length=20,
        default="none",
        choices=[(a, a.replace("_", " ")) for a in BYPASS_ACTIONS],
    )
    asset_caps = models.JSONField(_("per-asset caps"), default=dict, blank=True, help_text=_('e.g. {"USDT": "500000"}'))
    symbol_allowlist = models.JSONField(_("allowed symbols"), default=list, blank=True, help_text=_("Empty: all."))
    symbol_denylist = models.JSONField(_("denied symbols"), default=list, blank=True)
    disabled_checks = models.JSONField(_("disabled order checks"), default=list, blank=True)
    breach_after_n = models.PositiveSmallIntegerField(_("consecutive evaluations before a breach latches"), default=2)
    hysteresis = models.DecimalField(
        _("hysteresis band"),
        default="0.02",
        help_text=_("Fraction of the limit a value must fall back by to clear."),
        **FRACTION,
    )
    clear_dwell_s = models.PositiveIntegerField(
        _("clearing dwell (s)"),
        default=30,
        help_text=_("Seconds a value must stay back inside the band before its alert clears or steps down."),
    )
    clear_dwell_by_rule = models.JSONField(
        _("clearing dwell per rule (s)"),
        default=dict,
        blank=True,
        help_text=_('Overrides the clearing dwell for some rules, e.g. {"drawdown": 120, "leverage": 0}'),
    )
    reopen_window_s = models.PositiveIntegerField(
        _("re-open window (s)"),
        default=600,
        help_text=_("A breach within this many seconds of its alert clearing re-opens that alert."),
    )
    auto_action = models.CharField(
        _("automatic action on a critical breach"),
        max_length=20,
        default="none",
        choices=[(a, a.replace("_", " ")) for a in AUTO_ACTIONS],
    )
    auto_action_mode = models.CharField(
        _("automatic action mode"), max_length=10, default="propose", choices=[(m, m) for m in AUTO_ACTION_MODES]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["name"]
        verbose_name = _("risk profile")
        verbose_name_plural = _("risk profiles")

    def __str__(self) -> str:
        return self.name

    def limit_values(self) -> dict:
        from rules.limits import EVALUATION_FIELDS, LIMITS_BY_FIELD, LIST_FIELDS

        names = [*LIMITS_BY_FIELD, *EVALUATION_FIELDS, *LIST_FIELDS, *ACTION_FIELDS, "asset_caps"]
        values = {name: getattr(self, name) for name in names}
        values["symbol_limits"] = self.symbol_limit_values()
        return values

    def symbol_limit_values(self) -> dict[str, dict]:
        """{symbol: {field: value}} of the per-symbol overrides (unset fields left out)."""
        if self.pk is None:
            return getattr(self, "_pending_symbol_limits", None) or {}
        pending = getattr(self, "_pending_symbol_limits", None)
        if pending is not None:
            return pending
        return {row.symbol: row.values() for row in self.symbol_limits.all()}

    def clean(self) -> None:
        from marketdata.services import exchange_max_leverage

        errors = validate_limits(self.limit_values(), exchange_max_leverage=exchange_max_leverage())
        if errors:
            raise ValidationError(errors)


class SymbolLimit(models.Model):
    """One symbol's overrides in a profile: order quantity and notional caps, position notional,
    leverage and the price collar. An unset field falls back to the profile's own limit."""

    profile = models.ForeignKey(RiskProfile, on_delete=models.CASCADE, related_name="symbol_limits")
    symbol = models.CharField(_("symbol"), max_length=30)
    max_order_qty = models.DecimalField(_("quantity per order"), null=True, blank=True, **AMOUNT)
    max_order_notional = models.DecimalField(_("notional per order"), null=True, blank=True, **AMOUNT)
    max_position_notional_warning = models.DecimalField(
        _("position notional (warning)"), null=True, blank=True, **AMOUNT
    )
    max_position_notional_critical = models.DecimalField(
        _("position notional (critical)"), null=True, blank=True, **AMOUNT
    )
    max_leverage_warning = models.PositiveIntegerField(_("leverage (warning)"), null=True, blank=True)
    max_leverage_critical = models.PositiveIntegerField(_("leverage (critical)"), null=True, blank=True)
    max_price_deviation = models.DecimalField(_("limit price deviation from mark"), null=True, blank=True, **FRACTION)

    history = HistoricalRecords()
    LIMIT_FIELDS = SYMBOL_LIMIT_FIELDS

    class Meta:
        ordering = ["profile", "symbol"]
        constraints = [models.UniqueConstraint(fields=["profile", "symbol"], name="rules_symbol_limit_unique")]
        verbose_name = _("per-symbol limit")
        verbose_name_plural = _("per-symbol limits")

    def __str__(self) -> str:
        return f"{self.profile} / {self.symbol}"

    def values(self) -> dict:
        return {f: getattr(self, f) for f in SYMBOL_LIMIT_FIELDS if getattr(self, f) is not None}

    def clean(self) -> None:
        from marketdata.services import exchange_max_leverage

        self.symbol = (self.symbol or "").strip().upper()
        if self.profile_id is None:
            return
        base = self.profile.limit_values()
        base["symbol_limits"] = {**base["symbol_limits"], self.symbol: self.values()}
        errors = validate_limits(base, exchange_max_leverage=exchange_max_leverage())
        if "symbol_limits" in errors:
            raise ValidationError(errors["symbol_limits"])


class RiskAction(models.Model):
    """An automatic action on a critical breach: proposed (a dry-run plan a risk manager
    may execute) or executed at once when the profile says act. Every step is audited."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", _("Proposed")
        APPROVED = "approved", _("Approved, queued")
        RUNNING = "running", _("Running")
        EXECUTED = "executed", _("Executed")
        FAILED = "failed", _("Failed")
        DISMISSED = "dismissed", _("Dismissed")
        # The account went flat or was liquidated before anyone decided: the plan no longer
        # describes the account, so it must never run.
        EXPIRED = "expired", _("Expired")

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="risk_actions")
    alert = models.ForeignKey("alerts.Alert", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    trigger = models.CharField(_("trigger"), max_length=32)
    kind = models.CharField(_("action"), max_length=20)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PROPOSED)
    plan = models.JSONField(_("plan"), default=dict)
    result = models.JSONField(_("result"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decision_reason = models.CharField(_("reason for the decision"), max_length=500, blank=True, default="")
    executed_at = models.DateTimeField(_("executed"), null=True, blank=True)

    history = HistoricalRecords()

    # Not yet running: an approval still waiting for the worker can be expired with a proposal.
    PENDING = (Status.PROPOSED, Status.APPROVED)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("risk action")
        verbose_name_plural = _("risk actions")

    def __str__(self) -> str:
        return f"{self.kind} on {self.account} ({self.status})"


class AccountBaseline(models.Model):
    """What an account's ordinary trading looks like, learned from its order log and fills
    (rules.baselines, a beat job): the anomaly detectors (rules.anomalies) compare against it.
    An account without a row uses the desk-wide defaults (rules.anomalies.DESK_BASELINE)."""

    account = models.OneToOneField("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="baseline")
    orders_10s_median = models.FloatField(_("orders per 10 s: median"), default=0)
    orders_10s_mad = models.FloatField(_("orders per 10 s: MAD"), default=0)
    cancels_10s_median = models.FloatField(_("cancels per 10 s: median"), default=0)
    cancels_10s_mad = models.FloatField(_("cancels per 10 s: MAD"), default=0)
    notional_p99 = models.DecimalField(_("order notional: 30-day p99"), null=True, blank=True, **AMOUNT)
    symbols = models.JSONField(_("symbols traded"), default=list, blank=True)
    hour_shares = models.JSONField(_("share of orders per hour of day (UTC)"), default=list, blank=True)
    orders_seen = models.PositiveIntegerField(_("orders behind the baseline"), default=0)
    computed_at = models.DateTimeField(_("computed"), auto_now=True)

    class Meta:
        verbose_name = _("account baseline")
        verbose_name_plural = _("account baselines")

    def __str__(self) -> str:
        return f"baseline of account {self.account_id}"


# --- allocation ---


class VarHistory(models.Model):
    """One row per trading day and scope (the desk, or one account): the 1-day 99 % VaR/ES as the
    allocation beat job last computed it that day (rules.allocation.services.risk_refresh upserts it;
    the day's last computation wins). The "VaR over time" chart and the report read these rows, so a
    cache flush loses nothing: the cache only holds the desk's series as a fast path.

    `scope` is the unique key ("desk" or the account's id): a nullable foreign key cannot carry the
    desk's uniqueness (NULLs are distinct in unique indexes on SQLite and MariaDB alike)."""

    DESK = "desk"

    day = models.DateField(_("trading day"))
    scope = models.CharField(_("scope"), max_length=24, help_text=_('"desk", or the account\'s id'))
    account = models.ForeignKey(
        "accounts.ExchangeAccount",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("account"),
    )
    as_of = models.DateTimeField(_("history up to"), null=True, blank=True)
    var_historical = models.DecimalField(_("VaR 99 % (historical)"), null=True, blank=True, **AMOUNT)
    es_historical = models.DecimalField(_("ES 99 % (historical)"), null=True, blank=True, **AMOUNT)
    var_parametric = models.DecimalField(_("VaR 99 % (parametric)"), null=True, blank=True, **AMOUNT)
    equity = models.DecimalField(_("equity"), null=True, blank=True, **AMOUNT)
    not_available = models.CharField(_("not available because"), max_length=500, blank=True, default="")
    computed_at = models.DateTimeField(_("computed"))

    class Meta:
        ordering = ["day", "scope"]
        constraints = [models.UniqueConstraint(fields=["day", "scope"], name="rules_var_history_day_scope")]
        indexes = [models.Index(fields=["scope", "day"], name="rules_var_history_scope_day")]
        verbose_name = _("VaR history point")
        verbose_name_plural = _("VaR history")

    def __str__(self) -> str:
        return f"VaR {self.scope} {self.day}"
