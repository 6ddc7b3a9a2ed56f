from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

PRICE = {"max_digits": 32, "decimal_places": 12}


class Symbol(models.Model):
    """A tradable contract with the exchange's filters and its latest mark price."""

    name = models.CharField(_("symbol"), max_length=32, unique=True)
    exchange = models.CharField(_("exchange"), max_length=20, default="binance_usdm")
    base_asset = models.CharField(_("base asset"), max_length=16)
    quote_asset = models.CharField(_("quote asset"), max_length=16, default="USDT")
    margin_asset = models.CharField(_("margin asset"), max_length=16, default="USDT")
    status = models.CharField(_("status"), max_length=16, default="TRADING")
    tick_size = models.DecimalField(_("tick size"), **PRICE)
    step_size = models.DecimalField(_("step size"), **PRICE)
    min_qty = models.DecimalField(_("min quantity"), **PRICE)
    max_qty = models.DecimalField(_("max quantity"), **PRICE)
    market_max_qty = models.DecimalField(_("max market quantity"), null=True, blank=True, **PRICE)
    min_notional = models.DecimalField(_("min notional"), **PRICE)
    price_precision = models.PositiveSmallIntegerField(_("price precision"))
    quantity_precision = models.PositiveSmallIntegerField(_("quantity precision"))
    mark_price = models.DecimalField(_("mark price"), null=True, blank=True, **PRICE)
    mark_price_at = models.DateTimeField(_("mark price time"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("symbol")
        verbose_name_plural = _("symbols")

    def __str__(self) -> str:
        return self.name

    @property
    def max_leverage(self) -> int | None:
        top = self.brackets.filter(account__isnull=True).order_by("bracket").first()
        return top.initial_leverage if top else None


class LeverageBracket(models.Model):
    """One row of GET /fapi/v1/leverageBracket. `account` set means the exchange
    scaled this account's table (notionalCoef); otherwise it is the symbol default."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="brackets")
    account = models.ForeignKey(
        "accounts.ExchangeAccount", on_delete=models.CASCADE, null=True, blank=True, related_name="brackets"
    )
    bracket = models.PositiveSmallIntegerField(_("bracket"))
    initial_leverage = models.PositiveSmallIntegerField(_("max leverage"))
    notional_floor = models.DecimalField(_("notional floor"), **PRICE)
    notional_cap = models.DecimalField(_("notional cap"), **PRICE)
    maint_margin_ratio = models.DecimalField(_("maintenance margin ratio"), max_digits=12, decimal_places=8)
    cum = models.DecimalField(_("maintenance amount"), **PRICE)
    notional_coef = models.DecimalField(
        _("notional coefficient"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    fetched_at = models.DateTimeField(_("fetched"), auto_now=True)

    class Meta:
        ordering = ["symbol__name", "account_id", "bracket"]
        # NULL account rows are the symbol defaults; tables are replaced whole by
        # one service, so the NULL-is-distinct rule of unique indexes never bites.
        unique_together = [("symbol", "account", "bracket")]
        verbose_name = _("leverage bracket")
        verbose_name_plural = _("leverage brackets")

    def __str__(self) -> str:
        return f"{self.symbol_id}#{self.bracket}"


class TickerHistory(models.Model):
    """Mark prices kept for charts and what-if replays. Written off the hot path."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="history")
    time = models.DateTimeField(_("time"))
    mark_price = models.DecimalField(_("mark price"), **PRICE)
    index_price = models.DecimalField(_("index price"), null=True, blank=True, **PRICE)
    funding_rate = models.DecimalField(_("funding rate"), max_digits=16, decimal_places=10, null=True, blank=True)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["symbol", "time"])]
        verbose_name = _("ticker history")
        verbose_name_plural = _("ticker history")

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.time:%Y-%m-%d %H:%M:%S} {self.mark_price}"


class MinuteBar(models.Model):
    """One 1-minute OHLC bar per symbol: the market history volatility, correlations and VaR read
    (issue 18). From the exchange's klines (backfill, daily refresh) or built by the stream process
    from the marks it saw; a klines bar replaces a marks bar, never the other way round
    (marketdata/bars.py)."""

    MARKS, KLINES = "marks", "klines"
    SOURCES = [(MARKS, _("mark prices")), (KLINES, _("exchange klines"))]

    # A name, not a foreign key: a backfill may fetch symbols before exchangeInfo made their rows.
    symbol = models.CharField(_("symbol"), max_length=32)
    open_time = models.DateTimeField(_("open time"))
    open = models.DecimalField(_("open"), **PRICE)
    high = models.DecimalField(_("high"), **PRICE)
    low = models.DecimalField(_("low"), **PRICE)
    close = models.DecimalField(_("close"), **PRICE)
    source = models.CharField(_("source"), max_length=8, choices=SOURCES)

    class Meta:
        ordering = ["symbol", "open_time"]
        # The unique index (symbol, open_time) is also what every range read uses.
        constraints = [models.UniqueConstraint(fields=["symbol", "open_time"], name="marketdata_minutebar_unique")]
        verbose_name = _("minute bar")
        verbose_name_plural = _("minute bars")

    def __str__(self) -> str:
        return f"{self.symbol} {self.open_time:%Y-%m-%d %H:%M} {self.close}"
