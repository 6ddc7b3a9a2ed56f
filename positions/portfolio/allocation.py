"""The allocation adviser's maths: capital weights, per-symbol notional caps, leverage caps.

Public API
----------
``return_covariance(account_pnl, equity) -> np.ndarray``
    covariance [A, A] of scenario returns on equity (P&L [K, A] / equity [A]).
``risk_parity_weights(cov, *, labels, budgets=None) -> Weights``
    equal risk contribution (or contributions proportional to ``budgets``).
``inverse_volatility_weights(cov, *, labels) -> Weights``
    w ∝ 1 / σ: the simple option (ignores correlation).
``split_capital(weights, capital) -> dict[label, Decimal]``  capital per account, to the cent.
``unit_var_from_estimate(estimate, *, confidence=0.99)`` / ``unit_var_from_scenarios(scenarios, *, confidence=0.99)``
    one-day VaR per 1 USDT of notional per symbol (float), the input of ``notional_caps``.
``notional_caps(*, equity, budget_pct, unit_var, brackets, shares=None, survive_multiple=1.0) -> dict[str, Cap]``
``tier_max_leverage(notional, brackets) -> int``  max leverage of the tier containing the notional.

Weights (risk parity)
---------------------
For a covariance Σ of account returns, weights w (Σ w = 1, w > 0) have equal risk
contributions when w_i·(Σw)_i is the same for every i. Solved as the minimum of the convex
f(y) = ½·yᵀΣy − Σ b_i·ln y_i (its gradient vanishes exactly at y_i·(Σy)_i = b_i), by damped
Newton steps, then w = y / Σ y (Spinu 2013). Converges in ~10 steps for any PSD Σ with a
positive diagonal. An account with zero variance cannot take part (its weight would be
infinite): it gets weight 0 and the flag ``zero_volatility``; all zero raises ``ZeroVolatility``.
A singular covariance (fewer scenarios than accounts) may have no exact solution: the solve then
shrinks Σ towards its diagonal by the smallest δ of ``SHRINKAGE_STEPS`` that works (flag ``shrunk``,
``Weights.shrinkage``); the reported contributions and vols are then those of the shrunk Σ (the
matrix actually balanced).

Caps
----
budget = equity × budget_pct / 100 (daily VaR budget in USDT). Each symbol gets a share of it
(equal shares by default). cap_s = share_s × budget / unit_var_s, so the position's own one-day
VaR at the cap is exactly its share: with subadditive VaR (delta-normal is), the account's VaR at
all caps stays within the budget. The cap never exceeds the last bracket's notional cap (Binance
will not open more). Caps are rounded *down* to the cent.

Leverage: the largest integer L that (a) the bracket tier containing the cap notional allows
(its ``initialLeverage``; tiers lower the maximum as notional grows, so every smaller notional
allows at least as much) and (b) keeps an isolated position at the cap, margined at notional / L,
alive through ``survive_multiple`` × its one-day VaR move: 1/L − mmr >= multiple × unit_var
(ignoring cum, which only helps). Never below 1.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from statistics import NormalDist

import numpy as np

from positions.margin import Bracket, check_brackets
from positions.portfolio.errors import BadInput, ZeroVolatility
from positions.portfolio.scenarios import ScenarioSet
from positions.portfolio.var import tail_size
from positions.portfolio.volatility import EwmaEstimate

_VOL_FLOOR = 1e-12
# A covariance estimated from fewer scenarios than accounts is singular; when Newton cannot finish on
# it, the solve retries on (1 − δ)·Σ + δ·diag(Σ) (shrinkage towards the diagonal), flagged "shrunk".
SHRINKAGE_STEPS = (0.0, 1e-6, 1e-4, 1e-2, 1e-1)
_CENT = Decimal("0.01")
_W = Decimal("0.000000000001")  # weights and shares: 12 decimals


@dataclass(frozen=True)
class Weights:
    labels: tuple[Hashable, ...]
    weights: dict[Hashable, Decimal]  # sum to 1 exactly
    risk_contributions: dict[Hashable, Decimal]  # share of the portfolio variance, sum to 1
    vol: dict[Hashable, Decimal]  # per-label volatility (sqrt of the diagonal)
    method: str
    flags: dict[Hashable, tuple[str, ...]] = field(default_factory=dict)
    shrinkage: float = 0.0  # δ of (1 − δ)·Σ + δ·diag(Σ) the solve needed (0: none); labels flagged "shrunk"


def _check_cov(cov: object, labels: Sequence[Hashable]) -> np.ndarray:
    try:
        c = np.asarray(cov, dtype=float)
    except (TypeError, ValueError):
        raise BadInput("covariance must be a numeric [n, n] matrix") from None
    n = len(labels)
    if n == 0:
        raise BadInput("nothing to weight: no labels")
    if len(set(labels)) != n:
        raise BadInput("labels must be distinct")
    if c.shape != (n, n):
        raise BadInput(f"covariance must be [{n}, {n}], got {c.shape}")
    if not np.isfinite(c).all():
        raise BadInput("covariance must be finite")
    if not np.allclose(c, c.T, rtol=1e-9, atol=1e-15):
        raise BadInput("covariance must be symmetric")
    if (np.diag(c) < -1e-15).any():
        raise BadInput("covariance has a negative variance")
    return (c + c.T) / 2


def return_covariance(account_pnl: np.ndarray, equity: Sequence[Decimal] | np.ndarray) -> np.ndarray:
    """Sample covariance of P&L / equity over the scenarios (mean removed)."""
    pnl = np.asarray(account_pnl, dtype=float)
    eq = np.array([float(x) for x in equity])
    if pnl.ndim != 2 or pnl.shape[1] != eq.size:
        raise BadInput(f"account_pnl must be [K, {eq.size}], got {pnl.shape}")
    if pnl.shape[0] < 2:
        raise BadInput("need at least 2 scenarios for a covariance")
    if not (np.isfinite(pnl).all() and np.isfinite(eq).all()):
        raise BadInput("P&L and equity must be finite")
    if (eq <= 0).any():
        raise BadInput(f"equity must be > 0 for every account (bad: {np.flatnonzero(eq <= 0).tolist()})")
    r = pnl / eq
    r = r - r.mean(axis=0)
    return r.T @ r / (r.shape[0] - 1)


def _round_to_one(values: np.ndarray) -> list[Decimal]:
    """Decimals with 12 places that add up to exactly 1 (residual on the largest)."""
    out = [Decimal(format(float(v), ".12f")) for v in values]
    if out:
        out[int(np.argmax(values))] += Decimal(1) - sum(out, Decimal(0))
    return out


def _result(
    labels: Sequence[Hashable], w: np.ndarray, cov: np.ndarray, method: str, flags: dict, shrinkage: float = 0.0
) -> Weights:
    total_var = float(w @ cov @ w)
    rc = w * (cov @ w) / total_var if total_var > 0 else np.zeros_like(w)
    weights = _round_to_one(w)
    contributions = _round_to_one(rc) if total_var > 0 else [Decimal(0)] * len(w)
    vol = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return Weights(
        labels=tuple(labels),
        weights=dict(zip(labels, weights, strict=True)),
        risk_contributions=dict(zip(labels, contributions, strict=True)),
        vol={lb: Decimal(format(float(v), ".12f")) for lb, v in zip(labels, vol, strict=True)},
        method=method,
        flags={k: tuple(v) for k, v in flags.items()},
        shrinkage=shrinkage,
    )


def _active(cov: np.ndarray, labels: Sequence[Hashable]) -> tuple[np.ndarray, dict]:
    vol = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    active = vol > _VOL_FLOOR
    flags = {labels[i]: ["zero_volatility"] for i in np.flatnonzero(~active)}
    if not active.any():
        raise ZeroVolatility(
            "every candidate has zero volatility: no risk to balance", symbols=[str(x) for x in labels]
        )
    return active, flags


def risk_parity_weights(
    cov: object,
    *,
    labels: Sequence[Hashable],
    budgets: Sequence[float] | None = None,
    tol: float = 1e-9,
    max_iter: int = 50,
) -> Weights:
    """Equal risk contribution weights (contributions ∝ ``budgets`` if given); see the module doc."""
    labels = list(labels)
    c = _check_cov(cov, labels)
    active, flags = _active(c, labels)
    if budgets is None:
        b = np.ones(len(labels))
    else:
        b = np.array([float(x) for x in budgets])
        if b.shape != (len(labels),) or not np.isfinite(b).all() or (b <= 0).any():
            raise BadInput("budgets must be one positive number per label")
    idx = np.flatnonzero(active)
    sub = c[np.ix_(idx, idx)]
    bb = b[idx] / b[idx].sum()
    dd = np.sqrt(np.diag(sub))
    smallest = float(np.linalg.eigvalsh(sub / dd[:, None] / dd[None, :])[0])
    # A (near-)singular Σ, e.g. fewer scenarios than accounts, often has no exact solution (Newton then
    # crawls): one short try unshrunk (two perfectly correlated accounts do have one), then shrink.
    singular = smallest <= 1e-8
    steps = SHRINKAGE_STEPS if not singular else tuple(x for x in SHRINKAGE_STEPS if x == 0 or x >= 1e-4)
    shrinkage = 0.0
    for shrinkage in steps:
        target = sub if shrinkage == 0 else (1 - shrinkage) * sub + shrinkage * np.diag(np.diag(sub))
        x = _erc(target, bb, tol=tol, max_iter=20 if singular and shrinkage == 0 else max_iter)
        if x is not None:
            break
    else:
        raise BadInput("risk parity did not converge (is the covariance positive semi-definite?)")
    used = c.copy()
    if shrinkage:
        used[np.ix_(idx, idx)] = target
        for i in idx:
            flags.setdefault(labels[i], []).append("shrunk")
    w = np.zeros(len(labels))
    w[idx] = x
    return _result(labels, w, used, "risk_parity", flags, shrinkage)


def _erc(s: np.ndarray, bb: np.ndarray, *, tol: float, max_iter: int) -> np.ndarray | None:
    """Weights (sum 1) with risk contributions ∝ bb for the covariance s, or None if Newton fails."""
    # scale Σ to unit diagonal for conditioning; y is rescaled back (ERC is scale-equivariant)
    d = np.sqrt(np.diag(s))
    sn = s / d[:, None] / d[None, :]
    y = 1.0 / np.sqrt(np.full(bb.size, float(sn.sum()) / bb.size))
    y = y * np.sqrt(bb * bb.size)

    def f(v: np.ndarray) -> float:
        return 0.5 * float(v @ sn @ v) - float(bb @ np.log(v))

    for _ in range(max_iter):
        sy = sn @ y
        g = sy - bb / y
        error = float(np.max(np.abs(y * sy - bb) / bb))  # relative error of the risk budgets
        if error < tol:
            break
        h = sn + np.diag(bb / y**2)
        step = np.linalg.solve(h, -g)
        alpha = 1.0
        fy = f(y)
        slack = 1e-13 * max(abs(fy), 1.0)  # f's own rounding: near the optimum it cannot decrease any more
        while True:
            cand = y + alpha * step
            if (cand > 0).all() and f(cand) <= fy + 1e-4 * alpha * float(g @ step) + slack:
                break
            alpha /= 2
            if alpha < 1e-12:
                break
        if alpha < 1e-12:
            if error < 1e-6:  # at float resolution already: the budgets hold to 1e-6
                break
            return None
        y = cand
    else:
        return None
    return (y / d) / (y / d).sum()


def inverse_volatility_weights(cov: object, *, labels: Sequence[Hashable]) -> Weights:
    """w ∝ 1/σ_i (zero-volatility labels get 0, flagged)."""
    labels = list(labels)
    c = _check_cov(cov, labels)
    active, flags = _active(c, labels)
    vol = np.sqrt(np.clip(np.diag(c), 0.0, None))
    inv = np.where(active, 1.0 / np.where(active, vol, 1.0), 0.0)
    return _result(labels, inv / inv.sum(), c, "inverse_volatility", flags)


def split_capital(weights: Weights, capital: Decimal) -> dict[Hashable, Decimal]:
    """capital × weight per label, rounded down to the cent; the leftover cents go to the largest weight."""
    if not isinstance(capital, Decimal) or not capital.is_finite() or capital < 0:
        raise BadInput(f"capital must be a finite Decimal >= 0, got {capital!r}")
    out = {lb: (capital * w).quantize(_CENT, rounding=ROUND_DOWN) for lb, w in weights.weights.items()}
    if out:
        top = max(weights.weights, key=lambda lb: weights.weights[lb])
        out[top] += capital.quantize(_CENT, rounding=ROUND_DOWN) - sum(out.values(), Decimal(0))
    return out


# --------------------------------------------------------------------------- caps


def unit_var_from_estimate(estimate: EwmaEstimate, *, confidence: float = 0.99) -> dict[str, float]:
    """z × daily vol: the one-day delta-normal VaR of 1 USDT of notional, long or short."""
    tail_size(2, confidence)
    z = NormalDist().inv_cdf(float(confidence))
    return {s: float(z * v) for s, v in zip(estimate.symbols, estimate.daily_vol, strict=True)}


def unit_var_from_scenarios(scenarios: ScenarioSet, *, confidence: float = 0.99) -> dict[str, float]:
    """Historical one-day VaR of 1 USDT of notional: the worse of a long's and a short's m-th worst
    loss (m as in ``var.tail_size``), using the path extremes (what liquidation would see)."""
    k = len(scenarios)
    m = tail_size(k, confidence)
    long_loss = np.sort(-scenarios.low, axis=0)[::-1][m - 1]
    short_loss = np.sort(scenarios.high, axis=0)[::-1][m - 1]
    worst = np.maximum(np.maximum(long_loss, short_loss), 0.0)
    return {s: float(v) for s, v in zip(scenarios.symbols, worst, strict=True)}


def _tier_index(notional: Decimal, table: Sequence[Bracket]) -> int:
    """Same tier rule as positions.margin: [floor, cap), the last tier beyond its cap."""
    chosen = 0
    for i, b in enumerate(table):
        if b.floor > notional:
            break
        chosen = i
    return chosen


def tier_max_leverage(notional: Decimal, brackets: Sequence[Bracket]) -> int:
    """initialLeverage of the bracket tier containing ``notional`` (>= 0)."""
    if not isinstance(notional, Decimal) or not notional.is_finite() or notional < 0:
        raise BadInput(f"notional must be a finite Decimal >= 0, got {notional!r}")
    table = check_brackets(brackets)
    return table[_tier_index(notional, table)].max_leverage


@dataclass(frozen=True)
class Cap:
    symbol: str
    notional: Decimal | None  # suggested max position notional (USDT), rounded down; None: no suggestion
    leverage: int | None  # suggested max leverage at that notional
    tier: int | None  # 1-based bracket number containing the notional
    tier_max_leverage: int | None
    budget_share: Decimal  # share of the account's VaR budget given to this symbol
    unit_var: Decimal  # one-day VaR per 1 USDT of notional
    var_at_cap: Decimal | None  # notional × unit_var (<= share × budget)
    # what limits the notional: "risk_budget" | "exchange_max" (last bracket cap) | "zero_volatility" (None caps)
    binding: str
    leverage_binding: str  # what limits the leverage: "risk" | "tier" | "floor" (1x) | "zero_volatility"
    flags: tuple[str, ...] = ()


def _positive_decimal(name: str, value: object, *, allow_zero: bool = False) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise BadInput(f"{name} must be a finite Decimal {'>=' if allow_zero else '>'} 0, got {value!r}")
    return value


def notional_caps(
    *,
    equity: Decimal,
    budget_pct: Decimal,
    unit_var: Mapping[str, float],
    brackets: Mapping[str, Sequence[Bracket]],
    shares: Mapping[str, Decimal] | None = None,
    survive_multiple: float = 1.0,
) -> dict[str, Cap]:
    """Per-symbol notional and leverage caps for one account (or the desk); see the module doc.

    ``equity`` USDT (Decimal), ``budget_pct`` the daily VaR budget in percent of equity
    (Decimal("2") = 2 %), ``unit_var`` from ``unit_var_from_*`` for the symbols to cap,
    ``shares`` of the budget per symbol (Decimal, summing to <= 1; equal shares by default).
    A symbol with zero unit VaR gets no suggestion (notional/leverage None, binding
    ``zero_volatility``): no measured risk is no reason to allow the exchange's maximum."""
    _positive_decimal("equity", equity, allow_zero=True)
    _positive_decimal("budget_pct", budget_pct)
    if budget_pct > 100:
        raise BadInput(f"budget_pct is a percentage of equity (0 < x <= 100), got {budget_pct}")
    if not unit_var:
        raise BadInput("no symbols to cap")
    if (
        isinstance(survive_multiple, bool)
        or not isinstance(survive_multiple, (int, float))
        or not (math.isfinite(survive_multiple) and survive_multiple > 0)
    ):
        raise BadInput(f"survive_multiple must be a number > 0, got {survive_multiple!r}")
    symbols = list(unit_var)
    for s in symbols:
        v = unit_var[s]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise BadInput(f"{s}: unit VaR must be a finite number >= 0, got {v!r}", symbols=[s])
    missing = [s for s in symbols if s not in brackets]
    if missing:
        raise BadInput(f"no brackets for: {', '.join(sorted(missing))}", symbols=sorted(missing))
    if shares is None:
        each = (Decimal(1) / len(symbols)).quantize(_W, rounding=ROUND_DOWN)
        share = dict.fromkeys(symbols, each)
    else:
        share = {}
        for s in symbols:
            if s not in shares:
                raise BadInput(f"{s}: no budget share", symbols=[s])
            share[s] = _positive_decimal(f"{s} share", shares[s], allow_zero=True)
        if sum(share.values(), Decimal(0)) > 1:
            raise BadInput("budget shares add up to more than 1")
    budget = equity * budget_pct / 100
    out = {}
    for s in symbols:
        table = check_brackets(brackets[s])
        v = Decimal(format(float(unit_var[s]), ".12f"))
        exchange_max = table[-1].cap
        flags: list[str] = []
        if v <= 0:
            # No measured risk is no licence for the exchange maximum: no suggestion, said why.
            out[s] = Cap(
                symbol=s,
                notional=None,
                leverage=None,
                tier=None,
                tier_max_leverage=None,
                budget_share=share[s],
                unit_var=v,
                var_at_cap=None,
                binding="zero_volatility",
                leverage_binding="zero_volatility",
                flags=("zero_volatility",),
            )
            continue
        notional = share[s] * budget / v
        binding = "risk_budget"
        if notional >= exchange_max:
            # the cap itself is the first notional Binance refuses: stay one cent below it
            notional, binding = exchange_max - _CENT, "exchange_max"
        notional = notional.quantize(_CENT, rounding=ROUND_DOWN)
        k = _tier_index(notional, table)
        tier = table[k]
        # leverage L with 1/L >= multiple × v + mmr  →  L <= 1 / (multiple × v + mmr)
        need = float(v) * survive_multiple + float(tier.mmr)
        risk_lev = math.floor(1.0 / need + 1e-12) if need > 0 else tier.max_leverage
        if risk_lev < 1:
            leverage, lev_binding = 1, "floor"
            flags.append("leverage_floor")
        elif risk_lev < tier.max_leverage:
            leverage, lev_binding = risk_lev, "risk"
        else:
            leverage, lev_binding = tier.max_leverage, "tier"
        out[s] = Cap(
            symbol=s,
            notional=notional,
            leverage=leverage,
            tier=k + 1,
            tier_max_leverage=tier.max_leverage,
            budget_share=share[s],
            unit_var=v,
            var_at_cap=(notional * v).quantize(Decimal("0.00000001")),
            binding=binding,
            leverage_binding=lev_binding,
            flags=tuple(flags),
        )
    return out
