"""Number, money, ratio and age formatting for the desk pages, in the active locale.

Everything goes through django.utils.formats, so separators follow the language. Grouping is
forced (a risk desk reads 1,234,567.89, not 1234567.89) — and where Django's locale leaves the
group separator empty (zh-Hans), CLDR's "," is used, which is what Chinese finance software shows.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import template
from django.core.signals import request_started
from django.utils import formats
from django.utils.translation import get_language
from django.utils.translation import gettext as _

register = template.Library()

DASH = "—"
CLDR_GROUPING = {"zh-hans": ","}


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def number(value: Any, places: int, *, sign: bool = False) -> str:
    d = _decimal(value)
    if d is None or not d.is_finite():
        return DASH
    d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = formats.number_format(d, places, use_l10n=True, force_grouping=True)
    separator = CLDR_GROUPING.get((get_language() or "").lower())
    if separator and not formats.get_format("THOUSAND_SEPARATOR"):
        text = _group(text, separator, formats.get_format("DECIMAL_SEPARATOR"))
    if sign and d > 0:
        text = "+" + text
    return text


def _group(text: str, separator: str, decimal_separator: str) -> str:
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(decimal_separator)
    groups = []
    while len(whole) > 3:
        whole, groups = whole[:-3], [whole[-3:], *groups]
    grouped = separator.join([whole, *groups])
    return ("-" if negative else "") + grouped + (decimal_separator + fraction if fraction else "")


@register.filter
def money(value: Any, places: int = 2) -> str:
    return number(value, int(places))


@register.filter
def signed_money(value: Any, places: int = 2) -> str:
    return number(value, int(places), sign=True)


# The symbols' ticks, read at most once per request (a page must not query them per cell) and
# forgotten when the next request starts, so a refresh_symbols is seen at once.
_ticks = threading.local()


def _forget_ticks(**_kwargs: Any) -> None:
    _ticks.__dict__.pop("table", None)


request_started.connect(_forget_ticks, dispatch_uid="desk-ticks")


def tick_size(symbol: str) -> Decimal | None:
    table = getattr(_ticks, "table", None)
    if table is None:
        from marketdata.models import Symbol

        table = _ticks.table = {name: tick for name, tick in Symbol.objects.values_list("name", "tick_size") if tick}
    return table.get(symbol)


def tick_places(tick: Decimal) -> int:
    exponent = tick.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


@register.filter
def price(value: Any, symbol: str = "") -> str:
    """To the symbol's tick when it is known (BTCUSDT 0.10 → 43,210.1; a 0.0001 tick → 1.2345),
    else enough decimals for the price's size: 43,210.10 · 3,402.57 · 1.2345 · 0.012345."""
    d = _decimal(value)
    if d is None:
        return DASH
    tick = tick_size(symbol) if symbol else None
    if tick:
        return number(d, tick_places(tick))
    magnitude = abs(d)
    places = 2 if magnitude >= 100 else 4 if magnitude >= 1 else 6
    return number(d, places)


# margin.RATIO_CAP (100 = 10,000 %) is the sentinel for "no margin left": a number nobody should read.
LIQUIDATION_RATIO = Decimal(1)


@register.filter
def margin_ratio(value: Any, places: int = 2) -> str:
    """A margin ratio as a percentage; at or past 100 % (the exchange liquidates there, and the
    figures cap the ratio at a 10,000 % sentinel) it says so instead of printing the sentinel."""
    d = _decimal(value)
    if d is None:
        return DASH
    if d >= LIQUIDATION_RATIO:
        return _("≥ 100 % (liquidated)")
    return pct(d, places)


@register.filter
def qty(value: Any) -> str:
    """A quantity as the exchange states it: no trailing zeros, up to 8 decimals."""
    d = _decimal(value)
    if d is None:
        return DASH
    d = d.quantize(Decimal("1e-8")).normalize()
    places = max(0, -d.as_tuple().exponent) if isinstance(d.as_tuple().exponent, int) else 0
    return number(d, places)


@register.filter
def pct(value: Any, places: int = 2) -> str:
    """A fraction as a percentage: 0.1234 -> 12.34%."""
    d = _decimal(value)
    if d is None:
        return DASH
    return number(d * 100, int(places)) + "%"


@register.filter
def signed_pct(value: Any, places: int = 2) -> str:
    d = _decimal(value)
    if d is None:
        return DASH
    return number(d * 100, int(places), sign=True) + "%"


@register.filter
def age(seconds: Any) -> str:
    """How long ago, compactly: 0.4 s, 12 s, 3 min, 2 h, 5 d."""
    if seconds is None:
        return DASH
    s = float(seconds)
    if s < 10:
        return _("%(n)s s") % {"n": number(Decimal(str(round(s, 1))), 1)}
    if s < 120:
        return _("%(n)s s") % {"n": int(s)}
    if s < 7200:
        return _("%(n)s min") % {"n": int(s // 60)}
    if s < 172800:
        return _("%(n)s h") % {"n": int(s // 3600)}
    return _("%(n)s d") % {"n": int(s // 86400)}


@register.filter
def from_ms(value: Any) -> datetime | None:
    """Epoch milliseconds as an aware datetime; the |date filter then shows it in the user's zone."""
    if not value:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


@register.filter
def get(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None
