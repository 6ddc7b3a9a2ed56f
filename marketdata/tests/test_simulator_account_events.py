"""The simulator's account-level events, through the adapter and the user socket as the desk sees
them: GET /fapi/v1/forceOrders, multi-assets mode (ACCOUNT_CONFIG_UPDATE ``ai``), margin-type
changes (ACCOUNT_UPDATE m=MARGIN_TYPE_CHANGE) and funding charged through /_sim/funding
(ACCOUNT_UPDATE m=FUNDING_FEE: cross → only ``B``, isolated → ``B`` plus that position)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from decimal import Decimal as D

import pytest
from binance.ws.reconnecting_websocket import ReconnectingWebsocket

from marketdata.exchange import BinanceFutures, ExchangeRejected
from marketdata.simulator import SimulatorThread, build_config

ACCOUNTS = {
    "accounts": [
        {
            "api_key": "liq",
            "api_secret": "liq-secret",
            "wallet": {"USDT": "5000"},
            "positions": [{"symbol": "BTCUSDT", "qty": "0.5", "entry_price": "43000", "leverage": 20}],
        },
        {"api_key": "flat", "api_secret": "flat-secret", "wallet": {"USDT": "10000"}},
        {
            "api_key": "payer",
            "api_secret": "payer-secret",
            "wallet": {"USDT": "20000"},
            "positions": [
                {"symbol": "BTCUSDT", "qty": "0.2", "entry_price": "43000", "leverage": 10},
                {
                    "symbol": "LINKUSDT",
                    "qty": "1000",
                    "entry_price": "11.5",
                    "leverage": 20,
                    "margin_type": "isolated",
                    "isolated_wallet": "600",
                },
            ],
        },
    ]
}
SECRETS = {a["api_key"]: a["api_secret"] for a in ACCOUNTS["accounts"]}


@pytest.fixture(scope="module")
def sim():
    config = build_config(
        accounts=ACCOUNTS, marks={"BTCUSDT": "43000", "ETHUSDT": "2500", "LINKUSDT": "11.5"}, tick_interval_s=0.05
    )
    with SimulatorThread(config) as thread:
        yield thread


@pytest.fixture(autouse=True)
def quick_socket_exit(monkeypatch):
    monkeypatch.setattr(ReconnectingWebsocket, "TIMEOUT", 0.5)  # see test_simulator.py


def control(sim, path: str, body: dict) -> dict:
    request = urllib.request.Request(sim.base_url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@contextlib.asynccontextmanager
async def exchange(sim, key: str):
    async with BinanceFutures(api_key=key, api_secret=SECRETS[key], rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
        yield ex


async def recv_until(socket, predicate, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        message = await asyncio.wait_for(socket.recv(), max(0.01, deadline - time.monotonic()))
        if predicate(message):
            return message


def test_force_orders_lists_the_accounts_liquidations_in_binances_shape(sim):
    async def go():
        async with exchange(sim, "liq") as ex:
            started_ms = int(time.time() * 1000)
            assert await ex.force_orders() == []
            control(sim, "/_sim/marks", {"BTCUSDT": "33000"})  # past its liquidation price, 33,132.53
            return (
                started_ms,
                await ex.force_orders(),
                await ex.force_orders(symbol="BTCUSDT", auto_close_type="LIQUIDATION"),
                await ex.force_orders(auto_close_type="ADL"),
                await ex.force_orders(start_time_ms=int(time.time() * 1000) + 1000),
                await ex.force_orders(symbol="ETHUSDT"),
            )

    started_ms, every, liquidations, adl, later, other_symbol = asyncio.run(go())
    [row] = every
    assert liquidations == every and adl == [] and later == [] and other_symbol == []
    assert row["clientOrderId"].startswith("autoclose-") and row["type"] == "LIMIT" == row["origType"]
    assert (row["symbol"], row["side"], row["positionSide"], row["status"]) == ("BTCUSDT", "SELL", "BOTH", "FILLED")
    assert (row["origQty"], row["executedQty"], row["avgPrice"]) == ("0.500", "0.500", "33000.0")
    assert row["time"] >= started_ms and isinstance(row["orderId"], int)


def test_force_orders_refuses_bad_parameters_with_binances_codes(sim):
    async def refused(**params) -> int:
        async with exchange(sim, "flat") as ex:
            try:
                await ex.force_orders(**params)
            except ExchangeRejected as exc:
                return exc.code
        raise AssertionError("accepted")

    assert asyncio.run(refused(auto_close_type="MARGIN")) == -1130
    assert asyncio.run(refused(limit=101)) == -1130
    assert asyncio.run(refused(start_time_ms=2_000, end_time_ms=1_000)) == -1023
    assert asyncio.run(refused(start_time_ms=1_000, end_time_ms=1_000 + 8 * 86_400_000)) == -1127


def test_multi_assets_mode_change_is_sent_as_account_config_update(sim):
    async def go():
        async with exchange(sim, "flat") as ex, ex.socket_manager().futures_user_socket() as user:
            assert await ex.multi_assets_mode() is False
            await ex.change_multi_assets_mode(enabled=True)
            event = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_CONFIG_UPDATE")
            mode = await ex.multi_assets_mode()
            try:
                await ex.change_multi_assets_mode(enabled=True)
            except ExchangeRejected as exc:
                again = exc.code
            await ex.change_multi_assets_mode(enabled=False)
            back = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_CONFIG_UPDATE")
            return event, mode, again, back

    event, mode, again, back = asyncio.run(go())
    assert event["ai"] == {"j": True} and "ac" not in event and isinstance(event["E"], int)
    assert mode is True and again == -4171 and back["ai"] == {"j": False}


def test_margin_type_change_is_sent_as_an_account_update_and_shown_in_position_risk(sim):
    async def go():
        async with exchange(sim, "flat") as ex, ex.socket_manager().futures_user_socket() as user:
            await ex.change_margin_type(symbol="ETHUSDT", margin_type="isolated")
            event = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            config = await ex._call(ex.client.futures_symbol_config, symbol="ETHUSDT")
            await ex.change_margin_type(symbol="ETHUSDT", margin_type="cross")
            return event, config

    event, config = asyncio.run(go())
    assert event["a"]["m"] == "MARGIN_TYPE_CHANGE"
    [row] = event["a"]["P"]
    assert (row["s"], row["pa"], row["mt"], row["ps"]) == ("ETHUSDT", "0.000", "isolated", "BOTH")
    assert config[0]["marginType"] == "ISOLATED"


def test_funding_is_charged_to_the_cross_wallet_or_to_the_isolated_position(sim):
    control(sim, "/_sim/marks", {"BTCUSDT": "43000"})  # the liquidation test moved it

    async def go():
        async with exchange(sim, "payer") as ex, ex.socket_manager().futures_user_socket() as user:
            cross = control(sim, "/_sim/funding", {"api_key": "payer", "symbol": "BTCUSDT", "rate": "0.0001"})
            cross_event = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            isolated = control(sim, "/_sim/funding", {"api_key": "payer", "symbol": "LINKUSDT", "rate": "-0.001"})
            isolated_event = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            return cross, cross_event, isolated, isolated_event, await ex.positions()

    cross, cross_event, isolated, isolated_event, positions = asyncio.run(go())
    # A long pays a positive rate: 0.2 x 43,000 x 0.0001 = 0.86 USDT.
    assert cross["charged"] == [{"symbol": "BTCUSDT", "side": "BOTH", "asset": "USDT", "amount": "-0.86000000"}]
    body = cross_event["a"]
    assert body["m"] == "FUNDING_FEE" and body["P"] == []
    assert body["B"] == [{"a": "USDT", "wb": body["B"][0]["wb"], "cw": "19999.14000000", "bc": "-0.86000000"}]
    # ... and receives a negative one, into its isolated wallet: 1,000 x 11.5 x 0.001 = 11.5 USDT.
    assert isolated["charged"][0]["amount"] == "11.50000000"
    body = isolated_event["a"]
    assert body["m"] == "FUNDING_FEE" and body["B"][0]["bc"] == "11.50000000"
    assert body["B"][0]["cw"] == "19999.14000000"  # the cross wallet did not pay
    [row] = body["P"]
    assert (row["s"], row["mt"], row["iw"]) == ("LINKUSDT", "isolated", "611.50000000")
    link = next(p for p in positions if p.symbol == "LINKUSDT")
    assert link.isolated_wallet == D("611.5")


def test_funding_hook_refuses_unknown_accounts_and_symbols(sim):
    for body in ({"api_key": "nobody", "symbol": "BTCUSDT", "rate": "0.0001"}, {"api_key": "payer", "symbol": "X"}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            control(sim, "/_sim/funding", body)
        assert refused.value.code == 400
