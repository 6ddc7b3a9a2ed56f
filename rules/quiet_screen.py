"""A vectorised screen in front of the exact rule evaluation. Plain Python + NumPy, no Django.

`evaluate` (rules/levels.py) builds Decimal figures for every position of an account
(~1.2 ms an account: 237 ms a frame at 200 accounts, 2.2 s at 2,000). Nearly every account on
nearly every frame is nowhere near a limit, and for such an account `evaluate` returns no
change and leaves its latch as it was. The screen finds those accounts from the book's float
arrays in a few vectorised passes and skips them:

an account is *quiet* when it is complete (every mark, bracket table and wallet present), every
latch state is NORMAL with zero streaks, and every measure `evaluate` would take is inside its
warning and critical limits by a safety margin that is far wider than the float error between
the screen's arithmetic and the book's Decimal figures (the book computes in float64 too and
rounds to 8 decimals for money, 12 for ratios). So a value the exact path would put at or
beyond a limit can never pass as quiet: anything borderline, ill-conditioned (a ratio over a
near-zero balance) or not finite goes to the exact path. Fail closed.

Skipping a quiet account is exactly what `evaluate` would have done with it, with one
exception this module keeps: the day's peak equity moves (DayState.observe), from the very
Decimal the book would report. A latch seeded from open alerts, or one whose level waits for
its clearing dwell, is not all NORMAL, so its account is *hot* and always evaluated exactly
(`seed_latches` keeps ``hot`` in step when the evaluator seeds).
rules/tests/test_quiet_screen.py runs random desks through both ways and compares every Change
and every DayState.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from decimal import Decimal
from typing import Any

import numpy as np

from positions.book import AccountRisk, RiskBook
from positions.margin import RATIO_CAP
from rules import score
from rules.levels import LOWER_WORSE, NORMAL, RULES, Change, DayState, Latch, Limits, day_state_for, evaluate

REL = 1e-6  # relative margin to a limit; float64 error here is ~1e-15 relative
ABS = 1e-6  # absolute margin (the book rounds money to 1e-8 and ratios to 1e-12)
SCALE = 1e-9  # margin per unit of the account's magnitude, for sums that may cancel
_CAP = float(RATIO_CAP)

HIGH_ACCOUNT = (
    "utilization",
    "account_notional",
    "concentration",
    "risk_degree",
    "margin_ratio",
    "daily_loss",
    "drawdown",
    "hhi",
    "risk_score",
)
HIGH_POSITION = ("position_notional", "leverage", "margin_ratio")


def money(value: float) -> Decimal:
    """The book's float → Decimal for money (positions.book._money): tested equal to it."""
    return Decimal(format(value, ".8f"))


def latch_is_quiet(latch: Latch) -> bool:
    return all(s.level == NORMAL and not any(s.streaks.values()) for s in latch.states.values())


class Screen:
    """The quiet test for one set of profiles (make a new one when the profiles reload)."""

    def __init__(self, limits: Mapping[Any, Limits | None]) -> None:
        self.limits = limits
        self._bounds_for = -1
        self._caps_for = -1

    def quiet(
        self,
        arrays: dict,
        accounts: Iterable[int],
        days: Mapping[Any, DayState],
        anomalies: Mapping[Any, Decimal] | None = None,
    ) -> np.ndarray:
        """Book account indexes (``arrays["account_ids"]``) among ``accounts`` that are quiet.
        ``days`` must already have observed this frame's equity (see ``observe_days``)."""
        accounts = np.asarray(list(accounts), dtype=np.int64)
        if not len(accounts):
            return accounts
        self._ensure_bounds(arrays)
        n = len(arrays["account_ids"])
        ok = np.zeros(n, dtype=bool)
        ok[accounts] = True
        ok &= self._accounts_inside(arrays, days, accounts, n, anomalies or {})
        ok &= ~_per_account(arrays["acct"], ~self._positions_inside(arrays), n)
        ok &= ~_per_account(arrays["pool_acct"], ~self._pools_inside(arrays), n)
        return np.flatnonzero(ok)

    # ------------------------------------------------------------------ thresholds as arrays

    def _ensure_bounds(self, arrays: dict) -> None:
        ids = arrays["account_ids"]
        if self._bounds_for != len(ids):  # accounts are only ever appended to the book
            self._bounds_for = len(ids)
            rules = {*HIGH_ACCOUNT, *HIGH_POSITION, "position_notional", "equity_floor", "liq_distance"}
            self.bound = {rule: self._bound_array(ids, rule) for rule in rules}
            self.score_weights = self._score_weights(ids)
        if self._caps_for != len(arrays["pool_asset"]):  # pools too
            self._caps_for = len(arrays["pool_asset"])
            self.pool_cap = np.array(
                [
                    self._cap(ids[a], asset)
                    for a, asset in zip(arrays["pool_acct"].tolist(), arrays["pool_asset"], strict=True)
                ]
            )

    def _bound_array(self, ids: list, rule: str) -> np.ndarray:
        """Per account: the tighter of the two limits (inf / -inf: the rule is not set)."""
        lower = RULES[rule][0] in LOWER_WORSE
        out = []
        for account_id in ids:
            limits = self.limits.get(account_id) if account_id is not None else None
            t = limits.by_rule.get(rule) if limits is not None else None
            values = [float(v) for v in (t.warning, t.critical) if v is not None] if t is not None else []
            # Per-symbol overrides: the screen holds every position to the tightest of them (an
            # account with overrides may go to the exact path more often, never less).
            for found in limits.by_symbol.values() if limits is not None else ():
                s = found.get(rule)
                values += [float(v) for v in (s.warning, s.critical) if v is not None] if s is not None else []
            out.append(max(values, default=-np.inf) if lower else min(values, default=np.inf))
        return np.array(out, dtype=float)

    def _score_weights(self, ids: list) -> dict[str, np.ndarray]:
        """Per account, each part's weight over the sum of the weights (rules.score)."""
        out = {k: [] for k in score.PARTS}
        for account_id in ids:
            limits = self.limits.get(account_id) if account_id is not None else None
            weights = score._weights(limits.score_weights if limits is not None else None)
            total = float(sum(weights.values()))
            for k in score.PARTS:
                out[k].append(float(weights[k]) / total if total > 0 else 0.0)
        return {k: np.array(v, dtype=float) for k, v in out.items()}

    def _cap(self, account_id: Any, asset: str) -> float:
        limits = self.limits.get(account_id) if account_id is not None else None
        cap = limits.asset_caps.get(asset) if limits is not None else None
        return np.inf if cap is None else float(cap)

    # ------------------------------------------------------------------ the measures

    def _accounts_inside(
        self, a: dict, days: Mapping[Any, DayState], accounts: np.ndarray, n: int, anomalies: Mapping[Any, Decimal]
    ) -> np.ndarray:
        b = self.bound
        pa = a["pool_acct"]

        def per(values: np.ndarray) -> np.ndarray:
            return np.bincount(pa, weights=values, minlength=n)

        wallet, isow = per(a["pool_wallet"]), per(a["pool_isow"])
        mm, im, gross = per(a["pool_mm"]), per(a["pool_im"]), per(a["pool_gross"])
        abs_upnl = np.bincount(a["acct"], weights=np.abs(np.nan_to_num(a["upnl"])), minlength=n)
        scale = np.abs(wallet) + np.abs(isow) + abs_upnl + np.abs(gross)
        mb = a["margin_balance"]
        slack = ABS + SCALE * scale
        complete = np.isfinite(wallet) & np.isfinite(mb) & (per(a["pool_bad"]) == 0)
        complete &= ~_per_account(a["acct"], ~a["complete"], n)
        ok = complete & _above(mb, b["equity_floor"], slack)
        ok &= _below(gross, b["account_notional"], slack)
        well_posed = mb > 1e-6 * scale  # else a ratio over the margin balance is ill-conditioned
        for rule, num in (("utilization", im), ("risk_degree", mm)):
            active = np.isfinite(b[rule])
            ok &= ~active | (well_posed & _below(_capped(num, mb), b[rule], 0.0))
        ok &= _below(self._cross_margin_ratio(a, n), b["margin_ratio"], 0.0)
        ok &= self._concentration_inside(a, gross, n)
        ok &= self._score_inside(a, days, accounts, mb, mm, gross, n, anomalies)
        ok &= self._day_inside(a, days, accounts, mb, scale, n)
        return ok

    def _cross_margin_ratio(self, a: dict, n: int) -> np.ndarray:
        """max over the account's pools of XMM / (wallet + XUPNL); inf where ill-conditioned."""
        den = a["pool_wallet"] + a["pool_xupnl"]
        cross = ~a["iso"]
        abs_xupnl = np.bincount(a["pool"][cross], weights=np.abs(np.nan_to_num(a["upnl"][cross])), minlength=len(den))
        posed = den > 1e-6 * (np.abs(a["pool_wallet"]) + abs_xupnl) + ABS
        ratio = np.where(a["pool_xmm"] == 0, 0.0, np.where(posed, _capped(a["pool_xmm"], den), np.inf))
        ratio[~np.isfinite(ratio) & (a["pool_xmm"] != 0)] = np.inf  # NaN too: fail closed
        out = np.zeros(n)
        np.maximum.at(out, a["pool_acct"], ratio)
        return out

    def _concentration_inside(self, a: dict, gross: np.ndarray, n: int) -> np.ndarray:
        bound, hhi_bound = self.bound["concentration"], self.bound["hhi"]
        if not (np.isfinite(bound).any() or np.isfinite(hhi_bound).any()):
            return np.ones(n, dtype=bool)
        key = a["acct"] * a["n_symbols"] + a["sym"]
        keys, inverse = np.unique(key, return_inverse=True)
        exposure = np.bincount(inverse, weights=a["notional"], minlength=len(keys)).astype(float)  # int when empty
        # A position without a mark has no notional (NaN): its symbol's exposure is unknown, so
        # the account must not pass as quiet. +inf says so without a NaN reaching np.maximum
        # (which warned "invalid value encountered in maximum" on every start).
        exposure[np.isnan(exposure)] = np.inf
        largest = np.zeros(n)
        owner = keys // a["n_symbols"]
        np.maximum.at(largest, owner, exposure)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = largest / gross
            squares = np.bincount(owner, weights=exposure * exposure, minlength=n)
            hhi = squares / (gross * gross)
        # gross exactly 0 (no positions): the exact path takes no measurement; a tiny gross: fail closed
        inside = _below(share, bound, 0.0) & _below(hhi, hhi_bound, 0.0)
        return (gross == 0) | ((gross > 1e-6) & inside)

    def _score_inside(
        self,
        a: dict,
        days: Mapping[Any, DayState],
        accounts: np.ndarray,
        mb: np.ndarray,
        mm: np.ndarray,
        gross: np.ndarray,
        n: int,
        anomalies: Mapping[Any, Decimal],
    ) -> np.ndarray:
        """An upper bound of rules.score.risk_score, in floats: every part is pushed up by a margin
        far above the float error, and the score must stay below its limit by more than the
        rounding to 0.01 could add. ``anomalies``: each account's open anomaly load, as evaluate gets it."""
        bound = self.bound["risk_score"]
        if not np.isfinite(bound).any():
            return np.ones(n, dtype=bool)
        eps = 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            margin_ratio = _capped(mm, mb)
            leverage = np.where(gross == 0, 0.0, np.where(mb > 0, gross / mb, float(score.LEVERAGE_FULL)))
            key = a["acct"] * a["n_symbols"] + a["sym"]
            keys, inverse = np.unique(key, return_inverse=True)
            exposure = np.bincount(inverse, weights=a["notional"], minlength=len(keys)).astype(float)
            squares = np.bincount(keys // a["n_symbols"], weights=exposure * exposure, minlength=n)
            hhi = np.where(gross > 0, squares / (gross * gross), 0.0)
            mark, lp = a["mark"], a["lp"]
            distance = np.where(a["onfall"], mark - lp, lp - mark) / mark
        # As _positions_inside: no liquidation price, or none finite, is no measurement on the exact path.
        measured = a["lp_known"] & np.isfinite(distance)
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, a["acct"][measured], distance[measured])
        drawdown, load = np.zeros(n), np.zeros(n)
        ids = a["account_ids"]
        for acct in accounts.tolist():
            load[acct] = float(anomalies.get(ids[acct], 0))
            state = days.get(ids[acct])
            if state is not None and state.peak_equity > 0:
                peak = float(state.peak_equity)
                drawdown[acct] = max(0.0, (peak - mb[acct]) / peak)

        def part(x: np.ndarray) -> np.ndarray:
            return np.clip(np.nan_to_num(x + eps, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

        parts = {
            "margin_ratio": part(margin_ratio),
            "liq_distance": np.where(np.isposinf(nearest), 0.0, part(1.0 - nearest / float(score.LIQ_DISTANCE_SAFE))),
            "leverage": part(leverage / float(score.LEVERAGE_FULL)),
            "concentration": part(hhi),
            "drawdown": part(drawdown / float(score.DRAWDOWN_FULL)),
            "anomalies": part(load / float(score.ANOMALY_LOAD_FULL)),
        }
        weights = self.score_weights
        value = sum(weights[k] * v for k, v in parts.items()) * 100.0
        return ~np.isfinite(bound) | (value + 0.005 + 1e-4 < bound)

    def _day_inside(
        self, a: dict, days: Mapping[Any, DayState], accounts: np.ndarray, mb: np.ndarray, scale: np.ndarray, n: int
    ) -> np.ndarray:
        b = self.bound
        ok = np.ones(n, dtype=bool)
        if not (np.isfinite(b["daily_loss"]).any() or np.isfinite(b["drawdown"]).any()):
            return ok
        start, peak = np.full(n, np.nan), np.full(n, np.nan)
        ids = a["account_ids"]
        for acct in accounts.tolist():
            state = days.get(ids[acct])
            if state is not None:
                start[acct], peak[acct] = float(state.start_equity), float(state.peak_equity)
        has = np.isfinite(start)
        slack = ABS + SCALE * (scale + np.abs(np.nan_to_num(start)) + np.abs(np.nan_to_num(peak)))
        loss = np.maximum(0.0, start - mb)
        ok &= ~has | _below(loss, b["daily_loss"], slack)
        measured = has & (peak > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = np.maximum(0.0, (peak - mb) / peak)
        posed = peak > 1e-6 * scale
        ok &= ~measured | ~np.isfinite(b["drawdown"]) | (posed & _below(drawdown, b["drawdown"], slack / peak))
        return ok

    def _positions_inside(self, a: dict) -> np.ndarray:
        b, acct = self.bound, a["acct"]
        ok = _below(a["notional"], b["position_notional"][acct], 0.0)
        ok &= _below(a["lev"], b["leverage"][acct], 0.0)
        mark, lp = a["mark"], a["lp"]
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.where(a["onfall"], mark - lp, lp - mark) / mark
        # No liquidation price ("--"): the exact path takes no measurement either.
        no_measure = ~a["lp_known"] | ~np.isfinite(distance)
        ok &= no_measure | _above(distance, b["liq_distance"][acct], 0.0)
        ok &= ~a["iso"] | self._isolated_inside(a)
        return ok

    def _isolated_inside(self, a: dict) -> np.ndarray:
        bound = self.bound["margin_ratio"][a["acct"]]
        mm, balance = a["mm"], a["isow"] + a["upnl"]
        size = np.abs(a["isow"]) + np.abs(a["upnl"])
        posed = balance > 1e-6 * size + ABS
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = mm / balance
            # the exact path divides Decimals rounded to 1e-8: bound that rounding's effect
            err = (1e-8 + 1e-9 * np.abs(mm)) / balance + np.abs(ratio) * (1e-8 + 1e-9 * size) / balance
        return ~np.isfinite(bound) | (posed & _below(ratio, bound, err))

    def _pools_inside(self, a: dict) -> np.ndarray:
        """asset_cap: each pool's wallet balance (cross wallet + isolated wallets) under its cap."""
        return _below(a["pool_wallet"] + a["pool_isow"], self.pool_cap, 0.0)


def observe_days(
    *, arrays: dict, accounts: Iterable[int], days: MutableMapping[Any, DayState], day: str, complete: np.ndarray
) -> None:
    """Move each complete account's day state as the exact path would, from the Decimal the book
    reports (``money(margin_balance)``), converting only when the peak may move."""
    ids, mb = arrays["account_ids"], arrays["margin_balance"]
    for acct in accounts:
        if not complete[acct]:
            continue  # incomplete: the exact path passes None, which moves nothing
        state, equity = days.get(ids[acct]), float(mb[acct])
        if state is not None and state.day == day:
            peak = float(state.peak_equity)
            if equity < peak - (1e-6 + 1e-9 * abs(peak)):  # rounded to 8 decimals it stays below too
                continue
        day_state_for(days, ids[acct], day, money(equity))


def evaluate_accounts(
    *,
    book: RiskBook,
    account_ids: Iterable[Any],
    limits: Mapping[Any, Limits | None],
    latches: MutableMapping[Any, Latch],
    days: MutableMapping[Any, DayState],
    day: str,
    hot: set,
    screen: Screen | None,
    now_ms: int | None = None,
    settle: Mapping[Any, Iterable[str]] | None = None,
    count: bool = True,
    anomalies: Mapping[Any, Decimal] | None = None,
) -> Iterator[tuple[Any, list[Change], AccountRisk]]:
    """`evaluate` for every account with a profile, skipping the ones the screen finds quiet.
    Yields (account id, changes, the book's AccountRisk) for each account evaluated exactly, as
    soon as it is done, so the caller can hand its changes on before the pass ends. ``hot``
    holds the accounts whose latch is not all NORMAL with zero streaks (kept up to date here).
    ``now_ms``: the clearing dwell's clock; ``settle``: per account, the rules whose levels step
    down without the dwell; ``count``: False for the evaluator's re-visits on the clock (see
    levels.evaluate)."""
    wanted = [a for a in account_ids if limits.get(a) is not None]
    exact = wanted
    if screen is not None and wanted:
        arrays = book.screen_arrays()
        index = {account_id: i for i, account_id in enumerate(arrays["account_ids"]) if i}
        accts = [index[a] for a in wanted if a in index]
        complete = _complete_accounts(arrays)
        observe_days(arrays=arrays, accounts=accts, days=days, day=day, complete=complete)
        cold = [i for i in accts if arrays["account_ids"][i] not in hot]
        quiet = {arrays["account_ids"][i] for i in screen.quiet(arrays, cold, days, anomalies).tolist()}
        exact = [a for a in wanted if a not in quiet]
    for account_id in exact:
        risk = book.account(account_id)
        state = day_state_for(days, account_id, day, risk.margin_balance)
        latch = latches.setdefault(account_id, Latch())
        changes = evaluate(
            latch=latch,
            limits=limits[account_id],
            risk=risk,
            positions=book.positions(account_id),
            day=state,
            now_ms=now_ms,
            settle=settle.get(account_id, ()) if settle else (),
            count=count,
            anomalies=(anomalies or {}).get(account_id, Decimal(0)),
        )
        if latch_is_quiet(latch):
            hot.discard(account_id)
        else:
            hot.add(account_id)
        yield account_id, changes, risk


def seed_latches(
    *, latches: MutableMapping[Any, Latch], hot: set, levels: Mapping[Any, Mapping[tuple[str, str], int]]
) -> None:
    """Seed each account's latch from its open alerts' levels and mark it hot: a seeded latch is
    not quiet, and the screen must never skip it (its alert would neither clear nor refresh)."""
    for account_id, by_key in levels.items():
        latch = latches.setdefault(account_id, Latch())
        latch.seed(by_key)
        if not latch_is_quiet(latch):
            hot.add(account_id)


def _complete_accounts(a: dict) -> np.ndarray:
    """Book account indexes whose every mark, bracket table and wallet is present (a subset of
    AccountRisk.complete: a non-finite figure the book would still call complete stays out)."""
    n = len(a["account_ids"])
    ok = np.isfinite(a["margin_balance"])
    ok &= ~_per_account(a["acct"], ~a["complete"], n)
    ok &= ~_per_account(a["pool_acct"], ~np.isfinite(a["pool_wallet"]), n)
    return ok


def _per_account(owner: np.ndarray, flags: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner, weights=flags.astype(float), minlength=n) > 0


def _capped(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """rules' view of margin.capped_ratio: 0 for nothing at risk, the cap for no balance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(num / np.where(den > 0, den, 1.0), _CAP)
    return np.where(num == 0, 0.0, np.where(den <= 0, _CAP, ratio))


def _below(value: np.ndarray, bound: np.ndarray, slack: np.ndarray | float) -> np.ndarray:
    """value < bound by the margin; NaN is never inside. An unset limit (inf) is never measured."""
    with np.errstate(invalid="ignore"):
        return np.isposinf(bound) | (value < bound - (REL * np.abs(bound) + ABS + slack))


def _above(value: np.ndarray, bound: np.ndarray, slack: np.ndarray | float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isneginf(bound) | (value > bound + (REL * np.abs(bound) + ABS + slack))
