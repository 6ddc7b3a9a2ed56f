"""GET /fapi/v1/klines: Binance's candlesticks, from the simulator's own price history.

Where a minute's bar comes from, for symbol S and a minute m (epoch ms, wall clock):

1. m at or after the simulator started: the marks the simulator produced, sampled once a second
   (``Recorder``), so klines agree with the mark-price stream a desk saw. Only the last
   RECORDED_MINUTES are remembered; older minutes fall to 2./3.
2. before that, for a symbol with bundled real data (marketdata/data, BUNDLED): the bundled bars at
   their real times (2021-04-20 .. 2021-05-20 for BTCUSDT/ETHUSDT); outside that range, nothing, as for
   a symbol not yet listed.
3. before that, for every other symbol: a deterministic random walk (seeded by --seed and the symbol)
   that ends at the symbol's initial mark at the minute the simulator started, SYNTHETIC_DAYS deep.

Intervals other than 1m aggregate those minutes (open of the first, close of the last, extremes),
buckets aligned as Binance aligns them (UTC; weeks on Monday). Prices are strings at the symbol's
price precision; volumes are the bundled ones where there are any, else "0".

Weight depends on ``limit`` as on Binance: [1, 100) 1, [100, 500) 2, [500, 1000] 5, above 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import math
import re
import time
import zlib
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from .errors import ApiError, missing
from .symbols import DATA_DIR

if TYPE_CHECKING:
    from .server import Simulator

MINUTE_MS = 60_000
DAY_MS = 1440 * MINUTE_MS
MAX_LIMIT, DEFAULT_LIMIT = 1500, 500
RECORDED_MINUTES = 360  # per symbol: 300 synthetic symbols x 6 h stay under ~25 MB
SYNTHETIC_DAYS = 400  # how far back a synthesized history goes (before: nothing, as before a listing)
SAMPLE_EVERY_S = 1.0
BUNDLED = {
    "BTCUSDT": DATA_DIR / "binance_spot_BTCUSDT_1m_2021-04-20_2021-05-20.csv.gz",
    "ETHUSDT": DATA_DIR / "binance_spot_ETHUSDT_1m_2021-04-20_2021-05-20.csv.gz",
}
INTERVALS_MIN = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
    "3d": 4320,
    "1w": 10080,
}
WEEK_OFFSET_MS = 4 * DAY_MS  # epoch day 0 was a Thursday; Binance's weeks start on Monday 00:00 UTC
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_INTERVAL_CHARS = re.compile(r"^[a-zA-Z0-9]{1,36}$")
SAMPLER = web.AppKey("klines_sampler", asyncio.Task)

Row = tuple[int, Decimal, Decimal, Decimal, Decimal, str]  # open ms, o, h, l, c, base volume


def weight(limit: Any) -> int:
    try:
        n = int(limit) if limit not in (None, "") else DEFAULT_LIMIT
    except (TypeError, ValueError):
        n = DEFAULT_LIMIT
    return 1 if n < 100 else 2 if n < 500 else 5 if n <= 1000 else 10


def request_weight(request: web.Request) -> int:
    return weight(request.query.get("limit"))


# --------------------------------------------------------------------------- bundled real bars

_BUNDLE_CACHE: dict[str, tuple[list[int], list[Row]]] = {}


def load_bundle(symbol: str) -> tuple[list[int], list[Row]]:
    """The bundled 1m bars of ``symbol`` (open times and rows), read on first use and kept."""
    cached = _BUNDLE_CACHE.get(symbol)
    if cached is None:
        rows: list[Row] = []
        with gzip.open(BUNDLED[symbol], "rt", newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append(
                    (
                        int(r["open_time"]),
                        Decimal(r["open"]),
                        Decimal(r["high"]),
                        Decimal(r["low"]),
                        Decimal(r["close"]),
                        r["volume"],
                    )
                )
        cached = _BUNDLE_CACHE[symbol] = ([row[0] for row in rows], rows)
    return cached


# --------------------------------------------------------------------------- recorded marks


class Recorder:
    """Each symbol's mark, sampled once a second, as 1-minute bars (wall-clock minutes)."""

    def __init__(self, marks: dict[str, Decimal]) -> None:
        self.marks = marks  # the market's live dict
        self.started_ms = _now_ms()
        self.start_minute = self.started_ms - self.started_ms % MINUTE_MS
        self.initial = dict(marks)  # the synthesized history ends here
        self.bars: dict[str, OrderedDict[int, list[Decimal]]] = {}

    def sample(self, now_ms: int | None = None) -> None:
        now_ms = _now_ms() if now_ms is None else now_ms
        minute = now_ms - now_ms % MINUTE_MS
        for symbol, price in self.marks.items():
            bars = self.bars.get(symbol)
            if bars is None:
                bars = self.bars[symbol] = OrderedDict()
            bar = bars.get(minute)
            if bar is None:
                bars[minute] = [price, price, price, price]
                while len(bars) > RECORDED_MINUTES:
                    bars.popitem(last=False)
            else:
                if price > bar[1]:
                    bar[1] = price
                if price < bar[2]:
                    bar[2] = price
                bar[3] = price

    def rows(self, symbol: str, t0: int, t1: int) -> list[Row]:
        bars = self.bars.get(symbol) or {}
        return [(t, o, h, lo, c, "0") for t, (o, h, lo, c) in bars.items() if t0 <= t < t1]

    def first_minute(self, symbol: str) -> int:
        """From here on the recorder answers (older recorded minutes have been dropped)."""
        bars = self.bars.get(symbol)
        return next(iter(bars)) if bars else self.start_minute


# --------------------------------------------------------------------------- synthesized walks


class Synthetic:
    """Log-normal 1-minute walks ending at each symbol's initial mark at the simulator's start.

    Minute k before the start (k = 1 is the last minute before it) closes at
    P0 * exp(-(r_1 + ... r_{k-1})); the returns come in day blocks from a generator seeded by
    (seed, symbol, block), so any range is the same on every request and every run."""

    def __init__(self, seed: int, sigma_1m: float) -> None:
        self.seed, self.sigma = seed, sigma_1m
        self._blocks: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._offsets: dict[str, list[float]] = {}  # symbol -> cumulative log return before each block

    def _block(self, symbol: str, b: int) -> tuple[np.ndarray, np.ndarray]:
        key = (symbol, b)
        block = self._blocks.get(key)
        if block is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode()), b])
            returns = rng.normal(0.0, self.sigma, 1440)
            wicks = np.abs(rng.normal(0.0, self.sigma / 2, (2, 1440)))
            block = self._blocks[key] = (returns, wicks)
            if len(self._blocks) > 4096:  # bounded: 4,096 day blocks x 35 KB
                self._blocks.pop(next(iter(self._blocks)))
        return block

    def _offset(self, symbol: str, b: int) -> float:
        offsets = self._offsets.setdefault(symbol, [0.0])
        while len(offsets) <= b:
            offsets.append(offsets[-1] + float(self._block(symbol, len(offsets) - 1)[0].sum()))
        return offsets[b]

    def arrays(self, symbol: str, p0: float, k_first: int, k_last: int) -> tuple[np.ndarray, ...]:
        """open, high, low, close (floats) of minutes k_first >= k >= k_last (>= 1), oldest first."""
        ks = np.arange(k_first, k_last - 1, -1)
        # cumulative log return from the boundary k back to the start: S(k) = r_1 + ... + r_k
        b_lo, b_hi = (k_last - 1) // 1440, k_first // 1440
        cum_parts, wick_parts = [], []
        for b in range(b_lo, b_hi + 1):
            returns, wicks = self._block(symbol, b)
            cum_parts.append(self._offset(symbol, b) + np.cumsum(returns))
            wick_parts.append(wicks)
        cum = np.concatenate([[self._offset(symbol, b_lo)], *cum_parts])  # cum[j] = S(b_lo*1440 + j)
        base = b_lo * 1440
        wicks = np.concatenate(wick_parts, axis=1)
        close = p0 * np.exp(-cum[ks - 1 - base])  # minute k ends at boundary k-1
        open_ = p0 * np.exp(-cum[ks - base])
        up = wicks[0, ks - 1 - base]
        down = wicks[1, ks - 1 - base]
        high = np.maximum(open_, close) * (1 + up)
        low = np.minimum(open_, close) * (1 - down)
        return open_, high, low, close


# --------------------------------------------------------------------------- the book of minutes


class KlineSource:
    """Every symbol's 1-minute history as the simulator tells it (module docstring)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.recorder = Recorder(sim.market.marks)
        volatility = float(sim.config.synthetic_volatility)
        self.synthetic = Synthetic(int(sim.config.seed), volatility * math.sqrt(60.0))

    def precision(self, symbol: str) -> int:
        return int(self.sim.exchange.symbols[symbol].filters.price_precision)

    def minutes(self, symbol: str, t0: int, t1: int, per: int = 1) -> list[Row]:
        """Rows with t0 <= open < t1, oldest first (t0, t1 on minute boundaries): 1-minute rows, except
        that a synthesized stretch comes already aggregated into ``per``-minute buckets (cheap in NumPy,
        where 400 days of minutes as Decimals would hold the loop for seconds)."""
        recorded_from = self.recorder.first_minute(symbol)
        rows: list[Row] = []
        if t0 < recorded_from:
            rows += self._before_start(symbol, t0, min(t1, recorded_from), per)
        if t1 > recorded_from:
            rows += self.recorder.rows(symbol, max(t0, recorded_from), t1)
        return rows

    def next_available(self, symbol: str, t: int) -> int:
        """The first time at or after ``t`` this symbol may have a bar (a jump over empty stretches)."""
        recorded_from = self.recorder.first_minute(symbol)
        if t >= recorded_from:
            return t
        if symbol in BUNDLED:
            times, _rows = load_bundle(symbol)
            if t < times[0]:
                return times[0]
            return t if t <= times[-1] else recorded_from
        return max(t, self.recorder.start_minute - SYNTHETIC_DAYS * DAY_MS)

    def _before_start(self, symbol: str, t0: int, t1: int, per: int) -> list[Row]:
        if symbol in BUNDLED:
            times, bundle = load_bundle(symbol)
            return bundle[bisect_left(times, t0) : bisect_left(times, t1)]
        start = self.recorder.start_minute
        t0 = max(t0, start - SYNTHETIC_DAYS * DAY_MS)
        t1 = min(t1, start)
        if t1 <= t0:
            return []
        k_first, k_last = (start - t0) // MINUTE_MS, (start - t1) // MINUTE_MS + 1
        p0 = float(self.recorder.initial.get(symbol) or self.sim.exchange.symbols[symbol].typical_price)
        o, h, lo, c = self.synthetic.arrays(symbol, p0, k_first, k_last)
        times = np.arange(t0, t1, MINUTE_MS, dtype=np.int64)
        if per > 1:
            offset = WEEK_OFFSET_MS if per == 10080 else 0
            bucket = times - (times - offset) % (per * MINUTE_MS)
            first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
            last = np.r_[first[1:], len(times)] - 1
            times, o, h, lo, c = (
                bucket[first],
                o[first],
                np.maximum.reduceat(h, first),
                np.minimum.reduceat(lo, first),
                c[last],
            )
        decimal = _decimal_at(self.precision(symbol))
        floor = Decimal(1).scaleb(-self.precision(symbol))  # a walk never quotes below one tick
        return [
            (
                int(t),
                max(floor, decimal(a)),
                max(floor, decimal(b)),
                max(floor, decimal(d)),
                max(floor, decimal(e)),
                "0",
            )
            for t, a, b, d, e in zip(times, o, h, lo, c, strict=True)
        ]


def _decimal_at(places: int) -> Callable[[float], Decimal]:
    return lambda x: Decimal(f"{x:.{places}f}")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bucket_start(t: int, minutes: int) -> int:
    size = minutes * MINUTE_MS
    offset = WEEK_OFFSET_MS if minutes == 10080 else 0
    return t - (t - offset) % size


def aggregate(rows: list[Row], minutes: int) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    out: list[list[Any]] = []
    for t, o, h, lo, c, v in rows:
        b = _bucket_start(t, minutes)
        if out and out[-1][0] == b:
            bar = out[-1]
            bar[2] = max(bar[2], h)
            bar[3] = min(bar[3], lo)
            bar[4] = c
            bar[5] += Decimal(v)
        else:
            out.append([b, o, h, lo, c, Decimal(v)])
    return [tuple(bar) for bar in out]  # type: ignore[misc]


def _price(value: Decimal, places: int) -> str:
    """At the symbol's price precision, as Binance prints klines (marks carry 8 places: to the tick)."""
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


# --------------------------------------------------------------------------- the endpoint


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not _DIGITS.match(raw):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def klines(sim: Simulator, source: KlineSource, params: dict[str, str]) -> list[list]:
    symbol = params.get("symbol") or ""
    if not symbol:
        raise missing("symbol")
    interval = params.get("interval") or ""
    if not interval:
        raise missing("interval")
    if not _INTERVAL_CHARS.match(interval):
        raise ApiError(-1100, "Illegal characters found in parameter 'interval'; legal range is '^[a-zA-Z0-9]{1,36}$'.")
    start, end, limit = _int_param(params, "startTime"), _int_param(params, "endTime"), _int_param(params, "limit")
    if symbol not in sim.exchange.symbols:
        raise ApiError(-1121, "Invalid symbol.")
    if interval not in INTERVALS_MIN:
        raise ApiError(-1120, "Invalid interval.")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    source.recorder.sample()  # the current minute's bar includes the latest mark
    minutes = INTERVALS_MIN[interval]
    size = minutes * MINUTE_MS
    now = _now_ms()
    last_open = _bucket_start(now, minutes)  # the bar in progress, as Binance includes it
    if end is not None:
        last_open = min(last_open, _bucket_start(end, minutes))
    if start is not None:
        first_open = _bucket_start(start, minutes)
        if first_open < start:
            first_open += size  # Binance: bars that open at or after startTime
        bars = _forward(source, symbol, first_open, last_open, minutes, limit)
    else:
        first_open = last_open - (limit - 1) * size
        if last_open < first_open:
            return []
        bars = aggregate(source.minutes(symbol, first_open, last_open + size, minutes), minutes)[-limit:]
    places = source.precision(symbol)
    return [
        [
            t,
            _price(o, places),
            _price(h, places),
            _price(lo, places),
            _price(c, places),
            f"{v:f}",
            t + size - 1,
            "0",
            0,
            "0",
            "0",
            "0",
        ]
        for t, o, h, lo, c, v in bars
    ]


def _forward(source: KlineSource, symbol: str, first_open: int, last_open: int, minutes: int, limit: int) -> list:
    """The first ``limit`` bars that exist opening in [first_open, last_open], as Binance answers a
    startTime: windows of ``limit`` buckets, jumping over stretches with no data (before the bundle or
    the synthesized history, between the bundle and the simulator's start)."""
    size = minutes * MINUTE_MS
    bars: list = []
    cursor = first_open
    while len(bars) < limit and cursor <= last_open:
        cursor = max(cursor, _bucket_start(source.next_available(symbol, cursor), minutes))
        if cursor > last_open:
            break
        upto = min(last_open + size, cursor + (limit - len(bars)) * size)
        bars += aggregate(source.minutes(symbol, cursor, upto, minutes), minutes)
        cursor = upto
    return bars[:limit]


def register(app: web.Application, sim: Simulator) -> Callable[[Any], list[list]]:
    """The klines handler for rest.py's route table; samples the marks once a second while the app runs."""
    source = KlineSource(sim)
    sim.klines = source  # type: ignore[attr-defined]  # tests and the control API may look

    async def sampler() -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            with contextlib.suppress(Exception):
                source.recorder.sample()

    async def on_startup(app: web.Application) -> None:
        app[SAMPLER] = asyncio.create_task(sampler())

    async def on_cleanup(app: web.Application) -> None:
        task = app.get(SAMPLER)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return lambda ctx: klines(ctx.sim, source, ctx.params)
