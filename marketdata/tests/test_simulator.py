"""The exchange simulator, driven through the real python-binance client over loopback.

One simulator serves the whole module (SimulatorThread on port 0). Each test
uses its own account or symbol and sets the marks it depends on. The one
exception is the cross liquidation test, which consumes the "liq" account that
earlier tests read (pytest keeps file order). No database: plain tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from binance.async_client import AsyncClient
from binance.exceptions import BinanceAPIException
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from binance.ws.streams import BinanceSocketManager

from marketdata.simulator import ConfigError, SimulatorThread, build_config, load_bars
from marketdata.simulator.auth import check_signature, hmac_hex
from marketdata.simulator.errors import ApiError
from marketdata.simulator.market import Market
from marketdata.simulator.replay import ReplayPath
from marketdata.simulator.risk import pools
from marketdata.simulator.server import Simulator
from positions.margin import liquidation_price

DATA = Path(__file__).resolve().parents[1] / "data"
BTC_CRASH = DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv"
ETH_CRASH = DATA / "binance_spot_ETHUSDT_1m_2021-05-19_crashday.csv"
DEMO_ACCOUNTS = Path(__file__).resolve().parents[1] / "fixtures" / "demo_accounts.yaml"

ACCOUNTS = {
    "accounts": [
        # Liquidation: demo account 1 (cross liquidation price 33,132.53).
        {
            "api_key": "liq",
            "api_secret": "liq-secret",
            "wallet": {"USDT": "5000"},
            "positions": [{"symbol": "BTCUSDT", "qty": "0.5", "entry_price": "43000", "leverage": 20}],
        },
        # Orders on ETHUSDT and SOLUSDT, starting flat.
        {"api_key": "trader", "api_secret": "trader-secret", "wallet": {"USDT": "100000"}},
        {
            "api_key": "hedger",
            "api_secret": "hedger-secret",
            "position_mode": "hedge",
            "wallet": {"USDT": "30000"},
            "positions": [
                {"symbol": "BTCUSDT", "side": "LONG", "qty": "0.3", "entry_price": "42500", "leverage": 10},
                {"symbol": "BTCUSDT", "side": "SHORT", "qty": "0.1", "entry_price": "43500"},
            ],
        },
        # Isolated: liquidation price ~161.2 with its 850 isolated wallet.
        {
            "api_key": "iso",
            "api_secret": "iso-secret",
            "wallet": {"USDT": "20000"},
            "positions": [
                {
                    "symbol": "LINKUSDT",
                    "qty": "1000",
                    "entry_price": "11.5",
                    "leverage": 20,
                    "margin_type": "isolated",
                    "isolated_wallet": "600",
                }
            ],
        },
        {"api_key": "faulty", "api_secret": "faulty-secret", "wallet": {"USDT": "100000"}},
        {"api_key": "streamer", "api_secret": "streamer-secret", "wallet": {"USDT": "100000"}},
    ]
}
SECRETS = {a["api_key"]: a["api_secret"] for a in ACCOUNTS["accounts"]}
MARKS = {"BTCUSDT": "43000", "ETHUSDT": "2500", "SOLUSDT": "170", "LINKUSDT": "11.5"}


@pytest.fixture(scope="module")
def sim() -> SimulatorThread:
    config = build_config(accounts=ACCOUNTS, marks=MARKS, tick_interval_s=0.05)
    thread = SimulatorThread(config)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def no_faults_left(sim: SimulatorThread) -> None:
    yield
    control(sim, "DELETE", "/_sim/fault")


@pytest.fixture(autouse=True)
def quick_socket_exit(monkeypatch) -> None:
    # python-binance's read loop notices it should exit only between receives, which wait up
    # to TIMEOUT (10 s): an idle user socket would take 10 s to close at the end of a test.
    monkeypatch.setattr(ReconnectingWebsocket, "TIMEOUT", 0.5)


# --------------------------------------------------------------------------- helpers


def control(sim: SimulatorThread, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sim.base_url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def set_marks(sim: SimulatorThread, **marks: str) -> None:
    control(sim, "POST", "/_sim/marks", marks)


def client_for(sim: SimulatorThread, key: str, secret: str | None = None) -> AsyncClient:
    client = AsyncClient(key, secret if secret is not None else SECRETS.get(key, "x"))
    client.FUTURES_URL = sim.base_url + "/fapi"
    client.API_URL = sim.base_url + "/api"
    return client


@contextlib.asynccontextmanager
async def binance(sim: SimulatorThread, key: str, secret: str | None = None) -> AsyncIterator[AsyncClient]:
    client = client_for(sim, key, secret)
    try:
        yield client
    finally:
        await client.close_connection()


def sockets(sim: SimulatorThread, client: AsyncClient) -> BinanceSocketManager:
    manager = BinanceSocketManager(client)
    manager.FSTREAM_URL = sim.ws_url
    return manager


def run(coro_fn: Callable) -> object:
    return asyncio.run(coro_fn())


async def recv_until(socket, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(socket.recv(), max(0.01, deadline - time.monotonic()))
        if predicate(message):
            return message


def refused(call) -> BinanceAPIException:
    async def go() -> BinanceAPIException:
        try:
            await call()
        except BinanceAPIException as exc:
            return exc
        raise AssertionError("the simulator accepted the request")

    return go


# --------------------------------------------------------------------------- public REST


def test_async_client_create_pings_and_reads_server_time(sim, monkeypatch):
    monkeypatch.setattr(AsyncClient, "API_URL", sim.base_url + "/api")
    monkeypatch.setattr(AsyncClient, "FUTURES_URL", sim.base_url + "/fapi")

    async def go():
        client = await AsyncClient.create("trader", SECRETS["trader"])
        try:
            assert await client.futures_ping() == {}
            server = (await client.futures_time())["serverTime"]
            return client.timestamp_offset, server
        finally:
            await client.close_connection()

    offset, server = run(go)
    assert abs(offset) < 1000  # wall clock, not the replay clock
    assert abs(server - time.time() * 1000) < 2000


def test_exchange_info_has_binance_filters_for_btc_and_eth(sim):
    async def go():
        async with binance(sim, "trader") as client:
            return await client.futures_exchange_info()

    info = run(go)
    rows = {s["symbol"]: s for s in info["symbols"]}
    assert len(rows) == 27
    btc = {f["filterType"]: f for f in rows["BTCUSDT"]["filters"]}
    assert btc["PRICE_FILTER"]["tickSize"] == "0.10"
    assert (btc["LOT_SIZE"]["stepSize"], btc["LOT_SIZE"]["minQty"], btc["LOT_SIZE"]["maxQty"]) == (
        "0.001",
        "0.001",
        "1000",
    )
    assert btc["MARKET_LOT_SIZE"]["maxQty"] == "120"
    assert btc["MIN_NOTIONAL"]["notional"] == "100"
    assert (rows["BTCUSDT"]["pricePrecision"], rows["BTCUSDT"]["quantityPrecision"]) == (2, 3)
    eth = {f["filterType"]: f for f in rows["ETHUSDT"]["filters"]}
    assert (eth["PRICE_FILTER"]["tickSize"], eth["MARKET_LOT_SIZE"]["maxQty"], eth["MIN_NOTIONAL"]["notional"]) == (
        "0.01",
        "2000",
        "20",
    )
    for row in rows.values():
        assert row["marginAsset"] == "USDT"
        assert {f["filterType"] for f in row["filters"]} >= {
            "PRICE_FILTER",
            "LOT_SIZE",
            "MARKET_LOT_SIZE",
            "MIN_NOTIONAL",
        }


def test_premium_index_for_one_symbol_and_all(sim):
    set_marks(sim, ETHUSDT="2500")

    async def go():
        async with binance(sim, "trader") as client:
            return await client.futures_mark_price(symbol="ETHUSDT"), await client.futures_mark_price()

    one, every = run(go)
    assert one["markPrice"] == "2500.00000000"
    assert one["lastFundingRate"] == "0.00010000"
    assert one["nextFundingTime"] > one["time"]
    assert {row["symbol"] for row in every} >= {"BTCUSDT", "ETHUSDT", "WIFUSDT"}


def test_unknown_symbol_is_refused_with_1121(sim):
    async def go():
        async with binance(sim, "trader") as client:
            return await refused(lambda: client.futures_mark_price(symbol="FOOUSDT"))()

    assert run(go).code == -1121


# --------------------------------------------------------------------------- account REST


def test_leverage_bracket_is_a_list_or_one_object_with_json_numbers(sim):
    async def go():
        async with binance(sim, "trader") as client:
            return await client.futures_leverage_bracket(), await client.futures_leverage_bracket(symbol="BTCUSDT")

    every, one = run(go)
    assert isinstance(every, list) and len(every) == 27
    assert one["symbol"] == "BTCUSDT"
    first = one["brackets"][0]
    assert first["initialLeverage"] == 125 and first["notionalCap"] == 50000 and first["maintMarginRatio"] == 0.004


def test_account_v2_lists_every_symbol_and_v3_only_open_positions(sim):
    set_marks(sim, BTCUSDT="43000")

    async def go():
        async with binance(sim, "liq") as client:
            return await client.futures_account(), await client.futures_account(version=3)

    v2, v3 = run(go)
    assert v2["canTrade"] is True and v2["multiAssetsMargin"] is False
    assert len(v2["positions"]) == 27
    btc = next(p for p in v2["positions"] if p["symbol"] == "BTCUSDT")
    assert (btc["leverage"], btc["isolated"], btc["positionAmt"]) == ("20", False, "0.500")
    assert [p["symbol"] for p in v3["positions"]] == ["BTCUSDT"]
    assert "leverage" not in v3["positions"][0]
    # 0.5 × 43,000 × 0.4 % (tier 1), as strings with 8 decimals
    assert v3["totalMaintMargin"] == "86.00000000"
    assert v3["totalWalletBalance"] == "5000.00000000"
    assert v3["assets"][0]["asset"] == "USDT"


def test_balance_v3_and_v2(sim):
    set_marks(sim, BTCUSDT="43000")

    async def go():
        async with binance(sim, "liq") as client:
            return await client.futures_account_balance(), await client.futures_account_balance(version=2)

    v3, v2 = run(go)
    assert v3 == v2
    assert v3[0]["asset"] == "USDT" and v3[0]["balance"] == "5000.00000000"
    assert v3[0]["availableBalance"] == "3925.00000000"  # 5,000 − 21,500 / 20


def test_position_risk_v2_has_zero_rows_and_settings_v3_only_positions(sim):
    set_marks(sim, BTCUSDT="43000")

    async def go():
        async with binance(sim, "hedger") as client:
            return (await client.futures_position_information(version=2), await client.futures_position_information())

    v2, v3 = run(go)
    assert len(v2) == 27 * 2  # hedge mode: a LONG and a SHORT row per symbol
    eth = [r for r in v2 if r["symbol"] == "ETHUSDT"]
    assert {r["positionAmt"] for r in eth} == {"0.000"} and eth[0]["marginType"] == "cross"
    assert eth[0]["leverage"] == "20"
    assert {(r["positionSide"], r["positionAmt"]) for r in v3} == {("LONG", "0.300"), ("SHORT", "-0.100")}
    assert all("leverage" not in r and "marginType" not in r for r in v3)
    short = next(r for r in v3 if r["positionSide"] == "SHORT")
    assert short["notional"].startswith("-")


def test_symbol_config_position_mode_and_multi_assets(sim):
    async def go():
        async with binance(sim, "hedger") as client, binance(sim, "liq") as one_way:
            return (
                await client.futures_symbol_config(symbol="BTCUSDT"),
                await client.futures_get_position_mode(),
                await one_way.futures_get_position_mode(),
                await client.futures_get_multi_assets_mode(),
            )

    config, hedge_mode, one_way_mode, multi = run(go)
    assert config == [
        {
            "symbol": "BTCUSDT",
            "marginType": "CROSSED",
            "isAutoAddMargin": "false",
            "leverage": 10,
            "maxNotionalValue": "230000000",
        }
    ]
    assert hedge_mode == {"dualSidePosition": True} and one_way_mode == {"dualSidePosition": False}
    assert multi == {"multiAssetsMargin": False}


def test_liquidation_price_equals_positions_margin(sim):
    set_marks(sim, BTCUSDT="43000")
    brackets = sim.call(lambda s: s.exchange.symbols["BTCUSDT"].brackets)

    async def go():
        async with binance(sim, "liq") as liq, binance(sim, "hedger") as hedger:
            return await liq.futures_position_information(), await hedger.futures_position_information()

    one_way, hedge = run(go)
    expected = liquidation_price(
        wallet_balance=Decimal(5000), brackets=brackets, qty_both=Decimal("0.5"), entry_both=Decimal(43000)
    )
    assert Decimal(one_way[0]["liquidationPrice"]) == expected.quantize(Decimal("1e-8"))
    assert one_way[0]["liquidationPrice"] == "33132.53012048"
    # Cross hedge legs share one price, from both legs together.
    both = liquidation_price(
        wallet_balance=Decimal(30000),
        brackets=brackets,
        qty_long=Decimal("0.3"),
        entry_long=Decimal(42500),
        qty_short=Decimal("0.1"),
        entry_short=Decimal(43500),
    )
    assert {r["liquidationPrice"] for r in hedge} == {"0" if both is None else f"{both:.8f}"}


# --------------------------------------------------------------------------- orders


def test_market_order_fills_at_the_mark_and_charges_the_taker_fee(sim):
    set_marks(sim, ETHUSDT="2500")

    async def go():
        async with binance(sim, "trader") as client:
            order = await client.futures_create_order(
                symbol="ETHUSDT",
                side="BUY",
                type="MARKET",
                quantity="0.4",
                newOrderRespType="RESULT",
                newClientOrderId="mkt-1",
            )
            headers = client.response.headers
            rows = await client.futures_position_information(symbol="ETHUSDT")
            wallet = (await client.futures_account_balance())[0]["crossWalletBalance"]
            await client.futures_create_order(
                symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.4", reduceOnly="true"
            )
            return order, headers, rows, wallet

    order, headers, rows, wallet = run(go)
    assert (order["status"], order["avgPrice"], order["executedQty"], order["clientOrderId"]) == (
        "FILLED",
        "2500.0",
        "0.400",
        "mkt-1",
    )
    assert int(headers["X-MBX-ORDER-COUNT-10S"]) >= 1 and "X-MBX-ORDER-COUNT-1M" in headers
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 0
    assert rows[0]["positionAmt"] == "0.400" and rows[0]["entryPrice"] == "2500.0"
    assert Decimal(wallet) == Decimal(100000) - Decimal("0.4") * 2500 * Decimal("0.0004")


def test_limit_order_rests_then_fills_when_the_mark_crosses_it(sim):
    set_marks(sim, SOLUSDT="170")

    async def go():
        async with binance(sim, "trader") as client:
            ack = await client.futures_create_order(
                symbol="SOLUSDT", side="BUY", type="LIMIT", quantity="1.00", price="160.00", timeInForce="GTC"
            )
            resting = await client.futures_get_open_orders(symbol="SOLUSDT")
            set_marks(sim, SOLUSDT="159.5")
            after = await client.futures_get_open_orders(symbol="SOLUSDT")
            rows = await client.futures_position_information(symbol="SOLUSDT")
            await client.futures_create_order(
                symbol="SOLUSDT", side="SELL", type="MARKET", quantity="1.00", reduceOnly="true"
            )
            return ack, resting, after, rows

    ack, resting, after, rows = run(go)
    set_marks(sim, SOLUSDT="170")
    assert ack["status"] == "NEW" and ack["price"] == "160.00"
    assert [o["orderId"] for o in resting] == [ack["orderId"]]
    assert after == []
    assert rows[0]["positionAmt"] == "1.00" and rows[0]["entryPrice"] == "160.0"  # filled at its own price


def test_cancel_by_order_id_and_by_client_order_id_and_cancel_all(sim):
    set_marks(sim, ETHUSDT="2500")

    def limit(client, cid):
        return client.futures_create_order(
            symbol="ETHUSDT",
            side="BUY",
            type="LIMIT",
            quantity="0.010",
            price="2000.00",
            timeInForce="GTC",
            newClientOrderId=cid,
        )

    async def go():
        async with binance(sim, "trader") as client:
            first, _second, _third, _fourth = [await limit(client, f"c-{i}") for i in range(4)]
            by_id = await client.futures_cancel_order(symbol="ETHUSDT", orderId=first["orderId"])
            by_cid = await client.futures_cancel_order(symbol="ETHUSDT", origClientOrderId="c-1")
            again = await refused(lambda: client.futures_cancel_order(symbol="ETHUSDT", origClientOrderId="c-1"))()
            left = await client.futures_get_open_orders(symbol="ETHUSDT")
            done = await client.futures_cancel_all_open_orders(symbol="ETHUSDT")
            return by_id, by_cid, again, left, done, await client.futures_get_open_orders(symbol="ETHUSDT")

    by_id, by_cid, again, left, done, empty = run(go)
    assert by_id["status"] == by_cid["status"] == "CANCELED"
    assert by_cid["clientOrderId"] == "c-1"
    assert again.code == -2011
    assert sorted(o["clientOrderId"] for o in left) == ["c-2", "c-3"]
    assert done == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert empty == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0101"}, -1111),
        ({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.005"}, -4164),
        (
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.010",
                "price": "43000.05",
                "timeInForce": "GTC",
            },
            -1013,
        ),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "121"}, -1013),
        ({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "900"}, -2019),
        ({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010", "reduceOnly": "true"}, -2022),
        ({"symbol": "FOOUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, -1121),
        ({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET"}, -1102),
        ({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "price": "2400"}, -1102),
    ],
    ids=["precision", "min-notional", "tick", "market-lot", "margin", "reduce-only", "symbol", "no-qty", "no-tif"],
)
def test_order_is_refused_with_binances_code(sim, params, code):
    set_marks(sim, ETHUSDT="2500", BTCUSDT="43000")

    async def go():
        async with binance(sim, "trader") as client:
            return await refused(lambda: client.futures_create_order(**params))()

    error = run(go)
    assert (error.status_code, error.code) == (400, code)


def test_hedge_orders_need_a_position_side_and_cannot_over_close(sim):
    async def go():
        async with binance(sim, "hedger") as client:
            no_side = await refused(
                lambda: client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
            )()
            over = await refused(
                lambda: client.futures_create_order(
                    symbol="BTCUSDT", side="SELL", positionSide="LONG", type="MARKET", quantity="0.400"
                )
            )()
            return no_side, over

    no_side, over = run(go)
    assert no_side.code == -4061 and over.code == -2022


def test_change_leverage_answers_max_notional_and_refuses_above_the_bracket(sim):
    async def go():
        async with binance(sim, "trader") as client:
            ok = await client.futures_change_leverage(symbol="ETHUSDT", leverage=50)
            bad = await refused(lambda: client.futures_change_leverage(symbol="ETHUSDT", leverage=126))()
            config = await client.futures_symbol_config(symbol="ETHUSDT")
            await client.futures_change_leverage(symbol="ETHUSDT", leverage=20)
            return ok, bad, config

    ok, bad, config = run(go)
    assert ok == {"leverage": 50, "maxNotionalValue": "12000000", "symbol": "ETHUSDT"}
    assert bad.code == -4028
    assert config[0]["leverage"] == 50


def test_countdown_cancel_all_cancels_when_it_expires_and_zero_disarms_it(sim):
    set_marks(sim, ETHUSDT="2500")

    def limit(client):
        return client.futures_create_order(
            symbol="ETHUSDT", side="BUY", type="LIMIT", quantity="0.010", price="2000.00", timeInForce="GTC"
        )

    async def go():
        async with binance(sim, "trader") as client:
            await limit(client)
            answer = await client.futures_countdown_cancel_all(symbol="ETHUSDT", countdownTime=200)
            await asyncio.sleep(0.5)
            expired = await client.futures_get_open_orders(symbol="ETHUSDT")
            await limit(client)
            await client.futures_countdown_cancel_all(symbol="ETHUSDT", countdownTime=200)
            await client.futures_countdown_cancel_all(symbol="ETHUSDT", countdownTime=0)
            await asyncio.sleep(0.5)
            kept = await client.futures_get_open_orders(symbol="ETHUSDT")
            await client.futures_cancel_all_open_orders(symbol="ETHUSDT")
            return answer, expired, kept

    answer, expired, kept = run(go)
    assert answer == {"symbol": "ETHUSDT", "countdownTime": "200"}
    assert expired == [] and len(kept) == 1


def test_conditional_orders_go_to_the_algo_service_and_stay_open(sim):
    set_marks(sim, ETHUSDT="2500")

    async def go():
        async with binance(sim, "trader") as client:
            algo = await client.futures_create_order(
                symbol="ETHUSDT", side="SELL", type="STOP_MARKET", quantity="0.010", stopPrice="2000.00"
            )
            listed = await client.futures_get_open_orders(symbol="ETHUSDT", conditional=True)
            cancelled = await client.futures_cancel_order(symbol="ETHUSDT", algoId=algo["algoId"])
            return algo, listed, cancelled, await client.futures_get_open_algo_orders()

    algo, listed, cancelled, after = run(go)
    assert (algo["algoType"], algo["orderType"], algo["triggerPrice"], algo["algoStatus"]) == (
        "CONDITIONAL",
        "STOP_MARKET",
        "2000.00",
        "NEW",
    )
    assert [o["algoId"] for o in listed] == [algo["algoId"]]
    assert cancelled["algoId"] == algo["algoId"] and after == []


def test_listen_key_create_keepalive_and_close(sim):
    async def go():
        async with binance(sim, "faulty") as client:
            key = await client.futures_stream_get_listen_key()
            same = await client.futures_stream_get_listen_key()
            kept = await client.futures_stream_keepalive(key)
            closed = await client.futures_stream_close(key)
            gone = await refused(lambda: client.futures_stream_keepalive(key))()
            return key, same, kept, closed, gone

    key, same, kept, closed, gone = run(go)
    assert key == same and kept == {"listenKey": key} and closed == {}
    assert gone.code == -1125


# --------------------------------------------------------------------------- authentication


def test_bad_signature_is_refused_with_1022(sim):
    async def go():
        async with binance(sim, "trader", secret="wrong-secret") as client:
            return await refused(client.futures_account)()

    error = run(go)
    assert (error.status_code, error.code, error.message) == (400, -1022, "Signature for this request is not valid.")


def test_stale_timestamp_is_refused_with_1021(sim):
    async def go():
        async with binance(sim, "trader") as client:
            client.timestamp_offset = -15_000  # older than python-binance's 10 s recvWindow
            return await refused(client.futures_account)()

    assert run(go).code == -1021


def test_unknown_api_key_is_refused_with_401_and_2015(sim):
    async def go():
        async with binance(sim, "nobody") as client:
            return await refused(client.futures_account)(), await refused(client.futures_stream_get_listen_key)()

    signed, stream = run(go)
    assert (signed.status_code, signed.code) == (401, -2015)
    assert (stream.status_code, stream.code) == (401, -2015)


def test_signature_covers_raw_query_then_body():
    # Binance's documented vector, sent as query "symbol=...&timeInForce=GTC" + body "quantity=...".
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    signature = hmac_hex(secret, query + body)
    assert signature == "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    check_signature(raw_query=query, raw_body=f"{body}&signature={signature}", secret=secret)
    with pytest.raises(ApiError) as caught:
        check_signature(raw_query=query, raw_body=f"{body}&signature={'0' * 64}", secret=secret)
    assert caught.value.code == -1022
    # The USDⓈ-M docs' vector, everything in the query string (reference §2.1).
    futures = (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
        "&timestamp=1591702613943"
    )
    futures_sig = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    check_signature(
        raw_query=f"{futures}&signature={futures_sig}",
        raw_body="",
        secret="2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
    )


# --------------------------------------------------------------------------- WebSocket


def test_market_socket_receives_all_mark_price_frames(sim):
    set_marks(sim, ETHUSDT="2500")

    async def go():
        async with binance(sim, "streamer") as client:
            manager = sockets(sim, client)
            async with manager.all_mark_price_socket() as every, manager.symbol_mark_price_socket("ETHUSDT") as eth:
                return await every.recv(), await eth.recv()

    every, eth = run(go)
    assert every["stream"] == "!markPrice@arr@1s"
    row = next(r for r in every["data"] if r["s"] == "ETHUSDT")
    assert row["e"] == "markPriceUpdate" and row["p"] == "2500.00000000" and row["r"] == "0.00010000"
    assert abs(row["E"] - time.time() * 1000) < 2000  # E is the wall-clock send time
    assert eth["stream"] == "ethusdt@markPrice@1s" and eth["data"]["s"] == "ETHUSDT"


def test_legacy_stream_path_and_subscribe(sim):
    async def go():
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(sim.ws_url + "stream?streams=btcusdt@markPrice@1s") as ws,
        ):
            first = json.loads((await ws.receive(timeout=5)).data)
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["!markPrice@arr@1s"], "id": 7}))
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            replies = []
            while len(replies) < 2:
                message = json.loads((await ws.receive(timeout=5)).data)
                if "id" in message:
                    replies.append(message)
            return first, replies

    first, replies = run(go)
    assert first["stream"] == "btcusdt@markPrice@1s"
    assert replies == [{"result": None, "id": 7}, {"result": ["btcusdt@markPrice@1s", "!markPrice@arr@1s"], "id": 8}]


def test_user_socket_receives_order_and_account_updates(sim):
    set_marks(sim, ETHUSDT="2500")

    async def go():
        async with binance(sim, "streamer") as client, sockets(sim, client).futures_user_socket() as user:
            await client.futures_create_order(
                symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="ws-1"
            )
            new = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
            trade = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
            account = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            await client.futures_create_order(
                symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly="true"
            )
            return new, trade, account

    new, trade, account = run(go)
    assert (new["o"]["x"], new["o"]["X"], new["o"]["c"]) == ("NEW", "NEW", "ws-1")
    assert (trade["o"]["x"], trade["o"]["X"], trade["o"]["l"], trade["o"]["L"]) == (
        "TRADE",
        "FILLED",
        "0.010",
        "2500.0",
    )
    assert set(trade["o"]) >= {
        "s",
        "c",
        "S",
        "o",
        "f",
        "q",
        "p",
        "ap",
        "sp",
        "x",
        "X",
        "i",
        "l",
        "z",
        "L",
        "T",
        "t",
        "m",
        "R",
        "ps",
        "rp",
        "n",
        "N",
    }
    assert account["a"]["m"] == "ORDER"
    assert account["a"]["B"][0]["a"] == "USDT" and set(account["a"]["B"][0]) == {"a", "wb", "cw", "bc"}
    position = account["a"]["P"][0]
    assert (position["s"], position["pa"], position["mt"], position["ps"]) == ("ETHUSDT", "0.010", "cross", "BOTH")


def test_cross_position_gets_a_margin_call_then_is_liquidated_past_its_liquidation_price(sim):
    set_marks(sim, BTCUSDT="43000")

    async def go():
        async with binance(sim, "liq") as client, sockets(sim, client).futures_user_socket() as user:
            lp = Decimal((await client.futures_position_information())[0]["liquidationPrice"])
            set_marks(sim, BTCUSDT="33150")  # margin ratio ~0.84, above the 0.8 call level
            call = await recv_until(user, lambda m: m.get("e") == "MARGIN_CALL")
            set_marks(sim, BTCUSDT=str((lp - 20).quantize(Decimal("0.01"))))
            fill = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
            update = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            return (
                lp,
                call,
                fill,
                update,
                await client.futures_position_information(),
                await client.futures_account_balance(),
            )

    lp, call, fill, update, positions, balance = run(go)
    assert call["cw"] == "5000.00000000" and call["p"][0]["mt"] == "CROSSED" and call["p"][0]["s"] == "BTCUSDT"
    o = fill["o"]
    assert (o["o"], o["x"], o["X"], o["S"], o["z"]) == ("LIQUIDATION", "TRADE", "FILLED", "SELL", "0.500")
    assert o["c"].startswith("autoclose-")
    assert update["a"]["P"][0]["pa"] == "0.000"
    assert positions == []
    assert Decimal("0") <= Decimal(balance[0]["balance"]) < Decimal(100)  # lost almost all of 5,000
    assert lp == Decimal("33132.53012048")


def test_isolated_position_is_liquidated_alone_and_only_loses_its_isolated_wallet(sim):
    set_marks(sim, LINKUSDT="11.5")

    async def go():
        async with binance(sim, "iso") as client:
            before = await client.futures_position_information(symbol="LINKUSDT")
            lp = Decimal(before[0]["liquidationPrice"])
            set_marks(sim, LINKUSDT=str(lp - Decimal("0.01")))
            return before, await client.futures_position_information(), await client.futures_account_balance()

    before, after, balance = run(go)
    brackets = sim.call(lambda s: s.exchange.symbols["LINKUSDT"].brackets)
    expected = liquidation_price(
        wallet_balance=Decimal(600), brackets=brackets, qty_both=Decimal(1000), entry_both=Decimal("11.5")
    )
    assert before[0]["liquidationPrice"] == f"{expected:.8f}"
    assert before[0]["isolatedWallet"] == "600.00000000"
    assert after == []
    assert Decimal(20000) <= Decimal(balance[0]["balance"]) < Decimal(20600)


# --------------------------------------------------------------------------- faults


def test_fault_drop_closes_sockets_with_going_away(sim):
    async def go():
        async with binance(sim, "streamer") as client, sockets(sim, client).all_mark_price_socket() as every:
            await every.recv()
            control(sim, "POST", "/_sim/fault", {"mode": "drop"})
            error = await recv_until(every, lambda m: m.get("e") == "error")
            resumed = await recv_until(every, lambda m: m.get("stream") == "!markPrice@arr@1s")  # it reconnects
            return error, resumed

    error, resumed = run(go)
    assert error["type"] == "ConnectionClosedOK" and "1001" in error["m"]
    assert resumed["data"]


def test_fault_silent_stops_frames_but_keeps_the_socket(sim):
    async def go():
        async with binance(sim, "streamer") as client, sockets(sim, client).all_mark_price_socket() as every:
            await every.recv()
            control(sim, "POST", "/_sim/fault", {"mode": "silent", "seconds": 1.0})
            await asyncio.sleep(0.15)  # let frames already on the wire arrive, then forget them
            while not every._queue.empty():
                every._queue.get_nowait()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(every.recv(), 0.4)
            return await asyncio.wait_for(every.recv(), 2)

    assert run(go)["stream"] == "!markPrice@arr@1s"  # frames resume on the same socket


@pytest.mark.parametrize("status", [429, 418])
def test_fault_http_status_with_retry_after(sim, status):
    control(sim, "POST", "/_sim/fault", {"mode": f"http{status}", "count": 1, "retry_after": 7})

    async def go():
        async with binance(sim, "trader") as client:
            error = await refused(client.futures_ping)()
            headers = client.response.headers
            return error, headers, await client.futures_ping()

    error, headers, after = run(go)
    assert (error.status_code, error.code) == (status, -1003)
    assert headers["Retry-After"] == "7"
    assert after == {}


@pytest.mark.parametrize("execute", [True, False])
def test_fault_http503_answers_unknown_and_may_still_execute(sim, execute):
    set_marks(sim, ETHUSDT="2500")
    control(sim, "POST", "/_sim/fault", {"mode": "http503", "count": 1, "execute": execute})

    async def go():
        async with binance(sim, "faulty") as client:
            error = await refused(
                lambda: client.futures_create_order(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.010")
            )()
            rows = await client.futures_position_information(symbol="ETHUSDT")
            if rows:
                await client.futures_create_order(
                    symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly="true"
                )
            return error, rows

    error, rows = run(go)
    assert (error.status_code, error.message) == (503, "Unknown error, please check your request or try again later.")
    assert [r["positionAmt"] for r in rows] == (["0.010"] if execute else [])


def test_fault_malformed_sends_unparseable_frames(sim):
    async def go():
        async with binance(sim, "streamer") as client, sockets(sim, client).all_mark_price_socket() as every:
            await every.recv()
            control(sim, "POST", "/_sim/fault", {"mode": "malformed", "count": 1})
            return await recv_until(every, lambda m: m.get("e") == "error")

    assert run(go)["type"] == "JSONDecodeError"


def test_fault_malformed_shape_sends_wrong_payloads(sim):
    async def go():
        async with binance(sim, "streamer") as client, sockets(sim, client).all_mark_price_socket() as every:
            await every.recv()
            control(sim, "POST", "/_sim/fault", {"mode": "malformed", "count": 1, "variant": "shape"})
            return await recv_until(every, lambda m: not isinstance(m.get("data"), list))

    message = run(go)
    assert message["data"]["p"] == "not-a-number"


def test_fault_expire_listen_keys_sends_expired_then_keepalive_fails(sim):
    # A raw socket here: after the close, python-binance retries the dead key with back-off for
    # ~20 s before its read loop can end, which is its business, not the simulator's.
    async def go():
        async with binance(sim, "faulty") as client, aiohttp.ClientSession() as session:
            key = await client.futures_stream_get_listen_key()
            url = f"{sim.ws_url}private/ws?listenKey={key}"
            async with session.ws_connect(url) as ws:
                await asyncio.sleep(0.1)
                control(sim, "POST", "/_sim/fault", {"mode": "expire_listen_keys"})
                expired = json.loads((await ws.receive(timeout=5)).data)
                closing = await ws.receive(timeout=5)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused_socket:
                await session.ws_connect(url)
            keepalive = await refused(lambda: client.futures_stream_keepalive(key))()
            return key, expired, closing, refused_socket.value.status, keepalive

    key, expired, closing, handshake_status, keepalive = run(go)
    assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == key
    assert isinstance(expired["E"], str)  # as captured from the live exchange
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert handshake_status == 400
    assert keepalive.code == -1125


# --------------------------------------------------------------------------- control API


def test_control_api_is_only_under_sim_prefix(sim):
    state = control(sim, "GET", "/_sim/state")
    assert {a["api_key"] for a in state["accounts"]} >= {"liq", "trader"}
    assert state["faults"]["http"] is None
    with pytest.raises(urllib.error.HTTPError) as caught:
        control(sim, "GET", "/fapi/v1/_sim/state")
    assert caught.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad:
        control(sim, "POST", "/_sim/fault", {"mode": "explode"})
    assert bad.value.code == 400


# --------------------------------------------------------------------------- replay, demo fixture, config


def test_replay_walk_reaches_each_bars_high_and_low():
    bars = load_bars(BTC_CRASH)
    path = ReplayPath(bars)
    for bar in bars:
        prices = [p for _t, p in bar.vertices()]
        assert prices[0] == bar.open and prices[-1] == bar.close and {bar.high, bar.low} <= set(prices)
        if bar.close < bar.open:
            assert prices[1] == bar.low  # a down bar goes to its low first
    assert path.price_at(bars[0].open_time_ms + 10_000) == (bars[0].open + bars[0].vertices()[1][1]) / 2


def test_replay_steps_stop_at_every_extreme_even_when_a_tick_spans_many_bars():
    config = build_config(accounts=DEMO_ACCOUNTS, replay=[str(BTC_CRASH)], speed=600, start_at="13:00")
    market = Market(config)
    seen = {s["BTCUSDT"] for s in market.advance(1.0)}  # one real second = ten bars
    start = market.clock.start_ms
    for bar in load_bars(BTC_CRASH):
        if start <= bar.open_time_ms < start + 9 * 60_000:
            assert {bar.high, bar.low} <= seen
    assert Decimal("30000") in {s["BTCUSDT"] for s in market.advance(1.0)}  # the 13:10 low


def test_demo_accounts_over_the_crash_day():
    """Account 1 is liquidated mid-crash after a margin call; 2 and 3 survive with rising ratios."""
    config = build_config(accounts=DEMO_ACCOUNTS, replay=[str(BTC_CRASH), str(ETH_CRASH)], loop_replay=False)
    sim = Simulator(config)
    exchange = sim.exchange
    events: list[tuple[str, dict]] = []

    class Sink:
        def user_event(self, key: str, event: dict) -> None:
            events.append((exchange.listen_key_owner(key).api_key, event))

        def close_listen_key(self, key: str) -> None:
            pass

    exchange.sink = Sink()
    for account in exchange.accounts.values():
        exchange.listen_key_create(account)

    def ratio(key: str) -> Decimal:
        return next(p.ratio for p in pools(exchange.view(exchange.accounts[key])) if p.key[0] == "cross")

    start = {key: ratio(key) for key in ("demo-key-2", "demo-key-3")}
    liquidated_at = {}
    while not sim.market.clock.ended:
        for snapshot in sim.market.advance(1.0):
            exchange.apply_marks(snapshot)
        if sim.market.clock.sim_ms == 1621429800000:  # 13:10 UTC, the low
            low = {key: ratio(key) for key in start}
        for account in exchange.accounts.values():
            if account.liquidations and account.api_key not in liquidated_at:
                liquidated_at[account.api_key] = sim.market.clock.sim_ms

    noon, two_pm = 1621425600000, 1621432800000
    assert noon <= liquidated_at["demo-key-1"] <= two_pm
    assert set(liquidated_at) == {"demo-key-1", "demo-key-4"}
    assert all(low[key] > Decimal("1.5") * start[key] for key in start)
    kinds = [e["e"] for key, e in events if key == "demo-key-1"]
    assert kinds.index("MARGIN_CALL") < kinds.index("ORDER_TRADE_UPDATE")
    fill = next(e for key, e in events if key == "demo-key-1" and e["e"] == "ORDER_TRADE_UPDATE")
    # Liquidated at the first one-second mark past 33,132.53, not at the bar's low.
    assert Decimal("33000") < Decimal(fill["o"]["L"]) <= Decimal("33132.53")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["accounts"][0].update(colour="red"), "accounts[0]: unknown key 'colour'"),
        (lambda d: d["accounts"][0]["positions"][0].update(qty="lots"), "accounts[0].positions[0].qty: not a number"),
        (
            lambda d: d["accounts"][2]["positions"][0].update(side="BOTH"),
            "accounts[2].positions[0].side: 'BOTH' is not valid in hedge mode",
        ),
        (
            lambda d: d["accounts"][1]["positions"][0].update(symbol="FOOUSDT"),
            "accounts[1].positions[0].symbol: unknown symbol 'FOOUSDT'",
        ),
        (lambda d: d["accounts"][0]["positions"][0].update(leverage=200), "accounts[0].positions[0].leverage"),
    ],
    ids=["unknown-key", "bad-number", "bad-side", "unknown-symbol", "leverage"],
)
def test_malformed_accounts_file_is_refused_naming_the_key(change, message):
    import yaml

    document = yaml.safe_load(DEMO_ACCOUNTS.read_text())
    change(document)
    with pytest.raises(ConfigError) as caught:
        build_config(accounts=document)
    assert message in str(caught.value)


def test_synthetic_symbols_random_walk_with_cycled_brackets():
    config = build_config(accounts=DEMO_ACCOUNTS, synthetic_symbols=30, seed=7, speed=60)
    again = build_config(accounts=DEMO_ACCOUNTS, synthetic_symbols=30, seed=7)
    assert config.symbols["SYN029USDT"].typical_price == again.symbols["SYN029USDT"].typical_price
    assert config.symbols["SYN027USDT"].brackets == config.symbols["BTCUSDT"].brackets  # 27 fixture tables cycle
    market = Market(config)
    before = dict(market.marks)
    moved = [s for snapshot in market.advance(1.0) for s in snapshot]
    assert len(moved) == 30 and all(market.marks[s] != before[s] for s in moved[:5])


def test_management_command_check_prints_the_liquidation_prices():
    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "simulate_exchange",
        "--accounts",
        str(DEMO_ACCOUNTS),
        "--replay",
        str(BTC_CRASH),
        str(ETH_CRASH),
        "--start-at",
        "12:00",
        "--check",
        stdout=out,
    )
    text = out.getvalue()
    assert "demo-key-1" in text and "liq 33132.53" in text
    assert "2021-05-19T12:00:00Z" in text
