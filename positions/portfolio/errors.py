"""Errors of the portfolio risk maths: one class per thing a person can fix, each with a stable code.

Every error is a ``ValueError`` (callers that already turn ValueError into a 4xx keep working) and
carries ``code`` (a stable string the API and the page switch on to show a translated message) and
``symbols`` (what it is about). Nothing in this package returns NaN or Infinity instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable


class PortfolioError(ValueError):
    code = "bad_input"

    def __init__(self, message: str, *, symbols: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.symbols = tuple(symbols)


class BadInput(PortfolioError):
    code = "bad_input"


class NoBars(PortfolioError):
    """A symbol the calculation needs has no bar at or before ``as_of``."""

    code = "no_bars"


class InsufficientHistory(PortfolioError):
    """Too few returns or scenarios for the estimate asked for."""

    code = "insufficient_history"


class ZeroVolatility(PortfolioError):
    """A weighting needs a positive volatility and every candidate has none."""

    code = "zero_volatility"
