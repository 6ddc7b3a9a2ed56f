"""Replay of real 1-minute bars as a continuous mark-price path.

Each bar is walked open -> first extreme -> second extreme -> close, so the
bar's high and low are both reached: open->low->high->close for a down bar
(close < open), open->high->low->close otherwise, which is the order a
down (up) bar most plausibly took. The four points sit at 0, 20, 40 and 59 s
into the bar; the last second slides from the close to the next bar's open.
Between points the price is interpolated linearly. Marks are quantized to 8
decimals, as Binance's mark price.
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

from .numbers import MONEY_PLACES, quantize, to_decimal

BAR_MS = 60_000
VERTEX_OFFSETS_MS = (0, 20_000, 40_000, 59_000)
_FILE_SYMBOL = re.compile(r"^binance_[a-z_]+?_([A-Z0-9]+)_\d+[mhd]_")
_COLUMNS = ("open_time", "open", "high", "low", "close")


class ReplayError(ValueError):
    pass


@dataclass(frozen=True)
class Bar:
    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    def vertices(self) -> list[tuple[int, Decimal]]:
        """(ms, price) points of the walk through this bar."""
        middle = (self.low, self.high) if self.close < self.open else (self.high, self.low)
        prices = (self.open, *middle, self.close)
        return [(self.open_time_ms + off, price) for off, price in zip(VERTEX_OFFSETS_MS, prices, strict=True)]


def _bar(path: Path, line: int, row: Mapping[str, str]) -> Bar:
    try:
        bar = Bar(int(row["open_time"]), *(to_decimal(row[c]) for c in _COLUMNS[1:]))
    except (ValueError, TypeError) as exc:
        raise ReplayError(f"{path}:{line}: bad bar: {exc}") from None
    if not (bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close) and bar.low > 0):
        raise ReplayError(f"{path}:{line}: OHLC out of order")
    return bar


def load_bars(path: Path) -> list[Bar]:
    """Bars from a CSV with at least open_time (ms), open, high, low, close columns, in time order."""
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ReplayError(f"{path}: missing column(s) {missing}")
            bars = [_bar(path, i + 2, row) for i, row in enumerate(reader)]
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None
    if not bars:
        raise ReplayError(f"{path}: no bars")
    if any(b.open_time_ms <= a.open_time_ms for a, b in zip(bars, bars[1:], strict=False)):
        raise ReplayError(f"{path}: bars are not in increasing time order")
    return bars


def symbol_from_filename(path: Path) -> str | None:
    """BTCUSDT from binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv (and binance_um_futures_... files)."""
    match = _FILE_SYMBOL.match(path.name)
    return match.group(1) if match else None


class ReplayPath:
    """Piecewise-linear mark path over the bars' walk points."""

    def __init__(self, bars: list[Bar]) -> None:
        points = [v for bar in bars for v in bar.vertices()]
        self.times = [t for t, _p in points]
        self.prices = [p for _t, p in points]
        self.start_ms = bars[0].open_time_ms
        self.end_ms = self.times[-1]

    def price_at(self, t_ms: int) -> Decimal:
        """Mark at ``t_ms``; before the first bar its open, after the last its close."""
        i = bisect_right(self.times, t_ms)
        if i == 0:
            return self.prices[0]
        if i == len(self.times):
            return self.prices[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        p0, p1 = self.prices[i - 1], self.prices[i]
        return quantize(p0 + (p1 - p0) * Decimal(t_ms - t0) / Decimal(t1 - t0), MONEY_PLACES)

    def vertex_times(self, after_ms: int, upto_ms: int) -> list[int]:
        """Walk points strictly between the two times: where a replay step must stop to see every extreme."""
        return self.times[bisect_right(self.times, after_ms) : bisect_left(self.times, upto_ms)]


@dataclass(frozen=True)
class ReplaySource:
    symbol: str
    path: Path
    bars: tuple[Bar, ...]

    @classmethod
    def load(cls, arg: str, symbols: Mapping[str, object]) -> ReplaySource:
        """``path`` (symbol from the file name) or ``SYMBOL=path``."""
        symbol, sep, rest = arg.partition("=")
        path = Path(rest if sep else arg)
        name = symbol.strip().upper() if sep else symbol_from_filename(path)
        if not name:
            raise ReplayError(f"--replay {arg}: cannot tell the symbol from the file name; use SYMBOL=path")
        if name not in symbols:
            raise ReplayError(f"--replay {arg}: unknown symbol {name!r}")
        return cls(name, path, tuple(load_bars(path)))


def start_time_ms(spec: str | None, first_bar_ms: int) -> int:
    """Replay start: HH:MM on the first bar's (UTC) day, or an ISO date-time (UTC if no zone)."""
    if not spec:
        return first_bar_ms
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", spec):
            day = datetime.fromtimestamp(first_bar_ms / 1000, UTC).date()
            moment = datetime.combine(day, time.fromisoformat(spec.zfill(5)), UTC)
        else:
            moment = datetime.fromisoformat(spec)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        raise ReplayError(f"--start-at {spec!r}: expected HH:MM or an ISO date-time") from None
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
