"""Scenario sets: historical 1-day windows from minute closes, and named stress scenarios.

A scenario is a relative move of every symbol's mark over one window, ``P_end / P_start − 1``,
plus the path's extremes ``low``/``high`` (worst and best close inside the window relative to
the start, so low <= min(0, move) and high >= max(0, move)). Isolated positions are
checked for liquidation against the extreme (a long that dips through its liquidation
price at noon is gone even if the close recovers); see ``positions.portfolio.var``.

Historical windows (``historical_scenarios``)
---------------------------------------------
Windows of ``window_minutes`` (1 day) end at the last minute <= as_of and then every
``stride`` minutes back; they overlap. Why overlapping: 90 days hold only 89 disjoint days,
far too few for a 99 % tail (the 1 % tail would be one scenario); windows starting at every
``stride`` minutes use every intraday path and give ~1,000 scenarios, the usual choice for
historical simulation. The price is autocorrelation: neighbouring windows share most of their
minutes, so the tail is less informative than 1,000 independent days (the effective sample is
still ~the number of days); the figure is a desk estimate, not a statistical test. The default
stride spreads ``target`` windows evenly over the history: stride = max(1, (T − 1 − w) // (target − 1)).
All symbols share the same windows (one row = one moment for the whole desk), so
correlations are kept exactly as they happened.

A symbol whose history does not reach back far enough shortens every window set; by default
that raises ``InsufficientHistory`` naming it. ``short_history="drop"`` drops such symbols
(listed in ``.dropped``); give them a proxy with ``with_proxies`` (beta to BTC).

Stress scenarios
----------------
``crash_2021_05_19``: the bundled Binance 1-minute bars of 2021-05-19 (marketdata/data). The
move is from the day's first open (00:00 UTC) to the close of the minute at which BTCUSDT's
close was lowest (13:09), the same minute for every symbol (a joint move, as it happened); low/high
are the bars' lows/highs from 00:00 through the bar holding BTC's lowest low (the 30,000 print of
13:10, one minute after the lowest close), so isolated liquidations see the real bottom.
Symbols other than BTCUSDT and ETHUSDT have no data there: each gets beta × BTC's move (beta
from ``betas_to`` on the desk's own history; 1 when unknown), flagged ``proxy_beta`` /
``proxy_beta_default``. Moves are clipped at −99 % (a price cannot reach 0), flagged ``clipped``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from positions.portfolio.errors import BadInput, InsufficientHistory, NoBars, ZeroVolatility
from positions.portfolio.history import MINUTE_MS, AlignedCloses
from positions.portfolio.volatility import DAY_MINUTES, ewma, log_returns

DATA_DIR = Path(__file__).resolve().parents[2] / "marketdata" / "data"
CRASH_NAME = "crash 2021-05-19"
CRASH_FILES = {
    "BTCUSDT": "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv",
    "ETHUSDT": "binance_spot_ETHUSDT_1m_2021-05-19_crashday.csv",
}
MIN_MOVE = -0.99


@dataclass(frozen=True)
class ScenarioSet:
    names: tuple[str, ...]
    symbols: tuple[str, ...]
    moves: np.ndarray  # float[K, S]
    low: np.ndarray  # float[K, S], <= min(0, moves)
    high: np.ndarray  # float[K, S], >= max(0, moves)
    start_ms: np.ndarray | None = None  # int64[K] for historical windows
    end_ms: np.ndarray | None = None
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k, s = len(self.names), len(self.symbols)
        for name in ("moves", "low", "high"):
            arr = getattr(self, name)
            if arr.shape != (k, s):
                raise BadInput(f"scenario {name} must be [{k}, {s}], got {arr.shape}")
            if not np.isfinite(arr).all():
                raise BadInput(f"scenario {name} must be finite")
        if (self.moves <= -1).any():
            raise BadInput("a scenario move of -100 % or worse is not a price")
        if len(set(self.symbols)) != s:
            raise BadInput("duplicate symbols in a scenario set")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise NoBars(f"{symbol}: not in the scenario set (no bars)", symbols=[symbol]) from None

    def for_symbols(self, symbols: Sequence[str]) -> ScenarioSet:
        """The same scenarios with columns in ``symbols`` order; a symbol not covered raises ``NoBars``."""
        missing = [s for s in symbols if s not in self.symbols]
        if missing:
            raise NoBars(f"no scenario data for: {', '.join(sorted(missing))}", symbols=sorted(missing))
        cols = [self.symbols.index(s) for s in symbols]
        return replace(
            self,
            symbols=tuple(symbols),
            moves=self.moves[:, cols],
            low=self.low[:, cols],
            high=self.high[:, cols],
            flags={s: f for s, f in self.flags.items() if s in symbols},
        )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _sliding_extremes(col: np.ndarray, width: int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min and max of col[i : i + width] for each i in starts (van Herk / Gil-Werman, O(T))."""
    t = col.size
    pad = (-t) % width
    lo = np.concatenate([np.where(np.isfinite(col), col, np.inf), np.full(pad, np.inf)]).reshape(-1, width)
    hi = np.concatenate([np.where(np.isfinite(col), col, -np.inf), np.full(pad, -np.inf)]).reshape(-1, width)
    pre_lo = np.minimum.accumulate(lo, axis=1).ravel()
    suf_lo = np.minimum.accumulate(lo[:, ::-1], axis=1)[:, ::-1].ravel()
    pre_hi = np.maximum.accumulate(hi, axis=1).ravel()
    suf_hi = np.maximum.accumulate(hi[:, ::-1], axis=1)[:, ::-1].ravel()
    last = starts + width - 1
    return np.minimum(suf_lo[starts], pre_lo[last]), np.maximum(suf_hi[starts], pre_hi[last])


def historical_scenarios(
    aligned: AlignedCloses,
    *,
    window_minutes: int = DAY_MINUTES,
    target: int = 1000,
    stride_minutes: int | None = None,
    min_scenarios: int = 100,
    short_history: str = "raise",
) -> ScenarioSet:
    """Overlapping windows ending at as_of (the aligned grid's last row); see the module doc."""
    for name, value in (("window_minutes", window_minutes), ("target", target), ("min_scenarios", min_scenarios)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInput(f"{name} must be an int >= 1, got {value!r}")
    if short_history not in ("raise", "drop"):
        raise BadInput(f"short_history must be 'raise' or 'drop', got {short_history!r}")
    w, rest = divmod(window_minutes * MINUTE_MS, aligned.step_ms)
    if rest or w == 0:
        raise BadInput(f"window {window_minutes} min is not a whole number of grid steps")
    t = aligned.times_ms.size
    if stride_minutes is None:
        stride = max(1, (t - 1 - w) // max(target - 1, 1))
    else:
        if isinstance(stride_minutes, bool) or not isinstance(stride_minutes, int) or stride_minutes < 1:
            raise BadInput(f"stride_minutes must be an int >= 1, got {stride_minutes!r}")
        stride, rest = divmod(stride_minutes * MINUTE_MS, aligned.step_ms)
        if rest or stride == 0:
            raise BadInput(f"stride {stride_minutes} min is not a whole number of grid steps")
    ends = np.arange(t - 1, w - 1, -stride)[:target][::-1]
    starts = ends - w
    per_symbol = (starts[None, :] >= aligned.first[:, None]).sum(axis=1)  # windows each symbol covers
    short = [s for s, n in zip(aligned.symbols, per_symbol, strict=True) if n < min_scenarios]
    keep = list(range(len(aligned.symbols)))
    if short:
        if short_history == "raise" or len(short) == len(aligned.symbols):
            have = ", ".join(f"{s} ({int(n)})" for s, n in zip(aligned.symbols, per_symbol, strict=True) if s in short)
            raise InsufficientHistory(f"fewer than {min_scenarios} one-day windows for: {have}", symbols=short)
        keep = [i for i, s in enumerate(aligned.symbols) if s not in short]
    first = int(aligned.first[keep].max())
    ok = starts >= first
    ends, starts = ends[ok], starts[ok]
    if ends.size < min_scenarios:
        raise InsufficientHistory(
            f"only {ends.size} one-day windows in the history, {min_scenarios} needed", symbols=aligned.symbols
        )
    closes = aligned.closes[:, keep]
    p0 = closes[starts]
    moves = closes[ends] / p0 - 1.0
    low = np.empty_like(moves)
    high = np.empty_like(moves)
    for j in range(closes.shape[1]):  # one column at a time: memory stays O(T)
        mn, mx = _sliding_extremes(closes[:, j], w + 1, starts)
        low[:, j] = mn / p0[:, j] - 1.0
        high[:, j] = mx / p0[:, j] - 1.0
    times = aligned.times_ms
    symbols = tuple(aligned.symbols[i] for i in keep)
    return ScenarioSet(
        names=tuple(f"{_iso(int(times[a]))} .. {_iso(int(times[b]))}" for a, b in zip(starts, ends, strict=True)),
        symbols=symbols,
        moves=moves,
        low=np.minimum(low, 0.0),
        high=np.maximum(high, 0.0),
        start_ms=times[starts].copy(),
        end_ms=times[ends].copy(),
        dropped=tuple(short),
    )


def betas_to(
    aligned: AlignedCloses,
    proxy: str = "BTCUSDT",
    *,
    half_life_days: float = 30.0,
    min_returns: int = 20,
) -> dict[str, float]:
    """EWMA beta of each symbol's daily log return to ``proxy``'s: cov(s, proxy) / var(proxy).

    Uses the aligned closes as given (already cut at as_of). Symbols with fewer than
    ``min_returns`` daily returns are left out (the caller then uses beta 1, flagged)."""
    returns = log_returns(aligned, horizon_minutes=DAY_MINUTES)
    p = aligned.index(proxy)
    counts = returns.valid.sum(axis=0)
    if counts[p] < min_returns:
        raise InsufficientHistory(f"{proxy}: fewer than {min_returns} daily returns for betas", symbols=[proxy])
    cols = [i for i in range(len(aligned.symbols)) if counts[i] >= min_returns]
    sub = replace(
        returns,
        symbols=tuple(returns.symbols[i] for i in cols),
        values=returns.values[:, cols],
        valid=returns.valid[:, cols],
    )
    est = ewma(sub, half_life_days=half_life_days, min_returns=min_returns)
    pi = est.index(proxy)
    var_p = est.cov[pi, pi]
    if var_p <= 0:
        raise ZeroVolatility(f"{proxy} has zero volatility: no beta to it", symbols=[proxy])
    return {s: float(est.cov[i, pi] / var_p) for i, s in enumerate(est.symbols)}


def _scaled(beta: float, move: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, ...]:
    m, lo, hi = beta * move, beta * low, beta * high
    if beta < 0:
        lo, hi = hi, lo
    return m, lo, hi


def with_proxies(
    scenarios: ScenarioSet,
    symbols: Sequence[str],
    *,
    betas: Mapping[str, float] | None = None,
    proxy: str = "BTCUSDT",
) -> ScenarioSet:
    """Add every symbol of ``symbols`` the set lacks as beta × the proxy's column (flagged).

    beta from ``betas`` (flag ``proxy_beta``) or 1 (flag ``proxy_beta_default``); moves below
    −99 % are clipped (flag ``clipped``)."""
    missing = [s for s in symbols if s not in scenarios.symbols]
    if not missing:
        return scenarios
    p = scenarios.index(proxy)
    betas = dict(betas or {})
    moves, lows, highs = [scenarios.moves], [scenarios.low], [scenarios.high]
    flags = dict(scenarios.flags)
    for s in missing:
        beta = betas.get(s)
        flag = ["proxy_beta" if beta is not None else "proxy_beta_default"]
        beta = 1.0 if beta is None else float(beta)
        if not math.isfinite(beta):
            raise BadInput(f"{s}: beta must be finite", symbols=[s])
        m, lo, hi = _scaled(beta, scenarios.moves[:, p], scenarios.low[:, p], scenarios.high[:, p])
        if (m < MIN_MOVE).any() or (lo < MIN_MOVE).any():
            flag.append("clipped")
        moves.append(np.maximum(m, MIN_MOVE)[:, None])
        lows.append(np.maximum(lo, MIN_MOVE)[:, None])
        highs.append(hi[:, None])
        flags[s] = tuple(flag)
    return replace(
        scenarios,
        symbols=scenarios.symbols + tuple(missing),
        moves=np.hstack(moves),
        low=np.hstack(lows),
        high=np.hstack(highs),
        flags=flags,
    )


def _read_crash(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise NoBars(f"{path.name}: empty")
    return {k: np.array([float(Decimal(r[k])) for r in rows]) for k in ("open", "high", "low", "close")} | {
        "open_time": np.array([int(r["open_time"]) for r in rows], dtype=np.int64)
    }


def crash_2021_05_19(
    symbols: Sequence[str],
    *,
    betas: Mapping[str, float] | None = None,
    proxy: str = "BTCUSDT",
    data_dir: Path | None = None,
) -> ScenarioSet:
    """The named stress scenario; see the module doc. ``symbols``: the desk's symbols."""
    folder = DATA_DIR if data_dir is None else Path(data_dir)
    bars = {s: _read_crash(folder / name) for s, name in CRASH_FILES.items()}
    btc = bars["BTCUSDT"]
    trough = int(np.argmin(btc["close"]))
    # The day's lowest print (30,000 at 13:10) sits in the bar after the lowest close (13:09); the path
    # extremes run through it so isolated liquidations see the real bottom.
    path_end = max(trough, int(np.argmin(btc["low"])))
    names, moves, lows, highs = [], [], [], []
    for s, b in bars.items():
        if (b["open_time"] != btc["open_time"]).any():
            raise BadInput(f"{s}: crash-day bars do not line up with BTCUSDT's")
        start = b["open"][0]
        names.append(s)
        moves.append(b["close"][trough] / start - 1.0)
        lows.append(min(b["low"][: path_end + 1].min() / start - 1.0, 0.0))
        highs.append(max(b["high"][: path_end + 1].max() / start - 1.0, 0.0))
    base = ScenarioSet(
        names=(CRASH_NAME,),
        symbols=tuple(names),
        moves=np.array([moves]),
        low=np.array([lows]),
        high=np.array([highs]),
        start_ms=btc["open_time"][:1].copy(),
        end_ms=btc["open_time"][trough : trough + 1] + MINUTE_MS,
    )
    full = with_proxies(base, [s for s in symbols if s not in base.symbols], betas=betas, proxy=proxy)
    wanted = list(dict.fromkeys(symbols)) or list(full.symbols)
    return full.for_symbols(wanted)


def stress_scenario(
    name: str,
    moves: Mapping[str, Decimal | float | str],
    symbols: Sequence[str],
    *,
    betas: Mapping[str, float] | None = None,
    proxy: str = "BTCUSDT",
) -> ScenarioSet:
    """A named one-scenario set from explicit relative moves (path extremes = the move itself);
    symbols without a move get beta × the proxy's move (flagged)."""
    if not isinstance(name, str) or not name:
        raise BadInput("a stress scenario needs a name")
    given = {}
    for s, m in moves.items():
        try:
            value = float(Decimal(str(m)))
        except ArithmeticError:
            raise BadInput(f"{s}: move {m!r} is not a number", symbols=[s]) from None
        if not math.isfinite(value) or value <= -1:
            raise BadInput(f"{s}: move must be finite and > -100 %, got {m!r}", symbols=[s])
        given[s] = value
    syms = tuple(given)
    arr = np.array([[given[s] for s in syms]])
    base = ScenarioSet(names=(name,), symbols=syms, moves=arr, low=np.minimum(arr, 0.0), high=np.maximum(arr, 0.0))
    full = with_proxies(base, [s for s in symbols if s not in syms], betas=betas, proxy=proxy)
    return full.for_symbols(list(dict.fromkeys(symbols)) or list(full.symbols))


def combine(*sets: ScenarioSet) -> ScenarioSet:
    """Stack scenario sets over the first set's symbols (each must cover them)."""
    if not sets:
        raise BadInput("nothing to combine")
    symbols = sets[0].symbols
    parts = [s.for_symbols(symbols) for s in sets]
    flags: dict[str, tuple[str, ...]] = {}
    for p in parts:
        for sym, f in p.flags.items():
            flags[sym] = tuple(dict.fromkeys(flags.get(sym, ()) + f))
    return ScenarioSet(
        names=tuple(n for p in parts for n in p.names),
        symbols=symbols,
        moves=np.vstack([p.moves for p in parts]),
        low=np.vstack([p.low for p in parts]),
        high=np.vstack([p.high for p in parts]),
        flags=flags,
    )
