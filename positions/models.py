from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

MONEY = {"max_digits": 32, "decimal_places": 12}
RATIO = {"max_digits": 20, "decimal_places": 10}


class Side(models.TextChoices):
    BOTH = "BOTH", _("Both (one-way)")
    LONG = "LONG", _("Long")
    SHORT = "SHORT", _("Short")


class MarginType(models.TextChoices):
    CROSS = "cross", _("Cross")
    ISOLATED = "isolated", _("Isolated")


class Position(models.Model):
    """The desk's view of one exchange position. `quantity` is signed for BOTH
    (one-way mode) and absolute for the LONG/SHORT legs of hedge mode, as Binance reports it."""

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="positions")
    symbol = models.ForeignKey("marketdata.Symbol", on_delete=models.PROTECT, related_name="positions")
    side = models.CharField(_("side"), max_length=5, choices=Side.choices, default=Side.BOTH)
    quantity = models.DecimalField(_("quantity"), **MONEY)
    entry_price = models.DecimalField(_("entry price"), **MONEY)
    leverage = models.PositiveSmallIntegerField(_("leverage"), default=20)
    margin_type = models.CharField(_("margin type"), max_length=8, choices=MarginType.choices, default=MarginType.CROSS)
    isolated_wallet = models.DecimalField(_("isolated wallet"), default=Decimal(0), **MONEY)
    mark_price = models.DecimalField(_("mark price"), null=True, blank=True, **MONEY)
    unrealized_pnl = models.DecimalField(_("unrealized PnL"), default=Decimal(0), **MONEY)
    liquidation_price = models.DecimalField(_("liquidation price"), null=True, blank=True, **MONEY)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["account__name", "symbol__name", "side"]
        unique_together = [("account", "symbol", "side")]
        verbose_name = _("position")
        verbose_name_plural = _("positions")

    def __str__(self) -> str:
        return f"{self.account} {self.symbol_id} {self.side} {self.quantity}"

    @property
    def notional(self) -> Decimal | None:
        if self.mark_price is None:
            return None
        return abs(self.quantity) * self.mark_price

    @property
    def is_long(self) -> bool:
        return self.side == Side.LONG or (self.side == Side.BOTH and self.quantity > 0)


class AccountSnapshot(models.Model):
    """Account figures at a moment, written by the stream process at a bounded rate."""

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="snapshots")
    time = models.DateTimeField(_("time"), db_index=True)
    wallet_balance = models.DecimalField(_("wallet balance"), **MONEY)
    margin_balance = models.DecimalField(_("margin balance"), **MONEY)
    maint_margin = models.DecimalField(_("maintenance margin"), **MONEY)
    unrealized_pnl = models.DecimalField(_("unrealized PnL"), **MONEY)
    realized_pnl_today = models.DecimalField(_("realized PnL today"), default=Decimal(0), **MONEY)
    margin_ratio = models.DecimalField(_("margin ratio"), null=True, blank=True, **RATIO)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["account", "time"])]
        verbose_name = _("account snapshot")
        verbose_name_plural = _("account snapshots")

    def __str__(self) -> str:
        return f"{self.account} @ {self.time:%Y-%m-%d %H:%M:%S}"


class OrderSource(models.TextChoices):
    API = "api", _("API")
    DASHBOARD = "dashboard", _("Dashboard")
    AUTO_ACTION = "auto_action", _("Automatic action")
    KILL_SWITCH = "kill_switch", _("Kill switch")
    EXCHANGE = "exchange", _("Seen on the exchange")


class OrderDecision(models.TextChoices):
    ALLOWED = "allowed", _("Allowed")
    DENIED = "denied", _("Denied")
    SUBMITTED = "submitted", _("Submitted")
    REJECTED = "rejected", _("Rejected by exchange")
    UNKNOWN = "unknown", _("Outcome unknown")
    OBSERVED = "observed", _("Observed")


class OrderLog(models.Model):
    """Every order seen or checked: who sent it, what was decided and why."""

    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    account = models.ForeignKey(
        "accounts.ExchangeAccount", on_delete=models.SET_NULL, null=True, blank=True, related_name="order_logs"
    )
    source = models.CharField(_("source"), max_length=16, choices=OrderSource.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    token_id = models.CharField(_("token id"), max_length=64, blank=True, default="")
    symbol = models.CharField(_("symbol"), max_length=32)
    side = models.CharField(_("side"), max_length=4)
    position_side = models.CharField(_("position side"), max_length=5, default="BOTH")
    order_type = models.CharField(_("type"), max_length=24)
    quantity = models.DecimalField(_("quantity"), null=True, blank=True, **MONEY)
    price = models.DecimalField(_("price"), null=True, blank=True, **MONEY)
    reduce_only = models.BooleanField(_("reduce only"), default=False)
    client_order_id = models.CharField(_("client order id"), max_length=64, blank=True, default="")
    decision = models.CharField(_("decision"), max_length=10, choices=OrderDecision.choices)
    reason_codes = models.JSONField(_("reason codes"), default=list, blank=True)
    details = models.JSONField(_("numbers behind the decision"), default=dict, blank=True)
    exchange_order_id = models.CharField(_("exchange order id"), max_length=64, blank=True, default="")
    exchange_status = models.CharField(_("exchange status"), max_length=24, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "decision", "created_at"])]
        verbose_name = _("order log")
        verbose_name_plural = _("order log")

    def __str__(self) -> str:
        return f"{self.created_at:%H:%M:%S} {self.symbol} {self.side} {self.decision}"


# --------------------------------------------------------------------------- the fill ledger


class FillSide(models.TextChoices):
    BUY = "BUY", _("Buy")
    SELL = "SELL", _("Sell")


class FillKind(models.TextChoices):
    TRADE = "trade", _("Trade")
    LIQUIDATION = "liquidation", _("Liquidation")
    ADL = "adl", _("Auto-deleveraging")


class Fill(models.Model):
    """One execution from ORDER_TRADE_UPDATE, with its realized PnL (`rp`) and commission (`n`):
    the ledger that realized PnL today and the closed positions' results are summed from."""

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="fills")
    symbol = models.CharField(_("symbol"), max_length=32)
    side = models.CharField(_("side"), max_length=4, choices=FillSide.choices)
    position_side = models.CharField(_("position side"), max_length=5, choices=Side.choices, default=Side.BOTH)
    order_id = models.CharField(_("exchange order id"), max_length=64)
    client_order_id = models.CharField(_("client order id"), max_length=64, blank=True, default="")
    trade_id = models.BigIntegerField(_("trade id"), default=0)
    qty = models.DecimalField(_("quantity"), **MONEY)
    cum_qty = models.DecimalField(_("order filled so far"), default=Decimal(0), **MONEY)
    price = models.DecimalField(_("price"), **MONEY)
    realized_pnl = models.DecimalField(_("realized PnL"), default=Decimal(0), **MONEY)
    commission = models.DecimalField(_("commission"), default=Decimal(0), **MONEY)
    commission_asset = models.CharField(_("commission asset"), max_length=16, blank=True, default="")
    kind = models.CharField(_("kind"), max_length=12, choices=FillKind.choices, default=FillKind.TRADE)
    time = models.DateTimeField(_("time"))
    # "t:<symbol>:<trade id>", or "o:<order id>:<cumulative qty>" when the exchange gave no trade id
    # (liquidation executions may carry t=0). One unique column instead of two partial unique
    # indexes, which MariaDB does not have.
    dedupe_key = models.CharField(max_length=120, editable=False)

    class Meta:
        ordering = ["-time", "-id"]
        constraints = [models.UniqueConstraint(fields=["account", "dedupe_key"], name="fill_unique_per_account")]
        indexes = [models.Index(fields=["account", "time"]), models.Index(fields=["account", "order_id"])]
        verbose_name = _("fill")
        verbose_name_plural = _("fills")

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol} {self.side} {self.qty} @ {self.price}"


class FundingFee(models.Model):
    """A funding payment (ACCOUNT_UPDATE reason FUNDING_FEE): negative when the account paid."""

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="funding_fees")
    asset = models.CharField(_("asset"), max_length=16)
    symbol = models.CharField(_("symbol"), max_length=32, blank=True, default="")  # blank: cross, no P row
    amount = models.DecimalField(_("amount"), **MONEY)
    time = models.DateTimeField(_("time"))

    class Meta:
        ordering = ["-time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "time", "asset", "symbol"], name="funding_unique_per_account")
        ]
        verbose_name = _("funding fee")
        verbose_name_plural = _("funding fees")

    def __str__(self) -> str:
        return f"{self.account_id} {self.asset} {self.amount}"


class CloseReason(models.TextChoices):
    CLOSED = "closed", _("Closed")
    LIQUIDATED = "liquidated", _("Liquidated")
    ADL = "adl", _("Auto-deleveraged")


class ClosedPosition(models.Model):
    """A position the exchange reported closed, with its realized result and why it closed."""

    account = models.ForeignKey("accounts.ExchangeAccount", on_delete=models.CASCADE, related_name="closed_positions")
    symbol = models.CharField(_("symbol"), max_length=32)
    side = models.CharField(_("side"), max_length=5, choices=Side.choices, default=Side.BOTH)
    qty = models.DecimalField(_("quantity"), **MONEY)
    entry_price = models.DecimalField(_("entry price"), null=True, blank=True, **MONEY)
    exit_price = models.DecimalField(_("exit price"), null=True, blank=True, **MONEY)
    realized_pnl = models.DecimalField(_("realized PnL"), null=True, blank=True, **MONEY)
    commission = models.DecimalField(_("commission"), default=Decimal(0), **MONEY)
    reason = models.CharField(_("reason"), max_length=10, choices=CloseReason.choices, default=CloseReason.CLOSED)
    closed_at = models.DateTimeField(_("closed at"), db_index=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    exchange_order_id = models.CharField(_("exchange order id"), max_length=64, blank=True, default="")
    # The exchange order id, else "t<close time ms>": the stream and the REST reconciliation may
    # both report one close, and only the first may write it.
    close_key = models.CharField(max_length=80, editable=False)

    class Meta:
        ordering = ["-closed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "symbol", "side", "close_key"], name="closed_position_unique")
        ]
        indexes = [models.Index(fields=["account", "closed_at"])]
        verbose_name = _("closed position")
        verbose_name_plural = _("closed positions")

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol} {self.side} {self.reason} {self.closed_at:%H:%M:%S}"

    @property
    def is_long(self) -> bool:
        return self.side == Side.LONG or (self.side == Side.BOTH and (self.details or {}).get("direction") != "short")

    @property
    def is_liquidation(self) -> bool:
        return self.reason in (CloseReason.LIQUIDATED, CloseReason.ADL)


# --------------------------------------------------------------------------- the archive


class ArchiveBatch(models.Model):
    """One Parquet file in the archive store: the rows it holds were written, read back and
    verified (row count and sha256) before they were deleted, in the transaction that wrote this
    row (positions/archive/, docs/ARCHIVE.md)."""

    table = models.CharField(_("table"), max_length=32)
    day = models.DateField(_("UTC day"))
    part = models.PositiveIntegerField(_("part"))
    first_pk = models.BigIntegerField(_("first key"))
    last_pk = models.BigIntegerField(_("last key"))
    time_from = models.DateTimeField(_("earliest row"))
    time_to = models.DateTimeField(_("latest row"))
    rows = models.PositiveIntegerField(_("rows"))
    sha256 = models.CharField(_("sha256 of keys and values"), max_length=64)
    uri = models.CharField(_("file"), max_length=500)
    size = models.BigIntegerField(_("bytes"), default=0)
    created_at = models.DateTimeField(_("archived"), auto_now_add=True)
    # Set by restore_archive: the rows are hot again, and history reads them there, not here.
    restored_at = models.DateTimeField(_("restored"), null=True, blank=True)

    class Meta:
        ordering = ["table", "day", "part"]
        constraints = [models.UniqueConstraint(fields=["table", "day", "part"], name="archive_batch_unique_part")]
        verbose_name = _("archive batch")
        verbose_name_plural = _("archive batches")

    def __str__(self) -> str:
        return f"{self.table} {self.day} part {self.part} ({self.rows} rows)"


class ArchivePolicy(models.Model):
    """How long a table stays hot in the database; settings.ARCHIVE_RETENTION_DAYS holds the
    defaults, a row here overrides them for one table."""

    table = models.CharField(_("table"), max_length=32, unique=True)
    retention_days = models.PositiveIntegerField(_("days kept in the database"))
    enabled = models.BooleanField(_("archive this table"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["table"]
        verbose_name = _("archive policy")
        verbose_name_plural = _("archive policies")

    def __str__(self) -> str:
        return f"{self.table}: {self.retention_days} d"
