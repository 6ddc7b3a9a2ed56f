"""What the overview shows of the risk logic: each account's risk score and Herfindahl index, and
the desk-wide concentration panel. Reads only; the maths is rules.score (docs/RISK_LOGIC.md).

The score here is the evaluator's formula on the overview's figures, with the same anomaly load
(rules.evaluator.anomaly_loads). One input differs in source: the drawdown's peak is the highest
margin balance of today's AccountSnapshots (the evaluator keeps the peak of every frame, so the
page's drawdown can read slightly lower).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db.models import Max

from rules import score
from rules.concentration import desk_limits, level_of
from rules.evaluator import anomaly_loads

SORTS = ("risk_score", "margin_ratio", "hhi", "name")
ZERO = Decimal(0)


@dataclass(frozen=True)
class AccountScore:
    account_id: int
    name: str
    score: Decimal | None
    parts: dict[str, Decimal]
    margin_ratio: Decimal | None
    hhi: Decimal | None
    level: int  # against the account's profile risk_score limits (0, 20, 30)
    hhi_level: int


def hhi_of(exposures: dict[str, Decimal]) -> Decimal | None:
    total = sum((abs(v) for v in exposures.values()), ZERO)
    if total <= 0:
        return None
    return sum(((abs(v) / total) ** 2 for v in exposures.values()), ZERO).quantize(Decimal("0.000001"))


def _peaks(account_ids: list[int]) -> dict[int, Decimal]:
    from positions.models import AccountSnapshot
    from positions.selectors import trading_day_start

    rows = (
        AccountSnapshot.objects.filter(account_id__in=account_ids, time__gte=trading_day_start())
        .values("account_id")
        .annotate(peak=Max("margin_balance"))
    )
    return {r["account_id"]: r["peak"] for r in rows if r["peak"] is not None}


def _bands(accounts: list[Any]) -> dict[int, tuple[Any, Any, Any, Any]]:
    from accounts.models import ExchangeAccount
    from rules.models import RiskProfile

    default = RiskProfile.objects.filter(is_default=True).first()
    out = {}
    for a in ExchangeAccount.objects.filter(pk__in=[x.id for x in accounts]).select_related("risk_profile"):
        p = a.risk_profile or default
        out[a.id] = (
            (p.risk_score_warning, p.risk_score_critical, p.max_hhi_warning, p.max_hhi_critical) if p else (None,) * 4
        )
    return out


def _level(value: Decimal | None, warning: Any, critical: Any) -> int:
    if value is None:
        return 0
    if critical is not None and value >= critical:
        return 30
    if warning is not None and value >= warning:
        return 20
    return 0


def account_scores(accounts: list[Any], *, sort: str = "risk_score", weights: Any = None) -> list[AccountScore]:
    """One row per overview account (positions.selectors.AccountView), sorted (worst first for the
    figures, A-Z for the name); accounts without a score sort last."""
    ids = [a.id for a in accounts]
    peaks, loads, bands = _peaks(ids), anomaly_loads(ids), _bands(accounts)
    out = []
    for a in accounts:
        hhi = hhi_of(a.symbol_exposures)
        figures = a.figures
        risk = SimpleNamespace(
            complete=not a.freshness.stale and figures.get("margin_balance") is not None,
            margin_balance=figures.get("margin_balance"),
            gross_exposure=figures.get("gross_exposure"),
            margin_ratio=figures.get("margin_ratio"),
            herfindahl=hhi,
        )
        peak = peaks.get(a.id)
        mb = figures.get("margin_balance")
        day = SimpleNamespace(peak_equity=max(peak, mb)) if peak is not None and mb is not None else None
        result = score.risk_score(
            risk=risk, positions=a.positions, day=day, anomalies=loads.get(a.id, ZERO), weights=weights
        )
        w, c, hw, hc = bands.get(a.id, (None,) * 4)
        value = result.score if result else None
        out.append(
            AccountScore(
                a.id,
                a.name,
                value,
                result.parts if result else {},
                figures.get("margin_ratio"),
                hhi,
                _level(value, w, c),
                _level(hhi, hw, hc),
            )
        )
    sort = sort if sort in SORTS else "risk_score"
    if sort == "name":
        return sorted(out, key=lambda r: r.name.lower())
    present = [r for r in out if getattr(r, _ATTR[sort]) is not None]
    absent = [r for r in out if getattr(r, _ATTR[sort]) is None]
    return sorted(present, key=lambda r: getattr(r, _ATTR[sort]), reverse=True) + absent


_ATTR = {"risk_score": "score", "margin_ratio": "margin_ratio", "hhi": "hhi"}


def desk_panel(accounts: list[Any]) -> dict[str, Any]:
    """Each symbol's share of the visible accounts' gross notional, with its desk-limit level."""
    warning, critical = desk_limits()
    rows = score.desk_concentration([a.symbol_exposures for a in accounts])
    return {
        "rows": [{"share": r, "level": level_of(r.share, warning, critical)} for r in rows[:10]],
        "warning": warning,
        "critical": critical,
    }
