"""Desk-wide concentration (issue 17 item 5): one symbol's share of the gross notional of every
account, with its own desk-level limit (settings.DESK_CONCENTRATION_WARNING / _CRITICAL) and alert
(rule ``desk_concentration``, no account, subject = the symbol). The maths is rules.score.
desk_concentration (plain Python); this module reads the live account states and writes alerts.

A beat job (rules.tasks.desk_concentration_task) runs the check every DESK_CONCENTRATION_EVERY_S.
Accounts without live state (stream process down, not published) are left out and counted in the
alert's details, so a partial desk says so.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from accounts.models import ExchangeAccount
from marketdata import live
from rules.score import DeskShare, desk_concentration

RULE = "desk_concentration"
REASON = "DESK_CONCENTRATION_HIGH"
WARNING, CRITICAL = 20, 30


def desk_limits() -> tuple[Decimal | None, Decimal | None]:
    """(warning, critical) shares from the settings; None where unset."""

    def read(name: str) -> Decimal | None:
        value = getattr(settings, name, None)
        return None if value in (None, "") else Decimal(str(value))

    return read("DESK_CONCENTRATION_WARNING"), read("DESK_CONCENTRATION_CRITICAL")


def desk_exposures(account_ids: list[int] | None = None) -> tuple[list[dict[str, Decimal]], int]:
    """Every account's gross notional by symbol from its live state, and how many had none."""
    ids = account_ids if account_ids is not None else list(ExchangeAccount.objects.values_list("id", flat=True))
    keys = {live.ACCOUNT_KEY.format(id=i): i for i in ids}
    states = cache.get_many(list(keys))  # one round trip for the desk
    found, missing = [], 0
    for key in keys:
        figures = (states.get(key) or {}).get("figures") or {}
        raw = figures.get("symbol_exposures") if isinstance(figures, dict) else None
        if raw is None:
            missing += 1
            continue
        found.append({s: Decimal(str(v)) for s, v in raw.items() if v is not None})
    return found, missing


def level_of(share: Decimal, warning: Decimal | None, critical: Decimal | None) -> int:
    if critical is not None and share >= critical:
        return CRITICAL
    if warning is not None and share >= warning:
        return WARNING
    return 0


def desk_concentration_check(*, rows: list[DeskShare] | None = None, missing: int = 0) -> dict[str, int]:
    """Raise, move or clear the desk_concentration alert of each symbol. Returns {symbol: level}."""
    from alerts.models import Alert, AlertStatus
    from alerts.services import alert_clear, alert_raise

    if rows is None:
        exposures, missing = desk_exposures()
        rows = desk_concentration(exposures)
    warning, critical = desk_limits()
    levels: dict[str, int] = {}
    for row in rows:
        level = level_of(row.share, warning, critical)
        if not level:
            continue
        levels[row.symbol] = level
        limit = critical if level == CRITICAL else warning
        with transaction.atomic():
            alert_raise(
                account_id=None,
                rule=RULE,
                subject=row.symbol,
                level=level,
                reason_code=REASON,
                value=row.share.quantize(Decimal("0.000001")),
                limit=limit,
                mark_price=None,
                details={
                    "symbol": row.symbol,
                    "share": str(row.share),
                    "exposure": str(row.exposure),
                    "accounts": row.accounts,
                    "accounts_without_live_state": missing,
                    "warning": None if warning is None else str(warning),
                    "critical": None if critical is None else str(critical),
                },
                message=(
                    f"{row.symbol} is {row.share:.1%} of the desk's gross notional "
                    f"({row.exposure:.2f} over {row.accounts} accounts), limit {limit:.1%}."
                ),
            )
    open_subjects = Alert.objects.filter(
        account=None, rule=RULE, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
    ).values_list("subject", flat=True)
    shares = {r.symbol: r for r in rows}
    for subject in list(open_subjects):
        if subject not in levels:
            share = shares.get(subject)
            alert_clear(
                account_id=None,
                rule=RULE,
                subject=subject,
                details={"share": str(share.share) if share else "0"},
            )
    return levels
