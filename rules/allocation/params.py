"""The adviser's inputs as a person or a client gives them: parsed and checked here, once, for the
page, the apply form and the API alike (a bad value is a message, never a 500)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils.translation import gettext_lazy as _

METHODS = {
    "risk_parity": _("equal risk contribution (risk parity)"),
    "inverse_vol": _("inverse volatility"),
}
MAX_CAPITAL = Decimal("1e15")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class AdviserParams:
    """capital: the desk's capital to allocate (None: the desk's equity now); budgets: the daily
    99 % VaR allowed, as a fraction of equity, for the desk and for each account alone."""

    capital: Decimal | None
    desk_budget: Decimal
    account_budget: Decimal
    method: str

    def as_query(self) -> dict[str, str]:
        out = {
            "desk_budget_pct": _plain(self.desk_budget * HUNDRED),
            "account_budget_pct": _plain(self.account_budget * HUNDRED),
            "method": self.method,
        }
        if self.capital is not None:
            out["capital"] = _plain(self.capital)
        return out


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def defaults() -> AdviserParams:
    return AdviserParams(
        capital=None,
        desk_budget=Decimal(str(settings.ALLOCATION_DESK_BUDGET_PCT)) / HUNDRED,
        account_budget=Decimal(str(settings.ALLOCATION_ACCOUNT_BUDGET_PCT)) / HUNDRED,
        method=settings.ALLOCATION_METHOD,
    )


def _number(raw: object) -> Decimal | None:
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def parse(data: Mapping[str, object]) -> tuple[AdviserParams, dict[str, str]]:
    """The params in `data` (missing ones take the desk's defaults) and the problems, by field."""
    base = defaults()
    errors: dict[str, str] = {}
    capital = base.capital
    raw = data.get("capital")
    if raw not in (None, ""):
        capital = _number(raw)
        if capital is None or capital <= 0 or capital > MAX_CAPITAL:
            errors["capital"] = str(_("Enter the capital as a positive amount (USDT)."))
            capital = base.capital
    budgets = {}
    for name, default in (("desk_budget_pct", base.desk_budget), ("account_budget_pct", base.account_budget)):
        raw = data.get(name)
        value = default
        if raw not in (None, ""):
            pct = _number(raw)
            if pct is None or pct <= 0 or pct > HUNDRED:
                errors[name] = str(_("Enter a daily VaR budget above 0 and at most 100 percent of equity."))
            else:
                value = pct / HUNDRED
        budgets[name] = value
    method = str(data.get("method") or base.method)
    if method not in METHODS:
        errors["method"] = str(_("Choose risk_parity or inverse_vol."))
        method = base.method
    params = AdviserParams(capital, budgets["desk_budget_pct"], budgets["account_budget_pct"], method)
    return params, errors
