"""The dead-man switch (marketdata/deadman.py) in-process against the simulator: armed per symbol
with open orders, renewed, disarmed when the last order goes, fired while the desk is blind and
reported once it sees the account again; a fill is no dead-man cancel; the weight budget."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

from marketdata import deadman
from marketdata.exchange import BinanceFutures
from marketdata.tests.conftest import KEY, SECRET
from marketdata.tests.test_streams import RecordingSink, wait_until, with_engine


class DeadmanSink(RecordingSink):
    def __init__(self):
        super().__init__()
        self.fired: list[tuple[int, dict]] = []

    async def deadman_fired(self, account_id, details):
        self.fired.append((account_id, details))


def _countdowns(sim):
    return sim.call(lambda s: sorted(s.exchange._countdowns))


async def _limit(sim, price="30000", client_id="dm-1"):
    async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
        return await ex.place_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity=D("0.01"),
            price=D(price),
            timeInForce="GTC",
            newClientOrderId=client_id,
        )


def test_armed_renewed_and_disarmed_with_the_open_orders(sim):
    async def scenario(engine, sink):
        dm = deadman.DeadMan(engine, countdown_s=2, renew_every_s=0.5)
        await dm.tick()
        assert _countdowns(sim) == [] and dm.calls == 0  # no open orders: nothing armed
        await _limit(sim)
        assert await wait_until(lambda: engine.open_orders.get(1))
        await dm.tick()
        assert _countdowns(sim) == [(KEY, "BTCUSDT")] and set(dm.armed[1]) == {"BTCUSDT"}
        for _ in range(4):  # renewed past two countdowns: the order rests
            await asyncio.sleep(0.6)
            await dm.tick()
        assert sim.call(lambda s: len(s.exchange.accounts[KEY].orders)) == 1
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            await ex.cancel_all(symbol="BTCUSDT")
        assert await wait_until(lambda: not engine.open_orders.get(1))
        await dm.tick()
        assert _countdowns(sim) == [] and dm.armed[1] == {} and sink.fired == []

    with_engine(sim, scenario, sink=DeadmanSink())


def test_blind_past_the_countdown_the_exchange_cancels_and_the_desk_reports_it_when_it_sees_again(sim):
    async def scenario(engine, sink):
        dm = deadman.DeadMan(engine, countdown_s=0.5, renew_every_s=0.2)
        await _limit(sim)
        assert await wait_until(lambda: engine.open_orders.get(1))
        await dm.tick()
        engine.user_feeds[1].connected = False  # blind: no renewal
        await asyncio.sleep(0.8)
        await dm.tick()
        assert sim.call(lambda s: len(s.exchange.accounts[KEY].orders)) == 0
        assert sink.fired == [] and dm.armed[1]  # not reported while blind
        assert await wait_until(lambda: not engine.open_orders.get(1))  # the CANCELED event
        engine.user_feeds[1].connected = True
        await dm.tick()
        assert len(sink.fired) == 1
        account_id, details = sink.fired[0]
        assert account_id == 1 and details["symbol"] == "BTCUSDT" and details["count"] == 1
        assert details["confirmed"] == 1 and details["orders"][0]["status"] == "CANCELED"
        await dm.tick()
        assert len(sink.fired) == 1  # once

    with_engine(sim, scenario, sink=DeadmanSink())


def test_an_order_filled_or_cancelled_before_the_deadline_is_no_dead_man_cancel(sim):
    async def scenario(engine, sink):
        dm = deadman.DeadMan(engine, countdown_s=30, renew_every_s=10)
        await _limit(sim, client_id="dm-cancelled")
        assert await wait_until(lambda: engine.open_orders.get(1))
        await dm.tick()
        async with BinanceFutures(api_key=KEY, api_secret=SECRET, rest_url=sim.base_url, ws_url=sim.ws_url) as ex:
            await ex.cancel_all(symbol="BTCUSDT")
        assert await wait_until(lambda: not engine.open_orders.get(1))
        dm.clock = lambda: time.time() + 60  # the countdown ran out since
        await dm.tick()
        assert sink.fired == [] and dm.armed[1] == {}  # cancelled ~30 s before the deadline: not the switch

    with_engine(sim, scenario, sink=DeadmanSink())


def test_the_renewal_interval_stretches_to_the_weight_budget():
    class Engine:
        accounts, user_feeds, open_orders = {}, {}, {}

    dm = deadman.DeadMan(Engine(), countdown_s=60, renew_every_s=20, weight_per_min=600)
    assert dm.interval_s() == 20
    dm.armed = {a: {"BTCUSDT": deadman.Arm(0)} for a in range(30)}  # 30 arms x 10 weight x 3 a minute = 900
    assert dm.interval_s() == 30  # 600 a minute: every 30 s


def test_the_state_round_trips_through_the_store():
    saved = {}

    class Engine:
        accounts = {7: None}

    dm = deadman.DeadMan(Engine(), load=lambda: dict(saved), save=saved.update)
    dm.armed = {7: {"ETHUSDT": deadman.Arm(123, {"9": "c9"})}}

    async def go():
        await dm._save()
        other = deadman.DeadMan(Engine(), load=lambda: dict(saved))
        await other._load()
        return other.armed

    assert asyncio.run(go()) == {7: {"ETHUSDT": deadman.Arm(123, {"9": "c9"})}}


def test_deadman_fired_reads_in_both_languages():
    from alerts.messages import render

    params = {"symbol": "ETHUSDT", "count": 2, "countdown_s": 60.0, "deadline_ms": 0}
    english = render("deadman_fired", params, "en")
    assert "dead-man switch cancelled 2 open order(s) in ETHUSDT" in english and "60 s" in english
    assert render("deadman_fired", params, "zh-hans")  # Chinese once /work/po/DM.po is compiled in
