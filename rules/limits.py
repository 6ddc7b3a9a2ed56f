"""The catalogue of limits a RiskProfile holds, and their validation.

Plain Python (no Django): the model, the admin form, the API serializer and the
YAML importer all validate through `validate_limits`, so a value refused in one
place is refused everywhere with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

HIGHER_IS_WORSE = "higher"
LOWER_IS_WORSE = "lower"

MONEY = "money"  # a non-negative amount in the margin asset (USDT)
SCORE = "score"  # a risk score from 0 to 100 (see rules/score.py)
RATIO = "ratio"  # a fraction in [0, 1]
COUNT = "count"  # a non-negative whole number
LEVERAGE = "leverage"  # a whole number from 1 to the exchange's maximum
QUANTITY = "quantity"  # a non-negative contract quantity
MULTIPLE = "multiple"  # a non-negative factor: k x a baseline (an anomaly detector's level)


@dataclass(frozen=True)
class Limit:
    """One limit. `pair` limits have a warning and a critical field (`<name>_warning`, `<name>_critical`)."""

    name: str
    family: str  # funds | positions | orders | accounts
    kind: str
    section: str  # the YAML section under risk_control
    direction: str = HIGHER_IS_WORSE
    pair: bool = True
    label: str = ""

    def fields(self) -> tuple[str, ...]:
        return (f"{self.name}_warning", f"{self.name}_critical") if self.pair else (self.name,)


LIMITS: tuple[Limit, ...] = (
    # funds
    Limit("min_equity", "funds", MONEY, "funds", LOWER_IS_WORSE, label="equity floor"),
    Limit("max_utilization", "funds", RATIO, "funds", label="fund utilization (initial margin / margin balance)"),
    # positions
    Limit("max_position_notional", "positions", MONEY, "position", label="notional per symbol"),
    Limit("max_account_notional", "positions", MONEY, "position", label="gross notional per account"),
    Limit("max_leverage", "positions", LEVERAGE, "position", label="leverage"),
    Limit("margin_ratio", "positions", RATIO, "position", label="margin ratio (maintenance / margin balance)"),
    Limit("liq_distance", "positions", RATIO, "position", LOWER_IS_WORSE, label="distance to liquidation"),
    Limit("max_concentration", "positions", RATIO, "position", label="largest symbol's share of gross notional"),
    Limit("max_hhi", "positions", RATIO, "position", label="Herfindahl index of the exposure by symbol"),
    # orders (single hard limits: the gate allows or denies)
    Limit("max_order_qty", "orders", QUANTITY, "order", pair=False, label="quantity per order"),
    Limit("max_order_notional", "orders", MONEY, "order", pair=False, label="notional per order"),
    Limit("max_price_deviation", "orders", RATIO, "order", pair=False, label="limit price deviation from mark"),
    Limit("max_market_slippage", "orders", RATIO, "order", pair=False, label="market order slippage from mark"),
    Limit("order_rate_per_second", "orders", COUNT, "order", pair=False, label="orders per second"),
    Limit("order_rate_per_minute", "orders", COUNT, "order", pair=False, label="orders per minute"),
    Limit("max_open_orders", "orders", COUNT, "order", pair=False, label="open orders"),
    Limit("max_daily_orders", "orders", COUNT, "order", pair=False, label="orders per trading day"),
    Limit("max_daily_cancels", "orders", COUNT, "order", pair=False, label="cancels per trading day"),
    Limit("max_daily_fills", "orders", COUNT, "order", pair=False, label="fills per trading day"),
    Limit("duplicate_window_s", "orders", COUNT, "order", pair=False, label="duplicate-order window (s)"),
    # accounts
    Limit("max_daily_loss", "accounts", MONEY, "account", label="loss since the start of the trading day"),
    Limit("max_drawdown", "accounts", RATIO, "account", label="drawdown from peak equity"),
    # "risk_degree" keeps its name (stored profiles, open alerts, actions' triggers) and its measure:
    # the account-wide margin ratio. The risk score is its own limit (docs/RISK_LOGIC.md).
    Limit("risk_degree", "accounts", RATIO, "account", label="account margin ratio (all pools)"),
    Limit("risk_score", "accounts", SCORE, "account", label="risk score (0-100)"),
    # anomalies (rules.anomalies: each detector's warning and critical level)
    Limit("bypassed_orders", "anomalies", COUNT, "anomaly", label="orders the gate never approved (per day)"),
    Limit("order_burst", "anomalies", MULTIPLE, "anomaly", label="orders or cancels in 10 s, in MADs above the median"),
    Limit("cancel_ratio", "anomalies", MULTIPLE, "anomaly", label="cancels per fill over 5 minutes"),
    Limit("size_outlier", "anomalies", MULTIPLE, "anomaly", label="order notional as a multiple of the 30-day p99"),
    Limit("new_symbols", "anomalies", COUNT, "anomaly", label="symbols traded for the first time (per day)"),
    Limit("off_hours_orders", "anomalies", COUNT, "anomaly", label="orders in an unusual hour (per hour)"),
    Limit("loss_per_minute", "anomalies", MONEY, "anomaly", label="margin balance lost in one minute"),
    Limit("loss_5m", "anomalies", RATIO, "anomaly", label="share of margin balance lost in 5 minutes"),
    Limit("leverage_jump", "anomalies", MULTIPLE, "anomaly", label="exchange-side leverage raised by a factor"),
    Limit("key_permissions", "anomalies", COUNT, "anomaly", label="risky API key permissions"),
)

LIMITS_BY_FIELD: dict[str, Limit] = {f: lim for lim in LIMITS for f in lim.fields()}

# The seed's YAML keys (the format risk managers already use) and the fields they set.
SEED_ALIASES: dict[tuple[str, str], str] = {
    ("position", "max_leverage"): "max_leverage_critical",
    ("position", "max_position_value"): "max_position_notional_critical",
    ("position", "risk_ratio_threshold"): "margin_ratio_critical",
    ("order", "max_single_order"): "max_order_notional",
    ("order", "price_deviation_limit"): "max_price_deviation",
    ("order", "order_frequency_limit"): "order_rate_per_second",
    ("account", "max_daily_loss"): "max_daily_loss_critical",
    ("account", "risk_level_threshold"): "risk_degree_critical",
}

# Settings that are not limits but shape how limits are evaluated or acted on.
EVALUATION_FIELDS = ("breach_after_n", "hysteresis", "clear_dwell_s", "clear_dwell_by_rule", "reopen_window_s")
LIST_FIELDS = ("symbol_allowlist", "symbol_denylist", "disabled_checks")
ACTION_FIELDS = ("auto_action", "auto_action_mode", "bypass_action")
AUTO_ACTIONS = ("none", "reducing", "halted", "cancel_orders", "reduce_positions")
AUTO_ACTION_MODES = ("propose", "act")
# What the desk does by itself about an order the gate never approved (ORDER_BYPASSED_GATE).
BYPASS_ACTIONS = ("none", "cancel_order", "reducing", "halted")
MAX_HYSTERESIS = Decimal("0.5")
MAX_SECONDS = 86_400  # a dwell or re-open window longer than a day is a typo, not a policy
# The evaluator's rules (rules.levels.RULES): the keys clear_dwell_by_rule may name. Listed here,
# not imported, because levels imports this module.
EVALUATED_RULES = (
    "equity_floor",
    "asset_cap",
    "utilization",
    "position_notional",
    "account_notional",
    "leverage",
    "margin_ratio",
    "liq_distance",
    "concentration",
    "daily_loss",
    "drawdown",
    "risk_degree",
    "hhi",
    "risk_score",
)

# What a profile may override per symbol (RiskProfile.symbol_limits, YAML `symbols:`). Each field
# left unset in an override falls back to the profile's own value.
SYMBOL_LIMIT_FIELDS = (
    "max_order_qty",
    "max_order_notional",
    "max_position_notional_warning",
    "max_position_notional_critical",
    "max_leverage_warning",
    "max_leverage_critical",
    "max_price_deviation",
)
MAX_SYMBOL_LENGTH = 30


def as_decimal(value: Any) -> Decimal:
    """A number from a form, JSON or YAML, refusing bools, NaN and infinities."""
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError("expected a number") from exc
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _check_value(limit: Limit, value: Decimal, *, exchange_max_leverage: int) -> str | None:
    if value < 0:
        return "must not be negative"
    if limit.kind == SCORE and value > 100:
        return "is a score and must be between 0 and 100"
    if limit.kind == RATIO and value > 1:
        return "is a fraction and must be between 0 and 1 (0.05 means 5 %)"
    if limit.kind in (COUNT, LEVERAGE) and value != value.to_integral_value():
        return "must be a whole number"
    if limit.kind == LEVERAGE and not 1 <= value <= exchange_max_leverage:
        return f"must be between 1 and the exchange's maximum leverage ({exchange_max_leverage}x)"
    return None


def _check_pair(limit: Limit, warning: Decimal | None, critical: Decimal | None) -> str | None:
    if warning is None or critical is None:
        return None
    if limit.direction == HIGHER_IS_WORSE and warning > critical:
        return f"the warning level ({warning}) must not be above the critical level ({critical})"
    if limit.direction == LOWER_IS_WORSE and warning < critical:
        return f"the warning level ({warning}) must not be below the critical level ({critical}): lower is worse here"
    return None


def _limit_errors(values: dict[str, Any], exchange_max_leverage: int) -> tuple[dict[str, str], dict[str, Decimal]]:
    errors: dict[str, str] = {}
    numbers: dict[str, Decimal] = {}
    for field, limit in LIMITS_BY_FIELD.items():
        raw = values.get(field)
        if raw is None or raw == "":
            continue
        try:
            numbers[field] = as_decimal(raw)
        except ValueError as exc:
            errors[field] = str(exc)
            continue
        problem = _check_value(limit, numbers[field], exchange_max_leverage=exchange_max_leverage)
        if problem:
            errors[field] = problem
    for limit in LIMITS:
        if limit.pair and f"{limit.name}_warning" not in errors:
            problem = _check_pair(limit, numbers.get(f"{limit.name}_warning"), numbers.get(f"{limit.name}_critical"))
            if problem:
                errors[f"{limit.name}_warning"] = problem
    return errors, numbers


def _other_errors(values: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    n = values.get("breach_after_n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000):
        errors["breach_after_n"] = "must be a whole number from 1 to 1000"
    band = values.get("hysteresis")
    if band is not None:
        try:
            if not 0 <= as_decimal(band) <= MAX_HYSTERESIS:
                errors["hysteresis"] = f"must be a fraction between 0 and {MAX_HYSTERESIS}"
        except ValueError as exc:
            errors["hysteresis"] = str(exc)
    for field in ("clear_dwell_s", "reopen_window_s"):
        problem = _seconds_error(values.get(field))
        if problem:
            errors[field] = problem
    dwell = values.get("clear_dwell_by_rule")
    if dwell is not None:
        problem = _dwell_by_rule_error(dwell)
        if problem:
            errors["clear_dwell_by_rule"] = problem
    for field in LIST_FIELDS:
        items = values.get(field)
        if items is not None and (not isinstance(items, list) or not all(isinstance(i, str) for i in items)):
            errors[field] = "must be a list of strings"
    asset_caps = values.get("asset_caps")
    if asset_caps is not None:
        problem = _asset_caps_error(asset_caps)
        if problem:
            errors["asset_caps"] = problem
    if values.get("auto_action") not in (None, *AUTO_ACTIONS):
        errors["auto_action"] = f"must be one of {', '.join(AUTO_ACTIONS)}"
    if values.get("auto_action_mode") not in (None, *AUTO_ACTION_MODES):
        errors["auto_action_mode"] = f"must be one of {', '.join(AUTO_ACTION_MODES)}"
    if values.get("bypass_action") not in (None, *BYPASS_ACTIONS):
        errors["bypass_action"] = f"must be one of {', '.join(BYPASS_ACTIONS)}"
    return errors


def _seconds_error(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        return f"must be a whole number of seconds from 0 to {MAX_SECONDS}"
    return None


def _dwell_by_rule_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return 'must map a rule to seconds, e.g. {"drawdown": 120}'
    for rule, seconds in value.items():
        if rule not in EVALUATED_RULES:
            return f"unknown rule {rule!r} (known: {', '.join(EVALUATED_RULES)})"
        problem = _seconds_error(seconds)
        if problem:
            return f"{rule}: {problem}"
    return None


def _asset_caps_error(asset_caps: Any) -> str | None:
    if not isinstance(asset_caps, dict):
        return 'must map an asset to its cap, e.g. {"USDT": "500000"}'
    for asset, cap in asset_caps.items():
        try:
            if as_decimal(cap) < 0:
                return f"the cap for {asset} must not be negative"
        except ValueError:
            return f"the cap for {asset} must be a number"
    return None


def symbol_values(values: dict[str, Any], symbol: str) -> dict[str, Any]:
    """The profile's values with ``symbol``'s overrides laid over them (unset overrides fall back)."""
    override = (values.get("symbol_limits") or {}).get(symbol) or {}
    merged = {k: v for k, v in values.items() if k != "symbol_limits"}
    merged.update({k: v for k, v in override.items() if v is not None and v != ""})
    return merged


def _symbol_limits_error(symbol_limits: Any, values: dict[str, Any], exchange_max_leverage: int) -> str | None:
    if not isinstance(symbol_limits, dict):
        return 'must map a symbol to its limits, e.g. {"BTCUSDT": {"max_order_qty": "5"}}'
    for symbol, override in symbol_limits.items():
        if not isinstance(symbol, str) or not symbol or len(symbol) > MAX_SYMBOL_LENGTH or not symbol.isalnum():
            return f"{symbol!r} is not a symbol name"
        if not isinstance(override, dict):
            return f"{symbol}: must map a limit to its value"
        unknown = set(override) - set(SYMBOL_LIMIT_FIELDS)
        if unknown:
            return f"{symbol}: unknown limit {sorted(unknown)[0]!r} (known: {', '.join(SYMBOL_LIMIT_FIELDS)})"
        merged = symbol_values(values, symbol)
        errors, _ = _limit_errors({k: merged.get(k) for k in SYMBOL_LIMIT_FIELDS}, exchange_max_leverage)
        if errors:
            field, message = sorted(errors.items())[0]
            return f"{symbol}.{field}: {message}"
    return None


def validate_limits(values: dict[str, Any], *, exchange_max_leverage: int) -> dict[str, str]:
    """Every problem in a profile's values, keyed by field name; empty when valid.

    `values` holds field names (see LIMITS_BY_FIELD and the *_FIELDS tuples); a
    missing or None limit means "not set", which disables that limit.
    """
    errors, _ = _limit_errors(values, exchange_max_leverage)
    errors.update(_other_errors(values))
    symbol_limits = values.get("symbol_limits")
    if symbol_limits is not None:
        problem = _symbol_limits_error(symbol_limits, values, exchange_max_leverage)
        if problem:
            errors["symbol_limits"] = problem
    return errors
