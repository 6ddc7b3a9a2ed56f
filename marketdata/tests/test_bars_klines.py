"""GET /fapi/v1/klines on the simulator, through the real python-binance client: Binance's shape,
the bundled real bars, the synthesized walk of other symbols, weight by limit, Binance's errors.
No database."""

from __future__ import annotations

import asyncio
import csv
import time
from decimal import Decimal
from pathlib import Path

import pytest
from binance.async_client import AsyncClient
from binance.exceptions import BinanceAPIException

from marketdata.simulator import SimulatorThread, build_config
from marketdata.simulator.klines import weight

DATA = Path(__file__).resolve().parents[1] / "data"
CRASH_DAY_MS = 1_621_382_400_000  # 2021-05-19 00:00 UTC
ACCOUNTS = {"accounts": [{"api_key": "k", "api_secret": "s", "wallet": {"USDT": "1000"}}]}


def config(seed: int = 7):
    return build_config(
        accounts=ACCOUNTS, marks={"SOLUSDT": "170"}, synthetic_symbols=2, seed=seed, tick_interval_s=0.2
    )


@pytest.fixture(scope="module")
def sim():
    with SimulatorThread(config()) as thread:
        yield thread


def call(sim, **params):
    """(rows, X-MBX-USED-WEIGHT-1M) of one klines request."""

    async def run():
        client = AsyncClient("", "")
        client.FUTURES_URL = f"{sim.base_url}/fapi"
        try:
            rows = await client.futures_klines(**params)
            return rows, int(client.response.headers["X-MBX-USED-WEIGHT-1M"])
        finally:
            await client.close_connection()

    return asyncio.run(run())


def crash_rows(symbol: str) -> list[dict]:
    with (DATA / f"binance_spot_{symbol}_1m_2021-05-19_crashday.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_bundled_bars_in_binances_shape(sim):
    rows, _ = call(sim, symbol="BTCUSDT", interval="1m", startTime=CRASH_DAY_MS, limit=1440)
    assert len(rows) == 1440
    first = rows[0]
    # [open time, o, h, l, c, volume, close time, quote volume, trades, taker base, taker quote, ignore]
    assert len(first) == 12 and first[0] == CRASH_DAY_MS and first[6] == CRASH_DAY_MS + 59_999
    assert all(isinstance(first[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
    assert isinstance(first[8], int)
    for row, real in zip(rows, crash_rows("BTCUSDT"), strict=True):
        assert row[0] == int(real["open_time"])
        assert [Decimal(v) for v in row[1:5]] == [Decimal(real[c]) for c in ("open", "high", "low", "close")]
        assert Decimal(row[5]) == Decimal(real["volume"])
    assert first[1] == "42849.78" and rows[1][4] == "42693.55"  # at the price precision (2)


def test_daily_bar_of_the_crash_and_end_time_only(sim):
    rows, _ = call(sim, symbol="ETHUSDT", interval="1d", startTime=CRASH_DAY_MS, endTime=CRASH_DAY_MS, limit=5)
    assert len(rows) == 1
    real = crash_rows("ETHUSDT")
    assert rows[0][1] == real[0]["open"] and rows[0][4] == real[-1]["close"]
    assert Decimal(rows[0][3]) == Decimal("1888.00")  # the day's low, 13:10 UTC
    assert Decimal(rows[0][2]) == max(Decimal(r["high"]) for r in real)
    # endTime alone: the `limit` bars up to it, oldest first
    rows, _ = call(sim, symbol="BTCUSDT", interval="1m", endTime=CRASH_DAY_MS + 59 * 60_000, limit=3)
    assert [r[0] for r in rows] == [CRASH_DAY_MS + m * 60_000 for m in (57, 58, 59)]
    # 1h buckets aggregate the hour's minutes
    rows, _ = call(sim, symbol="BTCUSDT", interval="1h", startTime=CRASH_DAY_MS + 13 * 3_600_000, limit=1)
    hour = crash_rows("BTCUSDT")[13 * 60 : 14 * 60]
    assert Decimal(rows[0][3]) == min(Decimal(r["low"]) for r in hour) == Decimal("30000")


def test_outside_the_bundle_a_bundled_symbol_has_no_bars(sim):
    rows, _ = call(sim, symbol="BTCUSDT", interval="1m", startTime=1_500_000_000_000, endTime=1_500_100_000_000)
    assert rows == []


def test_other_symbols_walk_to_their_initial_mark_deterministically(sim):
    now = int(time.time() * 1000)
    old = now - 30 * 86_400_000
    rows, _ = call(sim, symbol="SYN001USDT", interval="1m", startTime=old, limit=1000)
    again, _ = call(sim, symbol="SYN001USDT", interval="1m", startTime=old, limit=1000)
    assert rows == again and len(rows) == 1000
    for row in rows:
        o, h, lo, c = (Decimal(v) for v in row[1:5])
        assert lo <= min(o, c) <= max(o, c) <= h and lo > 0
    assert all(b[1] == a[4] for a, b in zip(rows, rows[1:], strict=False))  # each opens at the last close
    # Another simulator with the same seed tells the same history.
    with SimulatorThread(config()) as other:
        assert call(other, symbol="SYN001USDT", interval="1m", startTime=old, limit=1000)[0] == rows
    # The walk ends at the symbol's mark when the simulator started: SOLUSDT's is the --marks 170.
    recent, _ = call(sim, symbol="SOLUSDT", interval="1m", limit=3)
    assert recent[-1][4] == "170.00"  # the minute in progress: the recorded mark
    assert recent[-1][0] <= now < recent[-1][6] + 60_000


@pytest.mark.parametrize(("limit", "expected"), [(5, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10)])
def test_weight_depends_on_limit(sim, limit, expected):
    assert weight(limit) == expected
    weight_before = call(sim, symbol="BTCUSDT", interval="1m", startTime=CRASH_DAY_MS, limit=1)[1]
    rows, used = call(sim, symbol="BTCUSDT", interval="1m", startTime=CRASH_DAY_MS, limit=limit)
    assert len(rows) == limit
    if used > weight_before:  # not across a minute boundary
        assert used - weight_before == expected


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"interval": "1m"}, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        ({"symbol": "BTCUSDT"}, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120, "Invalid interval."),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": 1501},
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        ),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": 0}, -1130, "Data sent for parameter 'limit' is not valid."),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": "yesterday"},
            -1100,
            "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'.",
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": 2, "endTime": 1},
            -1023,
            "Start time is greater than end time.",
        ),
    ],
)
def test_bad_parameters_get_binances_errors(sim, params, code, message):
    with pytest.raises(BinanceAPIException) as caught:
        call(sim, **params)
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (400, code, message)


def test_a_start_time_before_the_data_answers_the_first_bars_that_exist(sim):
    rows, _ = call(sim, symbol="BTCUSDT", interval="1m", startTime=1_600_000_000_000, limit=2)
    assert [r[0] for r in rows] == [1_618_951_320_000, 1_618_951_380_000]  # 2021-04-20 20:42 UTC, the first
    # Over the real maintenance gap (no bars from 04:01 to 08:44 UTC on 2021-04-25) a page is still filled.
    before_gap = 1_619_322_960_000  # 03:56
    rows, _ = call(sim, symbol="BTCUSDT", interval="1m", startTime=before_gap, limit=10)
    times = [r[0] for r in rows]
    assert len(times) == 10 and times[4] == before_gap + 4 * 60_000 and times[5] == 1_619_340_300_000  # 04:00, 08:45
