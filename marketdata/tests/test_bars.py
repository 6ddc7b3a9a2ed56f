"""Market history (MinuteBar): the klines backfill against the simulator through the real
python-binance client (pages, idempotent, rate limits, weight), bars from marks in the stream
process's sink (a minute's open/high/low/close; klines win), the selectors, the daily refresh."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from marketdata import bars
from marketdata.exchange import BinanceFutures
from marketdata.models import MinuteBar
from marketdata.simulator import FaultSpec, SimulatorThread, build_config
from marketdata.sink import DjangoSink

DATA = Path(__file__).resolve().parents[1] / "data"
ACCOUNTS = {"accounts": [{"api_key": "k", "api_secret": "s", "wallet": {"USDT": "1000"}}]}
CRASH = datetime(2021, 5, 19, tzinfo=UTC)
T0 = 1_700_000_040_000  # a minute boundary (2023-11-14 22:14 UTC)


@pytest.fixture(scope="module")
def sim():
    config = build_config(accounts=ACCOUNTS, synthetic_symbols=1, seed=3, tick_interval_s=0.2)
    with SimulatorThread(config) as thread:
        yield thread


def adapter_for(sim):
    return lambda: BinanceFutures(api_key="", api_secret="", rest_url=sim.base_url, ws_url=sim.ws_url)


def crash_day(symbol: str) -> list[dict]:
    with (DATA / f"binance_spot_{symbol}_1m_2021-05-19_crashday.csv").open() as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- backfill


@pytest.mark.django_db
def test_backfill_pages_and_is_idempotent(sim):
    start, end = CRASH, CRASH + timedelta(days=1)
    # A marks bar already there: the exchange's kline replaces it.
    bars.write_mark_bars([("BTCUSDT", bars.to_ms(CRASH), D("1"), D("2"), D("0.5"), D("1.5"))])
    run = dict(symbols=["BTCUSDT", "ETHUSDT"], start_ms=bars.to_ms(start), end_ms=bars.to_ms(end))
    first = bars.backfill(**run, exchange=adapter_for(sim), page_size=499)
    assert first.bars == {"BTCUSDT": 1440, "ETHUSDT": 1440}
    assert first.pages == 2 * 3  # 1440 minutes in pages of 499
    stored = bars.minute_bars("BTCUSDT", start, end)
    assert len(stored) == 1440 and {b.source for b in stored} == {MinuteBar.KLINES}
    for bar, real in zip(stored, crash_day("BTCUSDT"), strict=True):
        assert bars.to_ms(bar.open_time) == int(real["open_time"])
        assert (bar.open, bar.high, bar.low, bar.close) == tuple(D(real[c]) for c in ("open", "high", "low", "close"))

    again = bars.backfill(**run, exchange=adapter_for(sim), page_size=1500)
    assert again.bars == first.bars and again.pages == 2
    assert MinuteBar.objects.count() == 2880
    low = MinuteBar.objects.filter(symbol="ETHUSDT").order_by("low").first()
    assert (low.low, low.open_time) == (D("1888"), datetime(2021, 5, 19, 13, 10, tzinfo=UTC))


@pytest.mark.django_db
def test_backfill_waits_out_a_429_and_paces_itself_on_weight(sim):
    sim.call(lambda s: s.apply_fault(FaultSpec("http429", count=1, retry_after=1)))
    slept: list[float] = []
    result = bars.backfill(
        symbols=["ETHUSDT"],
        start_ms=bars.to_ms(CRASH),
        end_ms=bars.to_ms(CRASH + timedelta(hours=3)),
        page_size=100,
        weight_share=0.0001,  # any weight used this minute is past the share: wait after each page
        exchange=adapter_for(sim),
        sleep=slept.append,
    )
    assert result.rate_limited == 1 and slept[0] == 1.0  # Retry-After
    assert result.bars == {"ETHUSDT": 180} and result.pages == 2  # 100 + 80: the second page is the last
    assert len(slept) == 2 and 0 < slept[1] <= 60.5  # one wait for the next minute, between the pages
    assert MinuteBar.objects.filter(symbol="ETHUSDT").count() == 180


@pytest.mark.django_db
def test_backfill_keeps_only_closed_bars_of_a_synthesized_symbol(sim):
    now = datetime.now(UTC)
    start = now - timedelta(minutes=30)
    result = bars.backfill(
        symbols=["SYN000USDT"], start_ms=bars.to_ms(start), end_ms=bars.to_ms(now) + 120_000, exchange=adapter_for(sim)
    )
    rows = bars.minute_bars("SYN000USDT", start - timedelta(minutes=1), now + timedelta(minutes=2))
    assert result.bars["SYN000USDT"] == len(rows) >= 29
    assert all(bars.to_ms(b.open_time) + 60_000 <= bars.to_ms(now) + 1 for b in rows)  # no bar still open
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in rows)


@pytest.mark.django_db
def test_the_command_backfills_with_a_summary(sim, settings):
    settings.BINANCE_FUTURES_REST_URL = sim.base_url
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "backfill_klines", "--symbols", "btcusdt", "--end", "2021-05-19T12:00", "--days", "0.5", stdout=out, stderr=err
    )
    assert "BTCUSDT: 720 bars" in out.getvalue()
    assert (
        MinuteBar.objects.filter(symbol="BTCUSDT", open_time__lt=datetime(2021, 5, 19, 12, tzinfo=UTC)).count() == 720
    )
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--days"):
        call_command("backfill_klines", "--symbols", "BTCUSDT", "--days", "0", stdout=out)
    with pytest.raises(CommandError, match="--end"):
        call_command("backfill_klines", "--symbols", "BTCUSDT", "--end", "tomorrow", stdout=out)
    with pytest.raises(CommandError, match="refused every symbol"):
        call_command("backfill_klines", "--symbols", "NOPEUSDT", "--days", "1", stdout=out, stderr=err)
    # One unknown symbol does not stop the others.
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "backfill_klines", "--symbols", "NOPEUSDT", "ETHUSDT", "--end", "2021-05-19T01:00", "--days", "0.01",
        stdout=out, stderr=err,
    )  # fmt: skip
    assert "NOPEUSDT: refused by the exchange: [-1121] Invalid symbol." in err.getvalue()
    assert "ETHUSDT: 15 bars" in out.getvalue()  # 00:45 .. 00:59: the start minute (00:45:36) included


@pytest.mark.django_db
def test_daily_refresh_task_and_its_beat_row(sim, settings):
    from marketdata.tasks import refresh_klines_task

    row = PeriodicTask.objects.get(name="Market history: daily klines refresh")
    assert row.task == "marketdata.tasks.refresh_klines_task" and row.enabled
    assert (row.crontab.hour, row.crontab.minute, str(row.crontab.timezone)) == ("0", "15", "UTC")
    settings.BINANCE_FUTURES_REST_URL = sim.base_url
    bars.write_mark_bars([("SYN000USDT", bars.to_ms(datetime.now(UTC)) - 3_600_000, D(1), D(1), D(1), D(1))])
    bars.write_mark_bars([("SYN000USDT", bars.to_ms(datetime.now(UTC)) - 3 * 86_400_000, D(1), D(1), D(1), D(1))])
    written = refresh_klines_task(days=0.1, keep_days=2)  # the symbols the desk has bars of (no Symbol rows here)
    assert written["SYN000USDT"] >= 140
    assert not MinuteBar.objects.filter(open_time__lt=datetime.now(UTC) - timedelta(days=2)).exists()  # retention


# --------------------------------------------------------------------------- bars from marks


def test_bars_from_marks_open_high_low_close():
    book = bars.MarkBars()
    assert book.add({"BTCUSDT": (D("100"), T0 + 1_000), "ETHUSDT": (D("10"), T0 + 2_000)}) == []
    assert book.add({"BTCUSDT": (D("104"), T0 + 20_000)}) == []
    assert book.add({"BTCUSDT": (D("97"), T0 + 40_000), "ETHUSDT": (D("11"), T0 + 41_000)}) == []
    assert book.add({"BTCUSDT": (D("99"), T0 + 59_000)}) == []
    assert book.add({"BTCUSDT": (D("98"), T0 - 5_000)}) == []  # out of order: that minute is gone
    closed = book.add({"BTCUSDT": (D("101"), T0 + 61_000)})  # ETHUSDT quiet: its minute closes too
    assert sorted(closed) == [
        ("BTCUSDT", T0, D("100"), D("104"), D("97"), D("99")),
        ("ETHUSDT", T0, D("10"), D("11"), D("10"), D("11")),
    ]
    assert book.add({"BTCUSDT": (D("102"), T0 + 120_000)}) == [
        ("BTCUSDT", T0 + 60_000, D("101"), D("101"), D("101"), D("101"))
    ]


def _stream_minute(sink: DjangoSink) -> None:
    async def run():
        await sink.marks_changed({"BTCUSDT": (D("43000.5"), T0 + 500)})
        await sink.marks_changed({"BTCUSDT": (D("43100"), T0 + 20_000)})
        await sink.marks_changed({"BTCUSDT": (D("42900.25"), T0 + 40_000)})
        await sink.marks_changed({"BTCUSDT": (D("43050"), T0 + 59_500)})
        await sink.marks_changed({"BTCUSDT": (D("43060"), T0 + 60_500)})  # the next minute: the first closes

    asyncio.run(run())


def _assert_the_minute_written() -> None:
    bar = MinuteBar.objects.get(symbol="BTCUSDT", open_time=bars.to_utc(T0))
    assert (bar.open, bar.high, bar.low, bar.close, bar.source) == (
        D("43000.5"),
        D("43100"),
        D("42900.25"),
        D("43050"),
        MinuteBar.MARKS,
    )
    assert MinuteBar.objects.count() == 1  # the open minute is not written


@pytest.mark.django_db(transaction=True)
def test_the_sink_writes_the_closed_minutes_bars():
    sink = DjangoSink()
    _stream_minute(sink)
    assert sink.drain(30)
    _assert_the_minute_written()
    # A kline of the same minute is the exchange's; a later marks bar leaves it alone.
    bars.upsert_klines("BTCUSDT", [[T0, "43000", "43200", "42800", "43010", "1", T0 + 59_999]])
    bars.write_mark_bars([("BTCUSDT", T0, D(1), D(1), D(1), D(1))])
    bar = MinuteBar.objects.get(symbol="BTCUSDT", open_time=bars.to_utc(T0))
    assert (bar.high, bar.source) == (D("43200"), MinuteBar.KLINES)


@pytest.mark.django_db(transaction=True)
def test_the_sink_process_writes_the_closed_minutes_bars(settings):
    from django.db import connection

    from conftest import require_service

    if connection.vendor == "sqlite":
        require_service("DATABASE_URL")  # a child process cannot open an in-memory test database
    if not settings.REDIS_URL:
        require_service("REDIS_URL")
    sink = DjangoSink(process=True)
    try:
        _stream_minute(sink)
        assert sink.drain(60)
        _assert_the_minute_written()
    finally:
        sink._work.close()


# --------------------------------------------------------------------------- selectors


@pytest.mark.django_db
def test_closes_matrix_and_coverage():
    bars.load_bundled(["BTCUSDT", "ETHUSDT"], start=CRASH - timedelta(days=2), end=CRASH)
    cover = bars.coverage()
    assert set(cover) == {"BTCUSDT", "ETHUSDT"}
    assert cover["BTCUSDT"].count == 2880 and cover["BTCUSDT"].first == CRASH - timedelta(days=2)
    assert cover["BTCUSDT"].last == CRASH - timedelta(minutes=1)

    minute = bars.closes(["BTCUSDT", "SOLUSDT"], CRASH - timedelta(minutes=3), CRASH)
    assert minute["SOLUSDT"] == [] and len(minute["BTCUSDT"]) == 3
    daily = bars.closes(["ETHUSDT"], CRASH - timedelta(days=2), CRASH, interval="1d")["ETHUSDT"]
    assert [at for at, _ in daily] == [CRASH - timedelta(days=2), CRASH - timedelta(days=1)]
    last_minute = bars.minute_bars("ETHUSDT", CRASH - timedelta(minutes=1), CRASH)[0]
    assert daily[-1][1] == last_minute.close and isinstance(daily[-1][1], D)

    matrix = bars.close_matrix(["BTCUSDT", "ETHUSDT", "SOLUSDT"], CRASH - timedelta(days=2), CRASH, interval="1h")
    assert matrix.closes.shape == (48, 3) and matrix.times_ms[0] == bars.to_ms(CRASH - timedelta(days=2))
    assert matrix.present[:, :2].all() and not matrix.present[:, 2].any() and matrix.first_index("SOLUSDT") is None
    assert matrix.closes[-1, 0] == float(bars.closes(["BTCUSDT"], CRASH - timedelta(hours=1), CRASH)["BTCUSDT"][-1][1])
    with pytest.raises(ValueError, match="interval"):
        bars.closes(["BTCUSDT"], CRASH, CRASH, interval="2m")


@pytest.mark.django_db
def test_close_matrix_carries_a_gap_forward():
    h = 3_600_000
    t = bars.to_ms(CRASH)
    for hour, price in ((0, "10"), (2, "12")):
        bars.write_mark_bars([("XUSDT", t + hour * h, D(price), D(price), D(price), D(price))])
    bars.write_mark_bars([("YUSDT", t + hour * h, D(5), D(5), D(5), D(5)) for hour in (1, 2)])
    matrix = bars.close_matrix(["XUSDT", "YUSDT"], CRASH, CRASH + timedelta(hours=3), interval="1h")
    assert matrix.closes[:, 0].tolist() == [10.0, 10.0, 12.0]
    assert matrix.present[:, 0].tolist() == [True, False, True]
    assert matrix.first_index("YUSDT") == 1 and matrix.closes[1:, 1].tolist() == [5.0, 5.0]


@pytest.mark.django_db
@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "1d"])
def test_close_matrix_agrees_with_the_exact_closes(interval):
    start = CRASH - timedelta(days=2)
    bars.load_bundled(["BTCUSDT", "ETHUSDT"], start=start, end=CRASH + timedelta(hours=14))
    matrix = bars.close_matrix(["ETHUSDT", "BTCUSDT"], start, CRASH + timedelta(days=1), interval=interval)
    exact = bars.closes(["ETHUSDT", "BTCUSDT"], start, CRASH + timedelta(days=1), interval=interval)
    assert matrix.symbols == ["ETHUSDT", "BTCUSDT"] and matrix.present.all()
    for n, symbol in enumerate(matrix.symbols):
        assert matrix.times_ms.tolist() == [bars.to_ms(at) for at, _ in exact[symbol]]
        assert matrix.closes[:, n].tolist() == [float(c) for _, c in exact[symbol]]
