"""Abnormal-behaviour detectors: plain Python, in memory, per exchange event.

The stream process feeds every account event here (``AnomalyWatch``) and gets back ``Finding``s,
which the sink's event writer turns into alerts (``rules.anomaly_alerts``). Nothing here touches
the database or the cache: the levels come from the risk profiles and the baselines from
``rules.baselines``, both loaded off the event loop and swapped in whole.

Each detector is a limit pair in the risk profile (``rules.limits``, family "anomalies"):

==================  =====================================================  ======================
detector            observed value                                         compared with
==================  =====================================================  ======================
ORDER_BYPASSED_GATE orders seen on the exchange whose client id the gate    bypassed_orders
                    never approved, per account and trading day
ORDER_BURST         (orders, or cancels, in 10 s - median) / MAD           order_burst (k)
CANCEL_RATIO        cancels / fills over 5 min (from CANCEL_RATIO_MIN       cancel_ratio
                    cancels)
SIZE_OUTLIER        order notional / the account's 30-day p99 notional      size_outlier (k)
NEW_SYMBOL          symbols traded for the first time, per trading day      new_symbols
OFF_HOURS           orders in an hour of day holding < OFF_HOUR_SHARE of    off_hours_orders
                    the account's orders, per (day, hour)
LOSS_VELOCITY       margin balance lost in 1 min (money) and in 5 min       loss_per_minute,
                    (share of the 5-min high)                               loss_5m
LEVERAGE_JUMP       new leverage / old leverage; above the profile's        leverage_jump,
                    max_leverage levels it is at least that level           max_leverage
KEY_PERMISSIONS     withdrawals enabled + no IP restriction (0-2)           key_permissions
==================  =====================================================  ======================

Every finding carries the baseline and the observed value in ``details``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

WARNING, CRITICAL = 20, 30

BYPASSED = "ORDER_BYPASSED_GATE"
BURST = "ORDER_BURST"
CANCEL_RATIO = "CANCEL_RATIO"
SIZE_OUTLIER = "SIZE_OUTLIER"
NEW_SYMBOL = "NEW_SYMBOL"
OFF_HOURS = "OFF_HOURS"
LOSS_VELOCITY = "LOSS_VELOCITY"
LEVERAGE_JUMP = "LEVERAGE_JUMP"
KEY_PERMISSIONS = "KEY_PERMISSIONS"
DETECTORS = (
    BYPASSED,
    BURST,
    CANCEL_RATIO,
    SIZE_OUTLIER,
    NEW_SYMBOL,
    OFF_HOURS,
    LOSS_VELOCITY,
    LEVERAGE_JUMP,
    KEY_PERMISSIONS,
)
# detector -> the profile limits (rules.limits names) giving its levels
LIMIT_NAMES: dict[str, tuple[str, ...]] = {
    BYPASSED: ("bypassed_orders",),
    BURST: ("order_burst",),
    CANCEL_RATIO: ("cancel_ratio",),
    SIZE_OUTLIER: ("size_outlier",),
    NEW_SYMBOL: ("new_symbols",),
    OFF_HOURS: ("off_hours_orders",),
    LOSS_VELOCITY: ("loss_per_minute", "loss_5m"),
    LEVERAGE_JUMP: ("leverage_jump", "max_leverage"),
    KEY_PERMISSIONS: ("key_permissions",),
}
# The levels a profile starts with (RiskProfile's field defaults): (warning, critical), None = off.
DEFAULT_LEVELS: dict[str, tuple[float | None, float | None]] = {
    "bypassed_orders": (None, 1),
    "order_burst": (8, 16),
    "cancel_ratio": (20, 50),
    "size_outlier": (3, 10),
    "new_symbols": (1, None),
    "off_hours_orders": (3, None),
    "loss_per_minute": (None, None),
    "loss_5m": (0.05, 0.1),
    "leverage_jump": (2, 5),
    "max_leverage": (None, None),
    "key_permissions": (1, None),
}

BURST_WINDOW_S = 10.0
BURST_MIN_MAD = 1.0  # a quiet account's MAD of 0 would make its second order a burst
CANCEL_WINDOW_S = 300.0
CANCEL_RATIO_MIN = 20  # cancels in the window before the ratio means anything
OFF_HOUR_SHARE = 0.01  # an hour of day with less than 1 % of the account's orders is unusual
OFF_HOURS_MIN_ORDERS = 200  # orders behind the baseline before its hours say anything
BALANCE_SAMPLE_S = 5.0  # the sink samples each account's margin balance this often
LOSS_SAMPLES = 60  # 5 minutes of samples
MINUTE_SAMPLES = 12  # 1 minute of samples
# The windows in time: a sample belongs to one while younger than this (60 samples at 5 s are 0-295 s
# old). In time rather than in samples so that the windows can be seeded after a restart from the
# account snapshots (rules.baselines.balance_windows_load), which are not taken on the same beat.
LOSS_WINDOW_S = LOSS_SAMPLES * BALANCE_SAMPLE_S
MINUTE_WINDOW_S = MINUTE_SAMPLES * BALANCE_SAMPLE_S
REPEAT_AFTER_S = 60.0  # an unchanged level is reported again (refreshing its alert) at most this often
BYPASS_IDS_KEPT = 100_000  # client ids already checked (per process), oldest forgotten first
LIQUIDATION_PREFIXES = ("autoclose-", "adl_autoclose", "settlement_autoclose-")


@dataclass(frozen=True)
class Baseline:
    """An account's ordinary trading (rules.baselines), or the desk-wide defaults (``learned`` False)."""

    orders_10s_median: float = 1.0
    orders_10s_mad: float = 1.0
    cancels_10s_median: float = 1.0
    cancels_10s_mad: float = 1.0
    notional_p99: float | None = None
    symbols: frozenset[str] | None = None  # None: not known (a new account): NEW_SYMBOL stays quiet
    hour_shares: tuple[float, ...] = ()
    orders_seen: int = 0
    learned: bool = False

    def as_details(self) -> dict[str, Any]:
        return {
            "orders_10s_median": self.orders_10s_median,
            "orders_10s_mad": self.orders_10s_mad,
            "cancels_10s_median": self.cancels_10s_median,
            "cancels_10s_mad": self.cancels_10s_mad,
            "notional_p99": self.notional_p99,
            "orders_seen": self.orders_seen,
            "learned": self.learned,
        }


DESK_BASELINE = Baseline()


@dataclass(frozen=True)
class Levels:
    """One account's detector levels: limit name -> (warning, critical), from its risk profile."""

    by_limit: Mapping[str, tuple[float | None, float | None]] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    bypass_action: str = "none"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Levels:
        by_limit = {}
        for name in DEFAULT_LEVELS:
            by_limit[name] = (_float(values.get(f"{name}_warning")), _float(values.get(f"{name}_critical")))
        return cls(by_limit=by_limit, bypass_action=str(values.get("bypass_action") or "none"))

    def level(self, name: str, value: float | None) -> tuple[int | None, float | None]:
        """(level, the limit of that level) for ``value``: higher is worse; None when inside."""
        warning, critical = self.by_limit.get(name, (None, None))
        if value is None:
            return None, None
        if critical is not None and value >= critical:
            return CRITICAL, critical
        if warning is not None and value >= warning:
            return WARNING, warning
        return None, None


DEFAULT = Levels()


@dataclass(frozen=True)
class Finding:
    """A detector's verdict: an alert to raise on (account, rule, subject)."""

    account_id: int
    detector: str
    level: int
    subject: str
    value: float
    limit: float
    details: dict[str, Any]
    # ORDER_BYPASSED_GATE only: what the desk does by itself (Levels.bypass_action) and to which order
    action: str = "none"
    order: dict[str, Any] | None = None

    @property
    def rule(self) -> str:
        return self.detector.lower()


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mad(values: list[float], centre: float | None = None) -> float:
    """Median absolute deviation from the median."""
    if not values:
        return 0.0
    centre = median(values) if centre is None else centre
    return median([abs(v - centre) for v in values])


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 1]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


def is_liquidation(order: Mapping[str, Any]) -> bool:
    client_id = str(order.get("c") or "")
    return order.get("o") == "LIQUIDATION" or client_id.startswith(LIQUIDATION_PREFIXES)


def trading_day(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, tz=UTC).strftime("%Y-%m-%d")


def key_permission_finding(account_id: int, restrictions: Mapping[str, Any], levels: Levels) -> Finding | None:
    """KEY_PERMISSIONS from Binance's GET /sapi/v1/account/apiRestrictions answer."""
    problems = []
    if restrictions.get("enableWithdrawals"):
        problems.append("withdrawals_enabled")
    if not restrictions.get("ipRestrict"):
        problems.append("no_ip_restriction")
    level, limit = levels.level("key_permissions", float(len(problems)))
    if level is None:
        return None
    observed = {k: restrictions.get(k) for k in ("enableWithdrawals", "ipRestrict", "enableFutures", "enableReading")}
    return Finding(
        account_id,
        KEY_PERMISSIONS,
        level,
        "api_key",
        float(len(problems)),
        float(limit),
        {"observed": {**observed, "problems": problems}, "baseline": {"expected": "no withdrawals, IP-restricted"}},
    )


class _Account:
    """One account's running counts (the watch keeps one per account it has seen)."""

    __slots__ = (
        "orders",
        "cancels",
        "cancel_times",
        "fill_times",
        "symbols",
        "new_symbols",
        "off_hours",
        "bypassed",
        "balances",
        "balance_times",
    )

    def __init__(self) -> None:
        self.orders: deque[float] = deque()
        self.cancels: deque[float] = deque()
        self.cancel_times: deque[float] = deque()
        self.fill_times: deque[float] = deque()
        self.symbols: set[str] = set()  # traded in this process's life (on top of the baseline's)
        self.new_symbols: dict[str, set[str]] = {}  # day -> symbols new that day
        self.off_hours: dict[str, int] = {}  # "day hour" -> orders
        self.bypassed: dict[str, int] = {}  # day -> orders
        # margin balance samples and their times (clock seconds), the last LOSS_WINDOW_S of them
        self.balances: deque[float] = deque()
        self.balance_times: deque[float] = deque()


class AnomalyWatch:
    """The detectors' state for every account of one stream process. Call from one thread (the loop)."""

    def __init__(self, *, clock: Any = time.time) -> None:
        self.clock = clock
        self.levels: dict[int, Levels] = {}
        self.loaded = False  # until the first load, every account watches with the default levels
        self.baselines: dict[int, Baseline] = {}
        self.desk_baseline = DESK_BASELINE
        self.marks: dict[str, tuple[Any, int]] = {}
        self._accounts: dict[int, _Account] = {}
        self._reported: dict[tuple[int, str, str], tuple[int, float]] = {}
        self._checked: dict[tuple[int, str], None] = {}  # client ids handed to the bypass check
        # account -> [(time s, margin balance)] from before a restart, taken into the account's
        # loss windows by its next sample (on the loop: the loader runs in another thread)
        self._balance_seed: dict[int, list[tuple[float, float]]] = {}

    # --- what the loader swaps in --------------------------------------------------------

    def load(
        self,
        *,
        levels: dict[int, Levels],
        baselines: dict[int, Baseline],
        desk: Baseline | None = None,
        balances: dict[int, list[tuple[float, float]]] | None = None,
    ) -> None:
        """``balances``: margin balances seen before this process started, per account, oldest first
        (the first load: rules.baselines.watch_load reads them from the snapshots), so a fall that
        straddles a restart is measured over its whole window."""
        if balances is not None:
            self._balance_seed = balances
        self.levels, self.baselines = levels, baselines
        self.loaded = True
        if desk is not None:
            self.desk_baseline = desk

    def levels_of(self, account_id: int) -> Levels:
        return self.levels.get(account_id, DEFAULT)

    def baseline_of(self, account_id: int) -> Baseline:
        return self.baselines.get(account_id, self.desk_baseline)

    def _state(self, account_id: int) -> _Account:
        state = self._accounts.get(account_id)
        if state is None:
            state = self._accounts[account_id] = _Account()
        return state

    # --- events ----------------------------------------------------------------------------

    def needs_bypass_check(self, account_id: int, order: Mapping[str, Any]) -> bool:
        """True the first time an order's client id is seen (liquidations and ADL excepted)."""
        client_id = str(order.get("c") or "")
        if is_liquidation(order):
            return False
        key = (account_id, client_id or f"order:{order.get('i')}")
        if key in self._checked:
            return False
        self._checked[key] = None
        if len(self._checked) > BYPASS_IDS_KEPT:
            del self._checked[next(iter(self._checked))]
        return True

    def bypassed(self, account_id: int, order: Mapping[str, Any], *, at_s: float | None = None) -> Finding | None:
        """An order the gate never approved (the caller looked): counted per day, judged by the levels."""
        now = self.clock() if at_s is None else at_s
        levels = self.levels_of(account_id)
        state = self._state(account_id)
        day = trading_day(now)
        state.bypassed[day] = count = state.bypassed.get(day, 0) + 1
        for old in [d for d in state.bypassed if d != day]:
            del state.bypassed[old]
        level, limit = levels.level("bypassed_orders", float(count))
        if level is None:
            return None
        plain = {k: order.get(k) for k in ("s", "c", "i", "S", "o", "q", "p", "X", "x")}
        return Finding(
            account_id,
            BYPASSED,
            level,
            str(order.get("c") or order.get("i") or ""),
            float(count),
            float(limit),
            {
                "observed": {"order": plain, "bypassed_today": count},
                "baseline": {"approved_by_gate": False},
                "action": levels.bypass_action,
            },
            action=levels.bypass_action,
            order=plain,
        )

    def order_event(self, account_id: int, event: Mapping[str, Any]) -> list[Finding]:
        """ORDER_TRADE_UPDATE: bursts, cancel ratio, size, new symbols and hours. Liquidations are
        the exchange's own orders and are not the account's behaviour."""
        order = event.get("o") or {}
        if is_liquidation(order):
            return []
        now = self.clock()
        execution = order.get("x")
        state = self._state(account_id)
        levels, baseline = self.levels_of(account_id), self.baseline_of(account_id)
        found: list[Finding] = []
        if execution == "NEW":
            found += self._burst(account_id, state.orders, now, levels, baseline, "orders")
            found += self._size(account_id, order, levels, baseline)
            found += self._new_symbol(account_id, order, now, state, levels, baseline)
            found += self._off_hours(account_id, event, order, now, state, levels, baseline)
        elif execution in ("CANCELED", "EXPIRED"):
            found += self._burst(account_id, state.cancels, now, levels, baseline, "cancels")
            state.cancel_times.append(now)
            found += self._cancel_ratio(account_id, now, state, levels)
        elif execution == "TRADE":
            state.fill_times.append(now)
            _trim(state.fill_times, now - CANCEL_WINDOW_S)
        return self._news(found, now)

    def balance(self, account_id: int, margin_balance: Any) -> list[Finding]:
        """LOSS_VELOCITY, from the book's margin balance. The caller samples each account every
        BALANCE_SAMPLE_S (the sink, spread over the period by account id), so the last
        LOSS_SAMPLES values span 5 minutes and the last MINUTE_SAMPLES one minute."""
        value = _float(margin_balance)
        if value is None:
            return []
        now = self.clock()
        state = self._state(account_id)
        values, times = state.balances, state.balance_times
        if self._balance_seed:
            seed = self._balance_seed.pop(account_id, None)
            if seed:
                _seed_window(values, times, seed)
        values.append(value)
        times.append(now)
        cut = now - LOSS_WINDOW_S
        while times[0] <= cut:
            times.popleft()
            values.popleft()
        high_5m = max(values)
        if value >= high_5m:
            return []  # at the window's high: nothing lost (almost every sample)
        minute = now - MINUTE_WINDOW_S
        recent = 0
        for t in reversed(times):
            if t <= minute:
                break
            recent += 1
        high_1m = max(itertools.islice(values, len(values) - recent, None))
        levels = self.levels_of(account_id)
        lost_1m = high_1m - value
        share_5m = (high_5m - value) / high_5m if high_5m > 0 else 0.0
        found = []
        level_1m, limit_1m = levels.level("loss_per_minute", lost_1m)
        level_5m, limit_5m = levels.level("loss_5m", share_5m)
        if level_1m is not None or level_5m is not None:
            by_minute = (level_1m or 0) >= (level_5m or 0)
            found.append(
                Finding(
                    account_id,
                    LOSS_VELOCITY,
                    max(level_1m or 0, level_5m or 0),
                    "account",
                    lost_1m if by_minute else share_5m,
                    float(limit_1m if by_minute else limit_5m),
                    {
                        "measure": "loss_per_minute" if by_minute else "loss_5m",
                        "observed": {"margin_balance": value, "lost_1m": lost_1m, "lost_5m_share": share_5m},
                        "baseline": {"high_1m": high_1m, "high_5m": high_5m},
                    },
                )
            )
        return self._news(found, now)

    def leverage_changed(self, account_id: int, symbol: str, old: Any, new: Any) -> list[Finding]:
        """LEVERAGE_JUMP from ACCOUNT_CONFIG_UPDATE (the stream's config_changed)."""
        new_f, old_f = _float(new), _float(old)
        if new_f is None or (old_f is not None and new_f <= old_f):
            return []
        levels = self.levels_of(account_id)
        factor = new_f / old_f if old_f else None
        level_k, limit_k = levels.level("leverage_jump", factor)
        level_p, limit_p = levels.level("max_leverage", new_f)
        if level_k is None and level_p is None:
            return []
        by_profile = (level_p or 0) >= (level_k or 0)
        finding = Finding(
            account_id,
            LEVERAGE_JUMP,
            max(level_k or 0, level_p or 0),
            symbol,
            new_f if by_profile else factor,
            float(limit_p if by_profile else limit_k),
            {
                "measure": "profile" if by_profile else "factor",
                "observed": {"symbol": symbol, "old": old_f, "new": new_f, "factor": factor},
                "baseline": {"old_leverage": old_f, "profile_max_leverage": levels.by_limit.get("max_leverage")},
            },
        )
        return self._news([finding], self.clock())

    # --- the detectors -----------------------------------------------------------------

    def _burst(
        self, account_id: int, times: deque, now: float, levels: Levels, baseline: Baseline, what: str
    ) -> list[Finding]:
        times.append(now)
        _trim(times, now - BURST_WINDOW_S)
        count = len(times)
        centre = baseline.orders_10s_median if what == "orders" else baseline.cancels_10s_median
        spread = max(BURST_MIN_MAD, baseline.orders_10s_mad if what == "orders" else baseline.cancels_10s_mad)
        score = (count - centre) / spread
        level, limit = levels.level("order_burst", score)
        if level is None:
            return []
        return [
            Finding(
                account_id,
                BURST,
                level,
                what,
                score,
                float(limit),
                {
                    "measure": what,
                    "observed": {"count_10s": count, "mads_above_median": round(score, 2)},
                    "baseline": {"median": centre, "mad": spread, "learned": baseline.learned},
                },
            )
        ]

    def _cancel_ratio(self, account_id: int, now: float, state: _Account, levels: Levels) -> list[Finding]:
        _trim(state.cancel_times, now - CANCEL_WINDOW_S)
        _trim(state.fill_times, now - CANCEL_WINDOW_S)
        cancels, fills = len(state.cancel_times), len(state.fill_times)
        if cancels < CANCEL_RATIO_MIN:
            return []
        ratio = cancels / max(1, fills)
        level, limit = levels.level("cancel_ratio", ratio)
        if level is None:
            return []
        details = {
            "observed": {"cancels_5m": cancels, "fills_5m": fills, "ratio": round(ratio, 2)},
            "baseline": {"min_cancels": CANCEL_RATIO_MIN, "window_s": CANCEL_WINDOW_S},
        }
        return [Finding(account_id, CANCEL_RATIO, level, "account", ratio, float(limit), details)]

    def _size(self, account_id: int, order: Mapping[str, Any], levels: Levels, baseline: Baseline) -> list[Finding]:
        p99 = baseline.notional_p99
        if not p99:
            return []
        qty = _float(order.get("q")) or 0.0
        mark = self.marks.get(str(order.get("s")))  # (price, time ms), as the sink's marks_changed gives them
        price = _float(order.get("p")) or _float(order.get("ap")) or (_float(mark[0]) if mark else None)
        if not qty or not price:
            return []
        notional = qty * price
        multiple = notional / p99
        level, limit = levels.level("size_outlier", multiple)
        if level is None:
            return []
        details = {
            "observed": {"symbol": order.get("s"), "notional": notional, "multiple": round(multiple, 2)},
            "baseline": {"notional_p99": p99, "learned": baseline.learned},
        }
        return [Finding(account_id, SIZE_OUTLIER, level, str(order.get("s")), multiple, float(limit), details)]

    def _new_symbol(
        self, account_id: int, order: Mapping[str, Any], now: float, state: _Account, levels: Levels, baseline: Baseline
    ) -> list[Finding]:
        symbol = str(order.get("s") or "")
        if baseline.symbols is None or not symbol or symbol in state.symbols:
            state.symbols.add(symbol)
            return []
        state.symbols.add(symbol)
        if symbol in baseline.symbols:
            return []
        day = trading_day(now)
        new_today = state.new_symbols.setdefault(day, set())
        for old in [d for d in state.new_symbols if d != day]:
            del state.new_symbols[old]
        new_today.add(symbol)
        level, limit = levels.level("new_symbols", float(len(new_today)))
        if level is None:
            return []
        details = {
            "observed": {"symbol": symbol, "new_today": sorted(new_today)},
            "baseline": {"symbols": sorted(baseline.symbols)[:50], "symbols_known": len(baseline.symbols)},
        }
        return [Finding(account_id, NEW_SYMBOL, level, symbol, float(len(new_today)), float(limit), details)]

    def _off_hours(
        self,
        account_id: int,
        event: Mapping[str, Any],
        order: Mapping[str, Any],
        now: float,
        state: _Account,
        levels: Levels,
        baseline: Baseline,
    ) -> list[Finding]:
        if len(baseline.hour_shares) != 24 or baseline.orders_seen < OFF_HOURS_MIN_ORDERS:
            return []
        at_s = (_float(order.get("T")) or _float(event.get("E")) or now * 1000) / 1000
        moment = datetime.fromtimestamp(at_s, tz=UTC)
        share = baseline.hour_shares[moment.hour]
        if share >= OFF_HOUR_SHARE:
            return []
        key = f"{moment:%Y-%m-%d} {moment.hour:02d}"
        state.off_hours[key] = count = state.off_hours.get(key, 0) + 1
        for old in [k for k in state.off_hours if k != key]:
            del state.off_hours[old]
        level, limit = levels.level("off_hours_orders", float(count))
        if level is None:
            return []
        usual = [h for h, s in enumerate(baseline.hour_shares) if s >= OFF_HOUR_SHARE]
        details = {
            "observed": {"hour_utc": moment.hour, "orders_this_hour": count},
            "baseline": {"hour_share": share, "usual_hours_utc": usual, "orders_seen": baseline.orders_seen},
        }
        return [Finding(account_id, OFF_HOURS, level, f"{moment.hour:02d}h", float(count), float(limit), details)]

    def _news(self, found: Iterable[Finding], now: float) -> list[Finding]:
        """Findings worth an alert write: a new or higher level, or the same one REPEAT_AFTER_S later."""
        out = []
        for f in found:
            key = (f.account_id, f.detector, f.subject)
            last = self._reported.get(key)
            if last is not None and f.level <= last[0] and now - last[1] < REPEAT_AFTER_S:
                continue
            self._reported[key] = (f.level, now)
            out.append(f)
        return out


def _seed_window(values: deque, times: deque, seed: list[tuple[float, float]]) -> None:
    """Put samples from before the restart in front of the window (only those older than its
    oldest sample; the caller trims what is too old)."""
    first = times[0] if times else math.inf
    for t, value in reversed(seed):
        if t < first and math.isfinite(value):
            times.appendleft(t)
            values.appendleft(value)
            first = t


def _trim(times: deque, before: float) -> None:
    while times and times[0] < before:
        times.popleft()


def baseline_from_history(
    *,
    order_times: list[float],
    cancel_times: list[float],
    notionals: list[float],
    symbols: Iterable[str],
) -> dict[str, Any]:
    """An account's baseline from its history (epoch seconds, order notionals): the rules.baselines
    job stores what this returns. Bursts are counted in 10 s buckets of the hours the account was
    active in (zero-filled), so idle nights do not pull the median to 0."""
    active_hours = sorted({int(t // 3600) for t in order_times})

    def bucket_stats(times: list[float]) -> tuple[float, float]:
        if not active_hours:
            return 0.0, 0.0
        counts: dict[int, int] = {}
        for t in times:
            counts[int(t // BURST_WINDOW_S)] = counts.get(int(t // BURST_WINDOW_S), 0) + 1
        per_hour = int(3600 // BURST_WINDOW_S)
        values = [float(counts.get(hour * per_hour + i, 0)) for hour in active_hours for i in range(per_hour)]
        centre = median(values)
        return centre, mad(values, centre)

    orders_median, orders_mad = bucket_stats(order_times)
    cancels_median, cancels_mad = bucket_stats(cancel_times)
    hours = [0] * 24
    for t in order_times:
        hours[datetime.fromtimestamp(t, tz=UTC).hour] += 1
    total = len(order_times)
    p99 = percentile(notionals, 0.99)
    return {
        "orders_10s_median": orders_median,
        "orders_10s_mad": orders_mad,
        "cancels_10s_median": cancels_median,
        "cancels_10s_mad": cancels_mad,
        "notional_p99": None if p99 is None else Decimal(repr(p99)),
        "symbols": sorted(set(symbols)),
        "hour_shares": [round(h / total, 6) for h in hours] if total else [],
        "orders_seen": total,
    }


def baseline_of_row(row: Mapping[str, Any]) -> Baseline:
    """A stored AccountBaseline (as values()) in the detectors' form."""
    p99 = _float(row.get("notional_p99"))
    return Baseline(
        orders_10s_median=float(row.get("orders_10s_median") or 0.0),
        orders_10s_mad=float(row.get("orders_10s_mad") or 0.0),
        cancels_10s_median=float(row.get("cancels_10s_median") or 0.0),
        cancels_10s_mad=float(row.get("cancels_10s_mad") or 0.0),
        notional_p99=p99 or None,
        symbols=frozenset(row.get("symbols") or ()),
        hour_shares=tuple(float(s) for s in (row.get("hour_shares") or ())),
        orders_seen=int(row.get("orders_seen") or 0),
        learned=True,
    )


def desk_baseline(rows: list[Baseline]) -> Baseline:
    """The desk-wide defaults for an account without history: the median of the learned baselines'
    figures (with the floors of DESK_BASELINE); symbols and hours unknown."""
    if not rows:
        return DESK_BASELINE
    p99s = [b.notional_p99 for b in rows if b.notional_p99]
    return Baseline(
        orders_10s_median=max(DESK_BASELINE.orders_10s_median, median([b.orders_10s_median for b in rows])),
        orders_10s_mad=max(DESK_BASELINE.orders_10s_mad, median([b.orders_10s_mad for b in rows])),
        cancels_10s_median=max(DESK_BASELINE.cancels_10s_median, median([b.cancels_10s_median for b in rows])),
        cancels_10s_mad=max(DESK_BASELINE.cancels_10s_mad, median([b.cancels_10s_mad for b in rows])),
        notional_p99=median(p99s) if p99s else None,
    )


__all__ = [
    "DETECTORS",
    "AnomalyWatch",
    "Baseline",
    "Finding",
    "Levels",
    "baseline_from_history",
    "key_permission_finding",
    "percentile",
]
