"""Market history: 1-minute bars per symbol (MinuteBar), how they are written and how they are read.

Two writers:
- the stream process builds bars from the marks it sees (``MarkBars`` on its loop; the closed
  minute's bars go to the sink, which writes them with ``write_mark_bars``, insert-if-absent);
- the exchange's klines (``manage.py backfill_klines``, the daily refresh task) are upserted with
  ``upsert_klines`` and replace a marks bar of the same minute: the exchange saw every trade, the
  stream only the marks of its flushes.

Readers (volatility, correlations, VaR: positions.portfolio through rules.allocation) use
``closes``/``close_matrix``; ``coverage`` says how much history each symbol has. Every time is UTC.
The API is described for the other modules in /work/notes/bars-api.md (docs/SIMULATOR.md for klines).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncDay, TruncHour

from marketdata.models import MinuteBar

MINUTE_MS = 60_000
INTERVALS = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}  # minutes, buckets aligned on UTC
WRITE_BATCH = 1000  # rows per INSERT: SQLite's 999-variable limit is per statement, Django splits for it

MarkBar = tuple[str, int, Decimal, Decimal, Decimal, Decimal]  # symbol, open ms, open, high, low, close


def to_utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --------------------------------------------------------------------------- bars from marks


class MarkBars:
    """1-minute OHLC per symbol from the marks a stream process sees. Plain Python on the event loop:
    ``add`` is a few dict operations per symbol, and hands back the bars of the minutes that closed.

    A minute closes when a mark of a later minute arrives for any symbol (the batch's newest time),
    so a symbol whose mark stops moving still gets its bar written. A mark older than its symbol's
    open minute (out of order) is ignored: that minute was already handed over."""

    def __init__(self) -> None:
        self._open: dict[str, list[Any]] = {}  # symbol -> [minute ms, open, high, low, close]
        self._now_minute = 0

    def add(self, marks: dict[str, tuple[Decimal, int]]) -> list[MarkBar]:
        bars = self._open
        newest = self._now_minute
        closed: list[MarkBar] = []
        for symbol, (price, ts_ms) in marks.items():
            minute = ts_ms - ts_ms % MINUTE_MS
            if minute > newest:
                newest = minute
            bar = bars.get(symbol)
            if bar is None or minute > bar[0]:
                if bar is not None:
                    closed.append((symbol, bar[0], bar[1], bar[2], bar[3], bar[4]))
                bars[symbol] = [minute, price, price, price, price]
            elif minute == bar[0]:
                if price > bar[2]:
                    bar[2] = price
                elif price < bar[3]:
                    bar[3] = price
                bar[4] = price
        if newest > self._now_minute:
            self._now_minute = newest
            for symbol, bar in list(bars.items()):
                if bar[0] < newest:  # quiet symbols: their minute is over too
                    closed.append((symbol, bar[0], bar[1], bar[2], bar[3], bar[4]))
                    del bars[symbol]
        return closed


def write_mark_bars(rows: Iterable[MarkBar]) -> int:
    """Bars built from marks, insert-if-absent: a klines bar of the same minute stays as it is."""
    objs = [
        MinuteBar(symbol=s, open_time=to_utc(t), open=o, high=h, low=lo, close=c, source=MinuteBar.MARKS)
        for s, t, o, h, lo, c in rows
    ]
    MinuteBar.objects.bulk_create(objs, batch_size=WRITE_BATCH, ignore_conflicts=True)
    return len(objs)


def upsert_klines(symbol: str, klines: Iterable[Any]) -> int:
    """Exchange klines (``exchange.Kline`` or Binance's arrays ``[open_ms, "o", "h", "l", "c", ...]``),
    inserted or replacing the minute's bar. Idempotent: the same klines twice leave the same rows."""
    objs = []
    for k in klines:
        if isinstance(k, list | tuple):
            t, o, h, lo, c = int(k[0]), Decimal(str(k[1])), Decimal(str(k[2])), Decimal(str(k[3])), Decimal(str(k[4]))
        else:
            t, o, h, lo, c = k.open_time_ms, k.open, k.high, k.low, k.close
        objs.append(
            MinuteBar(symbol=symbol, open_time=to_utc(t), open=o, high=h, low=lo, close=c, source=MinuteBar.KLINES)
        )
    if not objs:
        return 0
    # MariaDB's ON DUPLICATE KEY UPDATE takes no conflict target; SQLite's ON CONFLICT needs one.
    target = ["symbol", "open_time"] if connection.features.supports_update_conflicts_with_target else None
    MinuteBar.objects.bulk_create(
        objs,
        batch_size=WRITE_BATCH,
        update_conflicts=True,
        update_fields=["open", "high", "low", "close", "source"],
        unique_fields=target,
    )
    return len(objs)


def load_bundled(
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"), *, start: datetime | None = None, end: datetime | None = None
) -> int:
    """The bundled real 1m bars (marketdata/data, 2021-04-20 .. 2021-05-20) into MinuteBar as klines,
    with start <= open_time < end: tests, and the demo without a simulator to backfill from."""
    from marketdata.simulator.klines import BUNDLED, load_bundle

    lo = to_ms(start) if start else -(2**62)
    hi = to_ms(end) if end else 2**62
    written = 0
    for symbol in symbols:
        if symbol not in BUNDLED:
            raise ValueError(f"no bundled history for {symbol}; bundled: {', '.join(sorted(BUNDLED))}")
        _times, rows = load_bundle(symbol)
        written += upsert_klines(symbol, [r[:5] for r in rows if lo <= r[0] < hi])
    return written


# --------------------------------------------------------------------------- reading


def _interval_minutes(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}") from None


def closes(
    symbols: Iterable[str], start: datetime, end: datetime, *, interval: str = "1m"
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Exact closes with start <= open_time < end, ascending, per symbol asked (no bars: []).
    Above 1m, one point per UTC bucket that has bars: (bucket open time, its last minute's close)."""
    minutes = _interval_minutes(interval)
    symbols = list(dict.fromkeys(symbols))
    out: dict[str, list[tuple[datetime, Decimal]]] = {s: [] for s in symbols}
    in_range = MinuteBar.objects.filter(symbol__in=symbols, open_time__gte=start, open_time__lt=end)
    if minutes in _TRUNC and connection.vendor != "sqlite":
        return _bucket_closes(in_range, out, _TRUNC[minutes])
    rows = in_range.order_by("symbol", "open_time").values_list("symbol", "open_time", "close")
    if minutes == 1:
        for symbol, at, close in rows.iterator(chunk_size=20_000):
            out[symbol].append((at, close))
        return out
    size_s = minutes * 60
    buckets: dict[str, list[tuple[int, Decimal]]] = {s: [] for s in symbols}
    for symbol, at, close in rows.iterator(chunk_size=20_000):
        ts = int(at.timestamp())
        bucket = ts - ts % size_s
        series = buckets[symbol]
        if series and series[-1][0] == bucket:
            series[-1] = (bucket, close)
        else:
            series.append((bucket, close))
    return {s: [(datetime.fromtimestamp(b, tz=UTC), c) for b, c in series] for s, series in buckets.items()}


# Hours and days on MariaDB: the database finds each bucket's last minute (GROUP BY), and only those rows
# are read: 2.5-5x faster than converting every minute's row. Not on SQLite, where the truncation is a
# Python function called per row and came out no faster (figures in /work/notes/h18a-perf.md).
_TRUNC = {60: TruncHour, 1440: TruncDay}
IN_CHUNK = 500


def _bucket_closes(in_range: Any, out: dict[str, list[tuple[datetime, Decimal]]], trunc: Any) -> dict:
    ends = (
        in_range.annotate(bucket=trunc("open_time", tzinfo=UTC))
        .order_by()
        .values("symbol", "bucket")
        .annotate(last=Max("open_time"))
        .values_list("symbol", "bucket", "last")
    )
    by_symbol: dict[str, dict[datetime, datetime]] = {}
    for symbol, bucket, last in ends:
        by_symbol.setdefault(symbol, {})[last] = bucket
    for symbol, lasts in by_symbol.items():
        times = sorted(lasts)
        closes_at: dict[datetime, Decimal] = {}
        for i in range(0, len(times), IN_CHUNK):
            rows = MinuteBar.objects.filter(symbol=symbol, open_time__in=times[i : i + IN_CHUNK])
            closes_at.update(rows.values_list("open_time", "close"))
        out[symbol] = [(lasts[t].astimezone(UTC), closes_at[t]) for t in times]
    return out


@dataclass(frozen=True)
class CloseMatrix:
    """Closes of N symbols aligned on T bucket times (the union of their buckets), for NumPy maths.
    ``present[t, n]``: symbol n had a bar in bucket t. A missing bucket carries the previous close
    forward; before a symbol's first bar its column is NaN (``first_index``)."""

    times_ms: np.ndarray  # int64 (T,)
    symbols: list[str]
    closes: np.ndarray  # float64 (T, N)
    present: np.ndarray  # bool (T, N)

    def first_index(self, symbol: str) -> int | None:
        column = self.present[:, self.symbols.index(symbol)]
        hits = np.flatnonzero(column)
        return int(hits[0]) if hits.size else None


def close_matrix(symbols: Iterable[str], start: datetime, end: datetime, *, interval: str = "1d") -> CloseMatrix:
    minutes = _interval_minutes(interval)
    names = list(dict.fromkeys(symbols))
    if minutes in _TRUNC and connection.vendor != "sqlite":  # few rows: the GROUP BY path
        series = closes(names, start, end, interval=interval)
        per_symbol = {
            s: (np.array([to_ms(at) for at, _ in points], dtype=np.int64), np.array([float(c) for _, c in points]))
            for s, points in series.items()
        }
    else:
        per_symbol = _raw_closes(names, start, end, minutes)
    times = np.unique(np.concatenate([t for t, _ in per_symbol.values()] or [np.empty(0, np.int64)]))
    matrix = np.full((len(times), len(names)), np.nan)
    present = np.zeros((len(times), len(names)), dtype=bool)
    rows = np.arange(len(times))
    for n, name in enumerate(names):
        t, c = per_symbol[name]
        if not t.size:
            continue
        at = np.searchsorted(times, t)
        matrix[at, n], present[at, n] = c, True
        fill = np.maximum.accumulate(np.where(present[:, n], rows, -1))  # forward-fill after the first bar
        valid = fill >= 0
        matrix[valid, n] = matrix[fill[valid], n]
    return CloseMatrix(times.astype(np.int64), names, matrix, present)


def _raw_closes(names: list[str], start: datetime, end: datetime, minutes: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Per symbol, (bucket open ms, last close in the bucket as float), ascending. The ORM's SQL run on a
    plain cursor: the floats need no Decimal, and Django's per-row converters were two thirds of the time
    (85,830 rows: 2.0 s through values_list, 0.9 s here on MariaDB)."""
    query = (
        MinuteBar.objects.filter(symbol__in=names, open_time__gte=start, open_time__lt=end)
        .order_by("symbol", "open_time")
        .values_list("symbol", "open_time", "close")
    )
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out: dict[str, tuple[np.ndarray, ...]] = {s: (np.empty(0, np.int64), np.empty(0)) for s in names}
    size = minutes * MINUTE_MS
    i = 0
    while i < len(rows):
        symbol = rows[i][0]
        j = i
        while j < len(rows) and rows[j][0] == symbol:
            j += 1
        chunk = rows[i:j]
        t = np.fromiter((_naive_ms(r[1]) for r in chunk), dtype=np.int64, count=len(chunk))
        c = np.fromiter((float(r[2]) for r in chunk), dtype=np.float64, count=len(chunk))
        if minutes > 1:
            bucket = t - t % size
            last = np.flatnonzero(np.r_[bucket[1:] != bucket[:-1], True])
            t, c = bucket[last], c[last]
        out[symbol] = (t, c)
        i = j
    return out


_EPOCH = datetime(1970, 1, 1)


def _naive_ms(value: Any) -> int:
    """Epoch ms of a stored open time: a naive UTC datetime from the cursor (or its text, on SQLite)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        return int(value.timestamp() * 1000)
    return (value - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class Coverage:
    symbol: str
    first: datetime
    last: datetime
    count: int


def coverage(symbols: Iterable[str] | None = None) -> dict[str, Coverage]:
    """Per symbol with bars: its first and last minute and how many bars (one GROUP BY)."""
    rows = MinuteBar.objects.all()
    if symbols is not None:
        rows = rows.filter(symbol__in=list(symbols))
    grouped = (
        rows.order_by().values("symbol").annotate(first=Min("open_time"), last=Max("open_time"), count=Count("id"))
    )
    return {r["symbol"]: Coverage(r["symbol"], r["first"], r["last"], r["count"]) for r in grouped}


def minute_bars(symbol: str, start: datetime, end: datetime) -> list[MinuteBar]:
    return list(MinuteBar.objects.filter(symbol=symbol, open_time__gte=start, open_time__lt=end).order_by("open_time"))


# --------------------------------------------------------------------------- backfill over REST

# Klines cost weight by limit (1 under 100, 2 under 500, 5 up to 1000, 10 above): 499 a page is the
# least weight per bar (0.004, against 0.0067 at 1500), and weight, shared by IP with the live desk's
# reads, is what a backfill runs short of, not requests.
PAGE_SIZE = 499
WEIGHT_SHARE = 0.5  # a backfill waits for the next minute once the IP's used weight passes this share
RATE_LIMIT_ATTEMPTS = 8  # 429/418 answers in a row on one page before the backfill gives up


@dataclass
class BackfillResult:
    bars: dict[str, int]  # symbol -> closed bars upserted
    pages: int = 0
    rate_limited: int = 0  # 429/418 answers waited out
    paused_s: float = 0.0  # time spent waiting for weight
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> the exchange's refusal (e.g. -1121)


def backfill(
    *,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    page_size: int = PAGE_SIZE,
    weight_share: float = WEIGHT_SHARE,
    stream: Any = None,
    exchange: Any = None,
    sleep: Any = None,
    now_ms: Any = None,
) -> BackfillResult:
    """1-minute klines of ``symbols`` with start <= open < end over REST (keyless, public), page by page,
    upserted as they come: idempotent, and an interrupted run keeps what it wrote. Only closed bars are
    stored (a bar still open would freeze a partial high/low as the exchange's). A progress bar on
    ``stream`` when it is a terminal. ``exchange``: an adapter factory (tests); default the configured
    URLs. 429/418 are waited out (Retry-After); past ``weight_share`` of the minute's weight the run
    waits for the next minute, leaving the rest to the live desk on the same IP."""
    import asyncio
    import time as _time

    from marketdata.exchange import WEIGHT_LIMIT_1M, ExchangeRejected, RateLimited
    from riskdesk.progress import steps

    sleep = sleep or _time.sleep
    now_ms = now_ms or (lambda: int(_time.time() * 1000))
    if exchange is None:
        from marketdata.services import exchange_for

        def exchange() -> Any:
            return exchange_for(None)

    start_ms -= start_ms % MINUTE_MS
    span = max(0, end_ms - start_ms)
    pages_per_symbol = -(-span // (page_size * MINUTE_MS))
    result = BackfillResult(bars={s: 0 for s in symbols})
    with asyncio.Runner() as runner, steps(len(symbols) * pages_per_symbol, desc="klines", stream=stream) as bar:
        adapter = runner.run(_make(exchange))
        try:
            for symbol in symbols:
                cursor, done = start_ms, 0
                while cursor < end_ms:
                    attempts = 0
                    while True:
                        try:
                            page = runner.run(
                                adapter.klines(
                                    symbol=symbol,
                                    interval="1m",
                                    start_time_ms=cursor,
                                    end_time_ms=end_ms - 1,
                                    limit=page_size,
                                )
                            )
                            break
                        except ExchangeRejected as exc:  # (RateLimited is not one: below)
                            # A symbol the exchange does not know (delisted, a typo: -1121) must not stop
                            # the others: the daily refresh covers every symbol the desk ever had bars of.
                            result.failed[symbol] = str(exc)
                            page = None
                            break
                        except RateLimited as exc:
                            attempts += 1
                            result.rate_limited += 1
                            if attempts >= RATE_LIMIT_ATTEMPTS:
                                raise
                            sleep(exc.retry_after_s)
                            result.paused_s += exc.retry_after_s
                    if page is None:
                        break
                    result.pages += 1
                    done += 1
                    bar.update(1)
                    closed = [k for k in page if k.close_time_ms < now_ms()]
                    result.bars[symbol] += upsert_klines(symbol, closed)
                    if len(page) < page_size or not closed:
                        break  # the range is exhausted (or reaches the bar still open)
                    cursor = page[-1].open_time_ms + MINUTE_MS
                    rate = adapter.rate
                    minute = int(_time.time() // 60)
                    if rate.weight_minute == minute and rate.used_weight >= WEIGHT_LIMIT_1M * weight_share:
                        wait = 60 - _time.time() % 60 + 0.5
                        sleep(wait)
                        result.paused_s += wait
                bar.update(max(0, pages_per_symbol - done))
        finally:
            runner.run(adapter.close())
    return result


async def _make(factory: Any) -> Any:
    # Built inside the runner's loop: aiohttp binds its session to the loop it was made in.
    return factory()


# --------------------------------------------------------------------------- retention

KEEP_DAYS = 400  # 300 symbols x 1,440 bars a day is ~430,000 rows a day: history is kept this long
PRUNE_CHUNK = 10_000


def prune(*, before: datetime) -> int:
    """Delete bars that open before ``before``, in chunks: one statement over millions of rows held
    MariaDB's locks (and SQLite's only write lock) long enough to stall the sink's writes."""
    deleted = 0
    while True:
        ids = list(MinuteBar.objects.filter(open_time__lt=before).order_by().values_list("id", flat=True)[:PRUNE_CHUNK])
        if not ids:
            return deleted
        deleted += MinuteBar.objects.filter(id__in=ids).delete()[0]
