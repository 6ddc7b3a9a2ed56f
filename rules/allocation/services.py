"""Use cases of the risk model and the adviser, one keyword-only function each.

- risk_compute: the desk's inputs and bars as of a time -> the result (plain JSON: decimals as strings);
- risk_refresh: the beat job: compute now, cache the result, upsert the trading day's VaR rows
  (VarHistory: the desk and each account);
- risk_latest: the cached result, or computed (and cached) when there is none;
- allocation_suggest: the adviser's suggestion on a result (capital, per-symbol caps, leverage caps);
- allocation_apply: a risk manager writes one profile's suggestion into its limits through
  rules.services.profile_update, the admin's path, so history and the reason are recorded.
The maths is positions.portfolio, called through rules.allocation.engine."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import ExchangeAccount, User
from riskdesk.redis_clients import REDIS_DOWN
from rules import services as rule_services
from rules.allocation import engine, selectors
from rules.allocation.params import AdviserParams
from rules.models import RiskProfile, VarHistory

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
WARNING_SHARE = Decimal("0.8")  # an applied notional cap warns at 80 % of itself


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def risk_compute(
    *, inputs: list[selectors.AccountInputs], as_of: datetime, closes: dict | None = None
) -> dict[str, Any]:
    """VaR/ES (historical and parametric), contributions, correlations and the 2021-05-19 stress
    liquidations of `inputs` as of `as_of`. `closes` ({symbol: (open_ms list, closes)}) defaults to
    the stored 1-minute bars before as_of: nothing after as_of is read (no look-ahead)."""
    symbols = sorted({p.symbol for a in inputs for p in a.positions})
    if closes is None:
        closes = engine.closes_from_bars(symbols, as_of=as_of, days=settings.ALLOCATION_HISTORY_DAYS)
    return engine.compute(
        inputs=inputs,
        closes=closes,
        as_of_ms=_ms(as_of),
        history_days=settings.ALLOCATION_HISTORY_DAYS,
        min_history_days=settings.ALLOCATION_MIN_HISTORY_DAYS,
    )


def _trading_day(at: datetime) -> str:
    return at.astimezone(ZoneInfo(settings.TRADING_DAY_TZ)).date().isoformat()


PLACES = Decimal("1e-12")  # VarHistory's decimal places


def _amount(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(PLACES)


def _history_rows(result: dict[str, Any], *, computed_at: datetime) -> list[VarHistory]:
    """The trading day's rows: the desk's (its figures, or why there are none) and each account's."""
    day = date.fromisoformat(result["day"])
    as_of = datetime.fromisoformat(result["as_of"]) if result.get("as_of") else None

    def row(scope: str, account_id: int | None, figures: dict[str, Any], why: str) -> VarHistory:
        return VarHistory(
            day=day,
            scope=scope,
            account_id=account_id,
            as_of=as_of,
            var_historical=_amount(figures.get("var_historical")),
            es_historical=_amount(figures.get("es_historical")),
            var_parametric=_amount(figures.get("var_parametric")),
            equity=_amount(figures.get("equity")),
            not_available=(why or "")[:500],
            computed_at=computed_at,
        )

    rows = [row(VarHistory.DESK, None, result.get("desk") or {}, result.get("not_available") or "")]
    for a in result.get("accounts", []):
        why = a.get("not_available") or result.get("not_available") or ""
        rows.append(row(str(a["account_id"]), a["account_id"], a, why))
    return rows


def _upsert_history(rows: list[VarHistory]) -> None:
    """One statement per batch, idempotent: a second run the same day overwrites the day's rows
    (INSERT .. ON CONFLICT / ON DUPLICATE KEY UPDATE). MariaDB names no conflict target: the
    (day, scope) unique key is the table's only one besides the primary key."""
    target = ["day", "scope"] if connection.features.supports_update_conflicts_with_target else None
    VarHistory.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=target,
        update_fields=[
            "account",
            "as_of",
            "var_historical",
            "es_historical",
            "var_parametric",
            "equity",
            "not_available",
            "computed_at",
        ],
    )


def _adopt_cached_history() -> None:
    """Before the table existed the desk's points lived in the cache only: keep them (once, when the
    table has no desk row yet), so an upgrade does not lose "VaR over time"."""
    if VarHistory.objects.filter(scope=VarHistory.DESK).exists():
        return
    points = selectors.legacy_var_history()
    if not points:
        return
    now = timezone.now()
    known = set(ExchangeAccount.objects.values_list("id", flat=True))
    rows = []
    for p in points:
        try:
            accounts = [
                {"account_id": int(k), "var_historical": v}
                for k, v in (p.get("accounts") or {}).items()
                if int(k) in known
            ]
            point = {"day": p["day"], "as_of": p.get("as_of"), "desk": p, "accounts": accounts}
            rows += _history_rows(point, computed_at=now)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            log.warning("allocation: a cached VaR point could not be read, left out: %r", p)
    _upsert_history(rows)


def _cache_desk_history() -> None:
    with contextlib.suppress(*REDIS_DOWN):
        cache.set(selectors.HISTORY_KEY, selectors.var_history_rows(), timeout=None)


def _store(result: dict[str, Any]) -> None:
    """The latest result (cache), and today's VaR rows (database: the desk's and each account's; the
    day's last computation wins). The cached copy of the desk's series is dropped before the write
    and rebuilt from the rows once they are committed, so it never shows what the table does not."""
    try:
        cache.set(selectors.LATEST_KEY, result, timeout=None)
        cache.delete(selectors.HISTORY_KEY)
    except REDIS_DOWN:
        log.warning("allocation: cache down, the VaR result was computed but not cached (its history is kept)")
    try:
        with transaction.atomic():
            _adopt_cached_history()
            _upsert_history(_history_rows(result, computed_at=timezone.now()))
    except DatabaseError:
        # A deadlock with a concurrent refresh, say: the figures are still shown (cached above);
        # the day's rows are written by the next run (every ALLOCATION_REFRESH_EVERY_S).
        log.exception("allocation: the VaR history rows were not written")
        return
    transaction.on_commit(_cache_desk_history)


def risk_refresh(
    *, now: datetime | None = None, accounts: list[ExchangeAccount] | None = None, closes: dict | None = None
) -> dict[str, Any]:
    """The beat job: the desk's result as of now, cached, with today's VaR history point.
    `closes` replaces the stored bars (tests, the crash proof)."""
    now = now or timezone.now()
    result = risk_compute(inputs=selectors.desk_inputs(accounts=accounts), as_of=_history_end(now), closes=closes)
    result["day"] = _trading_day(now)
    result["computed_at"] = timezone.now().isoformat()
    _store(result)
    return result


def _history_end(now: datetime) -> datetime:
    """The end of the bar history the VaR reads: now, or ALLOCATION_HISTORY_END when set (the demo,
    whose simulator replays 2021 prices today, reads the bundled 2021 bars up to the crash's eve)."""
    fixed = settings.ALLOCATION_HISTORY_END
    return min(now, datetime.fromisoformat(fixed)) if fixed else now


def _too_old(result: dict[str, Any]) -> bool:
    try:
        computed = datetime.fromisoformat(result["computed_at"])
    except (KeyError, TypeError, ValueError):
        return True
    return (timezone.now() - computed).total_seconds() > settings.ALLOCATION_MAX_AGE_S


def risk_latest() -> dict[str, Any]:
    """The cached result; computed now when there is none (a new desk, a flushed cache), when it is
    older than ALLOCATION_MAX_AGE_S (the beat job is not running) or about other accounts than the
    desk's, so a page never shows an old desk."""
    result = selectors.latest_result()
    if result is None or _too_old(result) or not _same_desk(result):
        result = risk_refresh()
    return result


def _same_desk(result: dict[str, Any]) -> bool:
    """The cached result is about the accounts there are now (an account added, renamed or disabled
    since makes it about another desk: recompute rather than show it)."""
    now = set(ExchangeAccount.objects.filter(enabled=True).values_list("id", "name"))
    return now == {(a["account_id"], a["name"]) for a in result.get("accounts", [])}


# --------------------------------------------------------------------------- the adviser


def allocation_suggest(*, result: dict[str, Any], params: AdviserParams) -> dict[str, Any]:
    """Capital per account, per-symbol notional caps and leverage caps within the bracket tiers, for
    the desk in `result` under `params`'s budgets; each row with today's value and the reason."""
    return engine.suggest(result=result, params=params, profiles=_profiles_now(result), tr=gettext)


def _profiles_now(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The profile governing each account of `result` (its own, else the default) with the effective
    per-symbol notional and leverage limits now: the symbol's override, else the profile's own."""
    default = RiskProfile.objects.filter(is_default=True).first()
    wanted = {a["profile_id"] for a in result.get("accounts", []) if a.get("profile_id")}
    profiles = {p.id: p for p in RiskProfile.objects.filter(id__in=wanted).prefetch_related("symbol_limits")}
    out = {}
    for a in result.get("accounts", []):
        profile = profiles.get(a.get("profile_id")) or default
        if profile is None:
            continue
        overrides = profile.symbol_limit_values()
        symbols = {}
        for p in a.get("positions", []):
            own = overrides.get(p["symbol"], {})
            symbols[p["symbol"]] = {
                "notional": own.get("max_position_notional_critical", profile.max_position_notional_critical),
                "leverage": own.get("max_leverage_critical", profile.max_leverage_critical),
            }
        out[a["account_id"]] = {"id": profile.id, "name": profile.name, "symbols": symbols}
    return out


@dataclass(frozen=True)
class Applied:
    profile: RiskProfile
    reason: str
    symbols: int


def _symbol_limits(profile: RiskProfile, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The profile's per-symbol overrides with the suggested caps written over them (other fields kept).
    A notional cap warns at 80 % of itself; the leverage warning never sits above the new cap."""
    limits = {symbol: dict(values) for symbol, values in profile.symbol_limit_values().items()}
    base_leverage_warning = profile.max_leverage_warning
    for row in rows:
        symbol = row["symbol"]
        current = limits.setdefault(symbol, {})
        if row.get("notional_cap") is not None:
            cap = Decimal(row["notional_cap"]).quantize(CENT, ROUND_DOWN)
            current["max_position_notional_critical"] = cap
            current["max_position_notional_warning"] = (cap * WARNING_SHARE).quantize(CENT, ROUND_DOWN)
        if row.get("leverage_cap") is not None:
            cap = int(row["leverage_cap"])
            current["max_leverage_critical"] = cap
            warning = current.get("max_leverage_warning", base_leverage_warning)
            current["max_leverage_warning"] = cap if warning is None else min(int(warning), cap)
    return limits


def allocation_apply(*, profile: RiskProfile, params: AdviserParams, by: User, now: datetime | None = None) -> Applied:
    """Never automatic: a risk manager's POST. The suggestion is recomputed here from the latest
    result (the numbers a form posts are never trusted) and written through profile_update."""
    result = risk_latest()
    suggestion = allocation_suggest(result=result, params=params)
    if suggestion.get("not_available"):
        raise ValidationError(suggestion["not_available"])
    rows = [r for r in suggestion["limits"] if r["profile_id"] == profile.id and not r.get("not_available")]
    if not rows:
        raise ValidationError("the suggestion has no limits for this profile")
    day = _trading_day(datetime.fromisoformat(result["as_of"]) if result.get("as_of") else (now or timezone.now()))
    reason = f"allocation suggestion of {day}"
    rule_services.profile_update(
        profile=profile, values={rule_services.SYMBOL_LIMITS: _symbol_limits(profile, rows)}, by=by, reason=reason
    )
    return Applied(profile=profile, reason=reason, symbols=len({r["symbol"] for r in rows}))


def as_of_before(day: str, *, hours_before: int = 0) -> datetime:
    """Midnight UTC starting `day`, less some hours: "the evening before" for the crash proof."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start - timedelta(hours=hours_before)
