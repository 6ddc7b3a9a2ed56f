"""The account risk score (0-100) and the desk-wide concentration. Plain Python, no Django.

The score is a weighted mean of six parts, each scaled to [0, 1] (docs/RISK_LOGIC.md, "Risk score"):

    margin_ratio   = clip(margin_ratio / 1)                     maint margin / margin balance, all pools
    liq_distance   = clip(1 - nearest liquidation distance / 0.30)   0 with no liquidation price
    leverage       = clip((gross notional / margin balance) / 20)    1 with gross > 0 and no balance
    concentration  = Herfindahl index of the exposure by symbol       (already in [0, 1])
    drawdown       = clip(drawdown from the day's peak equity / 0.20)
    anomalies      = clip(open anomaly load / 2)                      critical 1, warning 0.5 each

    score = 100 x sum(weight_i x part_i) / sum(weight_i), to 0.01

The weights are desk settings (``settings.RISK_SCORE_WEIGHTS``, read at the Django edge and passed
in); DEFAULT_WEIGHTS apply when none are given. A weight of 0 drops a part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ZERO, ONE, HUNDRED = Decimal(0), Decimal(1), Decimal(100)
CENT = Decimal("0.01")

PARTS = ("margin_ratio", "liq_distance", "leverage", "concentration", "drawdown", "anomalies")
DEFAULT_WEIGHTS: dict[str, Decimal] = {
    "margin_ratio": Decimal(30),
    "liq_distance": Decimal(20),
    "leverage": Decimal(15),
    "concentration": Decimal(10),
    "drawdown": Decimal(15),
    "anomalies": Decimal(10),
}
# What makes a part 1 (full risk): the scale of each figure.
LIQ_DISTANCE_SAFE = Decimal("0.30")
LEVERAGE_FULL = Decimal(20)
DRAWDOWN_FULL = Decimal("0.20")
ANOMALY_LOAD_FULL = Decimal(2)
ANOMALY_WEIGHT = {30: ONE, 20: Decimal("0.5")}  # alert level -> load


@dataclass(frozen=True)
class RiskScore:
    score: Decimal  # 0-100, to 0.01
    parts: dict[str, Decimal]  # each part in [0, 1], before weighting


def weights_error(weights: Any) -> str | None:
    """Why a weights mapping is refused (settings check), or None."""
    if not isinstance(weights, Mapping):
        return "must map a part to its weight"
    unknown = set(weights) - set(PARTS)
    if unknown:
        return f"unknown part {sorted(unknown)[0]!r} (known: {', '.join(PARTS)})"
    try:
        values = [Decimal(str(v)) for v in weights.values()]
    except Exception:
        return "weights must be numbers"
    if any(not v.is_finite() or v < 0 for v in values) or not sum(values, ZERO) > 0:
        return "weights must be non-negative and not all zero"
    return None


def _weights(weights: Mapping[str, Any] | None) -> dict[str, Decimal]:
    if not weights:
        return DEFAULT_WEIGHTS
    return {part: Decimal(str(weights.get(part, 0))) for part in PARTS}


def _clip(x: Decimal) -> Decimal:
    return ZERO if x < 0 else ONE if x > 1 else x


def anomaly_load(levels: Iterable[int]) -> Decimal:
    """Open anomaly alerts' levels (alerts.models.Level) -> the load the score reads."""
    return sum((ANOMALY_WEIGHT.get(int(level), ZERO) for level in levels), ZERO)


def risk_score(
    *,
    risk: Any,
    positions: Iterable[Any],
    day: Any = None,
    anomalies: Decimal = ZERO,
    weights: Mapping[str, Any] | None = None,
) -> RiskScore | None:
    """The score of one account from the book's AccountRisk and PositionRisk rows and the day's
    DayState (None: no drawdown yet). None when the book could not compute the account."""
    mb, gross = risk.margin_balance, risk.gross_exposure
    if not risk.complete or mb is None or gross is None or risk.margin_ratio is None:
        return None
    distances = [p.liquidation_distance for p in positions if p.liquidation_distance is not None]
    nearest = min(distances) if distances else None
    leverage = (gross / mb if mb > 0 else (LEVERAGE_FULL if gross > 0 else ZERO)) if gross else ZERO
    drawdown = ZERO
    if day is not None and day.peak_equity > 0:
        drawdown = max(ZERO, (day.peak_equity - mb) / day.peak_equity)
    parts = {
        "margin_ratio": _clip(risk.margin_ratio),
        "liq_distance": ZERO if nearest is None else _clip(ONE - nearest / LIQ_DISTANCE_SAFE),
        "leverage": _clip(leverage / LEVERAGE_FULL),
        "concentration": _clip(risk.herfindahl or ZERO) if gross > 0 else ZERO,
        "drawdown": _clip(drawdown / DRAWDOWN_FULL),
        "anomalies": _clip(Decimal(anomalies) / ANOMALY_LOAD_FULL),
    }
    w = _weights(weights)
    total = sum(w.values(), ZERO)
    score = HUNDRED * sum((w[k] * parts[k] for k in PARTS), ZERO) / total if total > 0 else ZERO
    return RiskScore(score.quantize(CENT), parts)


# --------------------------------------------------------------------------- desk concentration


@dataclass(frozen=True)
class DeskShare:
    symbol: str
    exposure: Decimal  # gross notional in the symbol over every account
    share: Decimal  # of the desk's gross notional
    accounts: int  # how many accounts hold it


def desk_concentration(exposures: Iterable[Mapping[str, Decimal]]) -> list[DeskShare]:
    """Each symbol's share of the desk's gross notional, largest first, from every account's
    ``AccountRisk.symbol_exposures`` (gross notional by symbol)."""
    by_symbol: dict[str, Decimal] = {}
    holders: dict[str, int] = {}
    for account in exposures:
        for symbol, value in account.items():
            if value:
                by_symbol[symbol] = by_symbol.get(symbol, ZERO) + abs(value)
                holders[symbol] = holders.get(symbol, 0) + 1
    total = sum(by_symbol.values(), ZERO)
    if total <= 0:
        return []
    rows = [DeskShare(s, v, v / total, holders[s]) for s, v in by_symbol.items()]
    rows.sort(key=lambda r: (-r.share, r.symbol))
    return rows
