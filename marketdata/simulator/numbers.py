"""Decimal in, Decimal inside, strings out: the simulator's number boundary.

Binance sends every amount as a string; the simulator parses them to Decimal,
computes in Decimal, and formats back with a fixed number of places (8 for money
and marks, the symbol's precision for prices and quantities), as Binance does.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO = Decimal(0)
ONE = Decimal(1)
MONEY_PLACES = 8  # balances, PnL, margins, mark prices: Binance shows 8 places

# A request number as Binance accepts it: plain decimal, no sign, no exponent.
_PLAIN = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
_EXPONENTS: dict[int, Decimal] = {}


def _quantum(places: int) -> Decimal:
    quantum = _EXPONENTS.get(places)
    if quantum is None:
        quantum = _EXPONENTS[places] = Decimal(1).scaleb(-places)
    return quantum


def fmt(value: Decimal, places: int = MONEY_PLACES) -> str:
    """Fixed-point string with exactly ``places`` decimals; never "-0.00"."""
    quantized = value.quantize(_quantum(places), rounding=ROUND_HALF_UP)
    if quantized == 0:
        quantized = abs(quantized)
    return f"{quantized:f}"


def fmt_trim(value: Decimal, places: int = MONEY_PLACES) -> str:
    """Like ``fmt`` but without trailing zeros (one decimal kept), as Binance prints entry prices."""
    text = fmt(value, places)
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return text


def quantize(value: Decimal, places: int = MONEY_PLACES) -> Decimal:
    return value.quantize(_quantum(places), rounding=ROUND_HALF_UP)


def parse_plain(text: str) -> Decimal | None:
    """A non-negative plain decimal from a request parameter, or None when malformed."""
    if not isinstance(text, str) or not _PLAIN.match(text):
        return None
    return Decimal(text)


def decimals_of(value: Decimal) -> int:
    """Number of decimal places written in ``value`` ("0.500" -> 3, "43000" -> 0)."""
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def to_decimal(value: object) -> Decimal:
    """A config number (str, int, or a YAML float via its shortest repr) as a finite Decimal.

    Raises ValueError for anything else, including bools (YAML turns "yes" into True).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"not a number: {value!r}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result
