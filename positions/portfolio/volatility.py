"""Log returns and EWMA volatility / correlation from aligned minute closes.

Estimator (RiskMetrics, zero mean): with returns r_1..r_N of one horizon, newest last,
weight w_i = 0.5 ** (age_i / h) where age is counted in horizons (0 for the newest) and
h = half_life_days × 1440 / horizon_minutes; cov_ab = Σ w_i r_ia r_ib / Σ w_i. The zero
mean is deliberate: at a 1-day horizon the mean is noise far below the volatility, and
estimating it costs more in error than it removes.

Returns are non-overlapping and anchored at the last row (as_of), so the newest return is
always the most recent full horizon: sampling from the oldest row instead would make the
estimate jump as the grid grows by one minute.

Symbols with shorter histories use the returns they have (pairs use the returns both have).
Because the pairs then do not share one sample, the correlation matrix is repaired to the
nearest positive semi-definite one (eigenvalues clipped at 0, unit diagonal restored) and
flagged ``"repaired"``, so a portfolio variance can never come out negative.

Bad input: fewer than ``min_returns`` returns for a symbol raises ``InsufficientHistory``
naming the symbols; a symbol whose returns are all zero has vol 0, correlations 0 with
everything else (1 with itself) and the flag ``"zero_volatility"`` (not an error: a stable
coin or a halted symbol is legitimate; a weighting that needs a positive vol raises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from positions.portfolio.errors import BadInput, InsufficientHistory
from positions.portfolio.history import MINUTE_MS, AlignedCloses

DAY_MINUTES = 1440
_VOL_FLOOR = 1e-12  # below this a volatility is zero (float noise of identical closes)


@dataclass(frozen=True)
class Returns:
    end_times_ms: np.ndarray  # int64[N], ascending
    symbols: tuple[str, ...]
    values: np.ndarray  # float[N, S], 0 where not valid
    valid: np.ndarray  # bool[N, S]
    horizon_minutes: int


@dataclass(frozen=True)
class EwmaEstimate:
    symbols: tuple[str, ...]
    horizon_minutes: int
    half_life_days: float
    vol: np.ndarray  # float[S], per horizon
    daily_vol: np.ndarray  # float[S], vol × sqrt(1440 / horizon)
    cov: np.ndarray  # float[S, S], per horizon (consistent with vol and corr)
    corr: np.ndarray  # float[S, S]
    n_returns: np.ndarray  # int[S]
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise BadInput(f"{symbol}: not in the volatility estimate", symbols=[symbol]) from None

    def daily_cov(self) -> np.ndarray:
        return self.cov * (DAY_MINUTES / self.horizon_minutes)

    def vol_decimal(self, symbol: str, *, daily: bool = True) -> Decimal:
        value = (self.daily_vol if daily else self.vol)[self.index(symbol)]
        return Decimal(format(float(value), ".12f"))

    def corr_decimal(self, a: str, b: str) -> Decimal:
        return Decimal(format(float(self.corr[self.index(a), self.index(b)]), ".12f"))


def _horizon_rows(aligned: AlignedCloses, horizon_minutes: int) -> int:
    if isinstance(horizon_minutes, bool) or not isinstance(horizon_minutes, int) or horizon_minutes <= 0:
        raise BadInput(f"horizon_minutes must be an int > 0, got {horizon_minutes!r}")
    rows, rest = divmod(horizon_minutes * MINUTE_MS, aligned.step_ms)
    if rest or rows == 0:
        raise BadInput(f"horizon {horizon_minutes} min is not a whole number of {aligned.step_ms} ms steps")
    return rows


def log_returns(aligned: AlignedCloses, *, horizon_minutes: int = DAY_MINUTES) -> Returns:
    """Non-overlapping log returns ln(P_e / P_{e−h}) for e = last, last − h, ...; newest last."""
    h = _horizon_rows(aligned, horizon_minutes)
    t = aligned.times_ms.size
    ends = np.arange(t - 1, h - 1, -h)[::-1]
    if ends.size == 0:
        empty = np.zeros((0, len(aligned.symbols)))
        return Returns(np.zeros(0, np.int64), aligned.symbols, empty, empty.astype(bool), horizon_minutes)
    starts = ends - h
    valid = starts[:, None] >= aligned.first[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.log(aligned.closes[ends] / aligned.closes[starts])
    values = np.where(valid, values, 0.0)
    return Returns(aligned.times_ms[ends], aligned.symbols, values, valid, horizon_minutes)


def _nearest_psd_corr(corr: np.ndarray) -> np.ndarray:
    eigval, eigvec = np.linalg.eigh(corr)
    fixed = (eigvec * np.maximum(eigval, 0.0)) @ eigvec.T
    d = np.sqrt(np.clip(np.diag(fixed), 1e-300, None))
    fixed = fixed / d[:, None] / d[None, :]
    np.fill_diagonal(fixed, 1.0)
    return np.clip(fixed, -1.0, 1.0)


def ewma(
    source: AlignedCloses | Returns,
    *,
    half_life_days: float = 10.0,
    horizon_minutes: int = DAY_MINUTES,
    min_returns: int = 20,
) -> EwmaEstimate:
    """EWMA volatilities and correlations; see the module doc for the estimator and the flags."""
    if isinstance(half_life_days, bool) or not isinstance(half_life_days, (int, float)):
        raise BadInput(f"half_life_days must be a number, got {half_life_days!r}")
    if not math.isfinite(half_life_days) or half_life_days <= 0:
        raise BadInput(f"half_life_days must be > 0, got {half_life_days!r}")
    if isinstance(min_returns, bool) or not isinstance(min_returns, int) or min_returns < 2:
        raise BadInput(f"min_returns must be an int >= 2, got {min_returns!r}")
    returns = source if isinstance(source, Returns) else log_returns(source, horizon_minutes=horizon_minutes)
    horizon = returns.horizon_minutes
    n, s = returns.values.shape
    counts = returns.valid.sum(axis=0)
    short = [sym for sym, c in zip(returns.symbols, counts, strict=True) if c < min_returns]
    if short:
        detail = ", ".join(
            f"{sym} ({int(c)})" for sym, c in zip(returns.symbols, counts, strict=True) if c < min_returns
        )
        raise InsufficientHistory(f"fewer than {min_returns} returns of {horizon} min for: {detail}", symbols=short)
    h = half_life_days * DAY_MINUTES / horizon
    age = np.arange(n - 1, -1, -1, dtype=float)
    w = 0.5 ** (age / h)
    valid = returns.valid.astype(float)
    r = returns.values
    num = (r * w[:, None]).T @ r
    den = (valid * w[:, None]).T @ valid
    pair_cov = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    var = np.clip(np.diag(pair_cov).copy(), 0.0, None)
    vol = np.sqrt(var)
    zero = vol < _VOL_FLOOR
    vol = np.where(zero, 0.0, vol)
    flags: dict[str, list[str]] = {}
    for i in np.flatnonzero(zero):
        flags.setdefault(returns.symbols[i], []).append("zero_volatility")
    safe = np.where(zero, 1.0, vol)
    corr = pair_cov / safe[:, None] / safe[None, :]
    corr[zero, :] = 0.0
    corr[:, zero] = 0.0
    np.fill_diagonal(corr, 1.0)
    corr = np.clip(corr, -1.0, 1.0)
    if (counts != n).any() and s > 1:
        repaired = _nearest_psd_corr(corr)
        if not np.allclose(repaired, corr, atol=1e-12):
            for i in range(s):
                flags.setdefault(returns.symbols[i], []).append("repaired")
        corr = repaired
        corr[zero, :] = 0.0
        corr[:, zero] = 0.0
        np.fill_diagonal(corr, 1.0)
    for i in np.flatnonzero(counts < n):
        flags.setdefault(returns.symbols[i], []).append("partial_history")
    cov = corr * vol[:, None] * vol[None, :]
    daily = vol * math.sqrt(DAY_MINUTES / horizon)
    return EwmaEstimate(
        symbols=returns.symbols,
        horizon_minutes=horizon,
        half_life_days=float(half_life_days),
        vol=vol,
        daily_vol=daily,
        cov=cov,
        corr=corr,
        n_returns=counts.astype(np.int64),
        flags={k: tuple(v) for k, v in flags.items()},
    )
