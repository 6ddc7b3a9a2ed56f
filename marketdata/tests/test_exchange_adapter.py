"""The adapter against the simulator, through the real python-binance client."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

from marketdata.exchange import (
    _RATE_STATES,
    BinanceFutures,
    ExchangeAuthError,
    ExchangeRejected,
    OutcomeUnknown,
    RateLimited,
)
from marketdata.simulator import FaultSpec
from marketdata.tests.conftest import HEDGE_KEY, HEDGE_SECRET, KEY, SECRET
from positions.margin import liquidation_price


def run(sim, fn, key=KEY, secret=SECRET):
    async def go():
        async with BinanceFutures(api_key=key, api_secret=secret, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            return await fn(ex)

    _RATE_STATES.clear()  # back-off state is per base URL; each test has its own simulator
    return asyncio.run(go())


def test_reads_parse_every_number_to_decimal(sim):
    async def reads(ex: BinanceFutures):
        return (
            await ex.account(),
            await ex.balances(),
            await ex.positions(),
            await ex.mark_prices(),
            await ex.exchange_info(),
            await ex.position_mode_is_hedge(),
            await ex.multi_assets_mode(),
            await ex.server_time_ms(),
        )

    account, balances, positions, marks, symbols, hedge, multi, server_ms = run(sim, reads)
    assert account.wallet_balance == D("10000") and isinstance(account.maint_margin, D)
    assert balances["USDT"] == D("10000")
    [btc] = positions
    assert (btc.symbol, btc.side, btc.qty, btc.entry_price, btc.leverage, btc.margin_type) == (
        "BTCUSDT",
        "BOTH",
        D("0.5"),
        D("43000"),
        20,
        "cross",
    )
    assert marks["BTCUSDT"].price == D("43000")
    by_name = {s.symbol: s for s in symbols}
    assert by_name["BTCUSDT"].tick_size == D("0.10") and by_name["BTCUSDT"].min_notional == D("100")
    assert hedge is False and multi is False
    assert abs(server_ms - time.time() * 1000) < 5000


def test_brackets_for_all_symbols_and_for_one(sim):
    tables = run(sim, lambda ex: ex.brackets())
    one = run(sim, lambda ex: ex.brackets("ETHUSDT"))
    assert {"BTCUSDT", "ETHUSDT"} <= set(tables) and list(one) == ["ETHUSDT"]
    assert tables["BTCUSDT"][0].max_leverage == 125 and tables["BTCUSDT"][1].cum == D("50")


def test_the_exchange_liquidation_price_equals_the_desk_maths(sim):
    [btc] = run(sim, lambda ex: ex.positions())
    tables = run(sim, lambda ex: ex.brackets("BTCUSDT"))
    desk = liquidation_price(
        wallet_balance=D("10000"), brackets=tables["BTCUSDT"], qty_both=D("0.5"), entry_both=D("43000")
    )
    assert btc.liquidation_price is not None
    assert abs(btc.liquidation_price - desk) < D("0.01")


def test_orders_open_cancel_and_cancel_all(sim):
    async def flow(ex: BinanceFutures):
        limit = await ex.place_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D("0.010"), price=D("40000.0"), timeInForce="GTC"
        )
        second = await ex.place_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity=D("0.010"),
            price=D("39000.0"),
            timeInForce="GTC",
            newClientOrderId="mine-1",
        )
        open_before = await ex.open_orders("BTCUSDT")
        await ex.cancel_order(symbol="BTCUSDT", order_id=limit["orderId"])
        open_middle = await ex.open_orders("BTCUSDT")
        await ex.cancel_all(symbol="BTCUSDT")
        market = await ex.place_order(
            symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.1"), reduceOnly=True, newOrderRespType="RESULT"
        )
        return limit, second, open_before, open_middle, await ex.open_orders(), market, await ex.positions()

    limit, second, before, middle, after, market, positions = run(sim, flow)
    assert limit["status"] == "NEW" and second["clientOrderId"] == "mine-1"
    assert len(before) == 2 and [o["clientOrderId"] for o in middle] == ["mine-1"] and after == []
    assert market["status"] == "FILLED"
    assert positions[0].qty == D("0.4")


def test_conditional_orders_are_listed_and_cancelled_apart_from_plain_ones(sim):
    """Since 2025-12-09 stops go to the algo service: /openOrders and /allOpenOrders do not see them."""

    async def flow(ex: BinanceFutures):
        await ex.place_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D("0.010"), price=D("40000.0"), timeInForce="GTC"
        )
        await ex.place_order(
            symbol="BTCUSDT", side="BUY", type="STOP_MARKET", quantity=D("0.010"), triggerPrice=D("90000")
        )
        before = await ex.open_orders("BTCUSDT"), await ex.open_conditional_orders("BTCUSDT")
        await ex.cancel_all(symbol="BTCUSDT")
        middle = await ex.open_orders(), await ex.open_conditional_orders()
        await ex.cancel_all_conditional(symbol="BTCUSDT")
        return before, middle, await ex.open_conditional_orders()

    (plain, conditional), (plain_after, conditional_left), conditional_after = run(sim, flow)
    assert len(plain) == 1 and len(conditional) == 1 and conditional[0]["orderType"] == "STOP_MARKET"
    assert plain_after == [] and len(conditional_left) == 1
    assert conditional_after == []


def test_leverage_and_the_dead_man_switch(sim):
    async def flow(ex: BinanceFutures):
        changed = await ex.change_leverage(symbol="BTCUSDT", leverage=10)
        await ex.place_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D("0.010"), price=D("40000.0"), timeInForce="GTC"
        )
        armed = await ex.countdown_cancel_all(symbol="BTCUSDT", countdown_ms=1000)
        await asyncio.sleep(2.0)
        return changed, armed, await ex.open_orders("BTCUSDT"), await ex.positions()

    changed, armed, left, positions = run(sim, flow)
    assert changed["leverage"] == 10 and armed["countdownTime"] in ("1000", 1000)
    assert left == [] and positions[0].leverage == 10
    with pytest.raises(ExchangeRejected):
        run(sim, lambda ex: ex.change_leverage(symbol="BTCUSDT", leverage=500))


def test_listen_keys_are_created_kept_alive_and_closed(sim):
    async def flow(ex: BinanceFutures):
        key = await ex.new_listen_key()
        await ex.keepalive_listen_key(key)
        await ex.close_listen_key(key)
        return key

    assert run(sim, flow)


def test_hedge_positions_come_back_as_legs(sim):
    positions = run(sim, lambda ex: ex.positions(), key=HEDGE_KEY, secret=HEDGE_SECRET)
    assert sorted((p.side, abs(p.qty)) for p in positions) == [("LONG", D("0.3")), ("SHORT", D("0.1"))]
    assert run(sim, lambda ex: ex.position_mode_is_hedge(), key=HEDGE_KEY, secret=HEDGE_SECRET) is True


def test_a_bad_signature_is_refused_with_1022(sim):
    with pytest.raises(ExchangeAuthError) as refused:
        run(sim, lambda ex: ex.account(), secret="wrong-secret")
    assert refused.value.code == -1022


def test_an_unknown_key_is_refused_with_2015(sim):
    with pytest.raises(ExchangeAuthError) as refused:
        run(sim, lambda ex: ex.account(), key="nobody", secret="x")
    assert refused.value.code == -2015


def test_a_stale_timestamp_is_refused_with_1021(sim):
    async def skewed(ex: BinanceFutures):
        ex.client.timestamp_offset = -120_000  # our clock two minutes behind the exchange's
        return await ex.account()

    with pytest.raises(ExchangeAuthError) as refused:
        run(sim, skewed)
    assert refused.value.code == -1021


def test_429_with_retry_after_is_backed_off(sim):
    sim.call(lambda s: s.apply_fault(FaultSpec("http429", count=1, retry_after=1)))

    async def flow(ex: BinanceFutures):
        with pytest.raises(RateLimited) as limited:
            await ex.account()
        started = time.monotonic()
        state = await ex.account()  # waits out Retry-After instead of hammering
        return limited.value, time.monotonic() - started, state

    limited, waited_s, state = run(sim, flow)
    assert limited.status == 429 and limited.retry_after_s == 1
    assert waited_s >= 0.9 and state.wallet_balance == D("10000")


def test_418_is_a_ban_that_is_backed_off_too(sim):
    sim.call(lambda s: s.apply_fault(FaultSpec("http418", count=1, retry_after=1)))
    with pytest.raises(RateLimited) as banned:
        run(sim, lambda ex: ex.account())
    assert banned.value.status == 418


def test_a_503_unknown_on_an_order_is_an_unknown_outcome_not_a_failure(sim):
    sim.call(lambda s: s.apply_fault(FaultSpec("http503", count=1)))
    with pytest.raises(OutcomeUnknown):
        run(sim, lambda ex: ex.place_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.1")))
    [btc] = run(sim, lambda ex: ex.positions())
    assert btc.qty == D("0.4"), "the simulator executed it, as Binance may: the caller must reconcile"


def test_an_exchange_rejection_carries_binance_code_and_message(sim):
    with pytest.raises(ExchangeRejected) as rejected:
        run(sim, lambda ex: ex.place_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("0.0001")))
    assert rejected.value.code < 0 and rejected.value.message
