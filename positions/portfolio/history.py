"""Minute closes per symbol, cut at ``as_of`` and aligned on one grid.

Input shape (what marketdata's bars give, one symbol at a time):
``{symbol: (open_times_ms, closes)}`` with 1-minute bars in any order.

Why forward-fill: a missing minute means no trade/mark changed the bar store, so the last
close is the best price known at that minute. Rows before a symbol's first bar are *not*
filled backwards (that would invent history): ``first[s]`` says where the symbol starts and
every consumer refuses or flags windows that reach before it.

No look-ahead: bars whose open time is after ``as_of_ms`` are dropped before anything else
looks at them, so data after the cut-off cannot change any result (tested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from positions.portfolio.errors import BadInput, NoBars

MINUTE_MS = 60_000


@dataclass(frozen=True)
class AlignedCloses:
    times_ms: np.ndarray  # int64[T], ascending, step_ms apart; the last row is the last minute <= as_of
    symbols: tuple[str, ...]
    closes: np.ndarray  # float64[T, S], forward-filled; rows < first[s] are NaN (never read)
    first: np.ndarray  # int64[S], first row where the symbol has a price
    as_of_ms: int
    step_ms: int = MINUTE_MS
    missing: tuple[str, ...] = field(default=())  # symbols dropped for having no bar (missing="skip")

    def index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise NoBars(f"{symbol}: no bars at or before the cut-off", symbols=[symbol]) from None


def _check_ms(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BadInput(f"{name} must be epoch milliseconds (int), got {value!r}")
    return int(value)


_NUMBER_TYPES = (Decimal, str, int, float, np.floating, np.integer)


def _to_floats(symbol: str, closes: Sequence[object]) -> np.ndarray:
    if isinstance(closes, np.ndarray) and closes.dtype.kind in "fiu":
        values = closes.astype(float)
    else:
        bad = next((c for c in closes if isinstance(c, bool) or not isinstance(c, _NUMBER_TYPES)), None)
        if bad is not None:
            raise BadInput(f"{symbol}: a close is not a number: {bad!r}", symbols=[symbol])
        try:
            values = np.fromiter(map(float, closes), dtype=float, count=len(closes))
        except ValueError:
            raise BadInput(f"{symbol}: a close is not a number", symbols=[symbol]) from None
    if values.size and not (np.isfinite(values).all() and (values > 0).all()):
        raise BadInput(f"{symbol}: closes must be finite and > 0", symbols=[symbol])
    return values


def _to_times(symbol: str, times: Sequence[object]) -> np.ndarray:
    if isinstance(times, np.ndarray) and times.dtype.kind in "iu":
        return times.astype(np.int64)
    if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in times):
        raise BadInput(f"{symbol}: open times must be epoch milliseconds (int)", symbols=[symbol])
    return np.fromiter(times, dtype=np.int64, count=len(times))


def align_closes(
    closes_by_symbol: Mapping[str, tuple[Sequence[int], Sequence[object]]],
    *,
    as_of_ms: int,
    lookback_ms: int | None = None,
    step_ms: int = MINUTE_MS,
    missing: str = "raise",
) -> AlignedCloses:
    """One grid ``step_ms`` apart ending at the last grid point <= ``as_of_ms``; see the module doc.

    ``lookback_ms`` keeps only bars with open time > as_of − lookback. ``missing="raise"`` (default)
    raises ``NoBars`` naming every symbol without a bar in range; ``"skip"`` drops them and lists
    them in ``.missing``.
    """
    as_of_ms = _check_ms("as_of_ms", as_of_ms)
    step_ms = _check_ms("step_ms", step_ms)
    if step_ms <= 0:
        raise BadInput("step_ms must be > 0")
    if missing not in ("raise", "skip"):
        raise BadInput(f"missing must be 'raise' or 'skip', got {missing!r}")
    if not isinstance(closes_by_symbol, Mapping) or not closes_by_symbol:
        raise BadInput("closes_by_symbol must be a non-empty mapping {symbol: (open_times_ms, closes)}")
    low = -math.inf if lookback_ms is None else as_of_ms - _check_ms("lookback_ms", lookback_ms)
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    empty: list[str] = []
    for symbol, pair in closes_by_symbol.items():
        if not isinstance(symbol, str) or not symbol:
            raise BadInput(f"symbol must be a non-empty str, got {symbol!r}")
        try:
            times_in, closes_in = pair
        except (TypeError, ValueError):
            raise BadInput(f"{symbol}: expected (open_times_ms, closes)", symbols=[symbol]) from None
        if len(times_in) != len(closes_in):
            raise BadInput(f"{symbol}: {len(times_in)} times but {len(closes_in)} closes", symbols=[symbol])
        times = _to_times(symbol, times_in)
        # The cut comes first: nothing after as_of is even parsed as a price.
        keep = (times <= as_of_ms) & (times > low)
        if keep.all():
            values = _to_floats(symbol, closes_in)
        else:
            idx = np.flatnonzero(keep)
            values = _to_floats(symbol, [closes_in[i] for i in idx])
            times = times[idx]
        if times.size == 0:
            empty.append(symbol)
            continue
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        if (np.diff(times) == 0).any():
            raise BadInput(f"{symbol}: duplicate bar open times", symbols=[symbol])
        kept[symbol] = (times, values)
    if empty and missing == "raise":
        raise NoBars(f"no bars at or before the cut-off for: {', '.join(sorted(empty))}", symbols=sorted(empty))
    if not kept:
        raise NoBars("no symbol has bars at or before the cut-off", symbols=sorted(empty))
    last = as_of_ms - (as_of_ms % step_ms)
    start = min(int(t[0]) for t, _ in kept.values())
    start -= start % step_ms
    grid = np.arange(start, last + step_ms, step_ms, dtype=np.int64)
    symbols = tuple(sorted(kept))
    closes = np.full((grid.size, len(symbols)), np.nan)
    first = np.zeros(len(symbols), dtype=np.int64)
    for s, symbol in enumerate(symbols):
        times, values = kept[symbol]
        rows = (times - start) // step_ms  # a bar inside a grid step counts for that step
        col = np.full(grid.size, np.nan)
        col[rows] = values  # several bars in one step: the latest wins (times are sorted)
        # forward fill: index of the last valid row at or before each row
        valid = np.where(np.isfinite(col), np.arange(grid.size), -1)
        np.maximum.accumulate(valid, out=valid)
        first[s] = int(rows[0])
        filled = np.where(valid >= 0, col[np.maximum(valid, 0)], np.nan)
        closes[:, s] = filled
    return AlignedCloses(
        times_ms=grid,
        symbols=symbols,
        closes=closes,
        first=first,
        as_of_ms=as_of_ms,
        step_ms=step_ms,
        missing=tuple(sorted(empty)),
    )


def from_matrix(
    *,
    times_ms: np.ndarray,
    symbols: Sequence[str],
    closes: np.ndarray,
    as_of_ms: int,
    step_ms: int = MINUTE_MS,
) -> AlignedCloses:
    """An already aligned matrix (``marketdata.bars.close_matrix``, benchmarks) onto the regular grid.

    ``times_ms`` ascending bucket open times (rows may be missing: a gap every symbol shares is
    re-inserted here, so one row is always one ``step_ms``); ``closes`` [T, S] with NaN before a
    symbol's first close (anything else non-finite is refused). Rows after ``as_of_ms`` are cut
    before anything reads them; gaps are forward-filled like ``align_closes``."""
    as_of_ms = _check_ms("as_of_ms", as_of_ms)
    step_ms = _check_ms("step_ms", step_ms)
    if step_ms <= 0:
        raise BadInput("step_ms must be > 0")
    times = np.asarray(times_ms)
    if times.ndim != 1 or times.dtype.kind not in "iu":
        raise BadInput("times_ms must be a 1-d array of epoch milliseconds")
    times = times.astype(np.int64)
    values = np.asarray(closes, dtype=float)
    symbols = tuple(symbols)
    if values.ndim != 2 or values.shape != (times.size, len(symbols)):
        raise BadInput(f"closes must be [T={times.size}, S={len(symbols)}], got {values.shape}")
    if len(set(symbols)) != len(symbols):
        raise BadInput("duplicate symbols")
    keep = times <= as_of_ms
    times, values = times[keep], values[keep]
    if times.size == 0:
        raise NoBars("no rows at or before the cut-off", symbols=symbols)
    if (np.diff(times) <= 0).any():
        raise BadInput("times_ms must be strictly ascending")
    finite = np.isfinite(values)
    if (values[finite] <= 0).any():
        raise BadInput("closes must be > 0")
    if np.isinf(values).any():
        raise BadInput("closes must be finite (NaN only before a symbol's first close)")
    empty = [s for s, has in zip(symbols, finite.any(axis=0), strict=True) if not has]
    if empty:
        raise NoBars(f"no bars at or before the cut-off for: {', '.join(sorted(empty))}", symbols=sorted(empty))
    start = int(times[0]) - int(times[0]) % step_ms
    last = as_of_ms - as_of_ms % step_ms
    grid = np.arange(start, last + step_ms, step_ms, dtype=np.int64)
    rows = (times - start) // step_ms
    full = np.full((grid.size, len(symbols)), np.nan)
    full[rows] = values
    valid = np.where(np.isfinite(full), np.arange(grid.size)[:, None], -1)
    np.maximum.accumulate(valid, axis=0, out=valid)
    first = np.argmax(valid >= 0, axis=0).astype(np.int64)
    filled = np.take_along_axis(full, np.maximum(valid, 0), axis=0)
    filled[valid < 0] = np.nan
    return AlignedCloses(times_ms=grid, symbols=symbols, closes=filled, first=first, as_of_ms=as_of_ms, step_ms=step_ms)
