"""Every asset (issue 17 item 3) end to end against the simulator: GET /fapi/v1/assetIndex in
Binance's shape; every wallet asset from REST and ACCOUNT_UPDATE into the book; a switch to
multi-assets mode re-values the account's margin with the haircuts."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from marketdata.exchange import BinanceFutures
from marketdata.simulator import SimulatorThread, build_config
from marketdata.streams import AccountSpec, StreamEngine
from marketdata.tests.test_streams import RecordingSink, wait_until
from positions.collateral import parse_asset_index

KEY, SECRET = "assets-key", "assets-secret"
ACCOUNTS = {
    "accounts": [
        {
            "api_key": KEY,
            "api_secret": SECRET,
            "position_mode": "one-way",
            "wallet": {"USDT": "1000", "BTC": "0.5", "BNB": "10"},
            "positions": [],
        }
    ]
}


@pytest.fixture
def sim():
    marks = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600"}
    with SimulatorThread(build_config(accounts=ACCOUNTS, marks=marks, tick_interval_s=1.0)) as thread:
        yield thread


def _adapter(sim) -> BinanceFutures:
    return BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url)


def test_the_simulator_serves_the_asset_index_in_binances_shape(sim):
    async def go():
        async with _adapter(sim) as ex:
            return await ex.asset_index(), await ex.asset_index("BTCUSD")

    rows, one = asyncio.run(go())
    by_symbol = {r["symbol"]: r for r in rows}
    assert {"BTCUSD", "BNBUSD", "ETHUSD", "USDCUSD"} <= set(by_symbol) and "USDTUSD" not in by_symbol
    btc = by_symbol["BTCUSD"]
    assert set(btc) == {
        "symbol", "time", "index", "bidBuffer", "askBuffer", "bidRate", "askRate",
        "autoExchangeBidBuffer", "autoExchangeAskBuffer", "autoExchangeBidRate", "autoExchangeAskRate",
    }  # fmt: skip
    assert btc["index"] == "60000.00000000" and btc["bidBuffer"] == "0.05000000"
    assert btc["bidRate"] == "57000.00000000" and btc["askRate"] == "63000.00000000"
    assert one[0]["symbol"] == "BTCUSD"
    assert parse_asset_index(rows)["BNB"].bid_rate == D("540")


def test_every_wallet_asset_reaches_the_book_and_multi_assets_mode_values_them_with_haircuts(sim):
    async def go():
        engine = StreamEngine(
            accounts=[AccountSpec(1, "assets", KEY, SECRET)],
            rest_url=sim.base_url,
            ws_url=sim.ws_url,
            sink=RecordingSink(),
            stale_after_s=2.0,
            flush_interval_s=0.2,
        )
        engine.wallets.refresh_s = 0.5
        engine.workers.append(engine.wallets.run)
        await engine.start()
        try:
            assert await wait_until(lambda: engine.user_feeds[1].connected)
            risk = engine.book.account(1)
            single = (risk.wallet_balance, {a: f.wallet_balance for a, f in risk.per_asset.items() if f})
            async with _adapter(sim) as ex:
                await ex.change_multi_assets_mode(enabled=True)
            # 1000 USDT + 0.5 BTC x 57000 + 10 BNB x 540 = 34900 USD of collateral
            assert await wait_until(lambda: engine.book.account(1).wallet_balance == D("34900"), timeout_s=15)
            shown = engine.wallets.account_assets(1)
            # A fee paid in BNB: the ACCOUNT_UPDATE's BNB row moves the BNB pool and the collateral.
            await engine._on_user_event(
                1,
                engine.user_feeds[1],
                {
                    "e": "ACCOUNT_UPDATE",
                    "E": 1,
                    "T": 1,
                    "a": {"m": "ORDER", "B": [{"a": "BNB", "wb": "9", "cw": "9", "bc": "0"}], "P": []},
                },
            )
            after = engine.book.account(1)
            return single, shown, after
        finally:
            await engine.stop()

    (wallet, per_asset), shown, after = asyncio.run(go())
    assert per_asset == {"USDT": D("1000"), "BTC": D("0.5"), "BNB": D("10")}
    assert wallet == D("1000")  # single-asset mode: BTC and BNB are no margin
    assert shown["multi_assets"] is True and D(shown["total"]) == D("34900")
    assert D({a["asset"]: a["haircut"] for a in shown["assets"]}["BNB"]) == D("0.1")
    assert after.per_asset["BNB"].wallet_balance == D("9") and after.wallet_balance == D("34360")  # -540
