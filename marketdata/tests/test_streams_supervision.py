"""Supervision of every socket against the simulator (issue 15): back-off that resets, the market
watchdog's bounded recovery over repeated stalls and a soak of `silent` faults, listen keys that
die (an expiry, or a keep-alive answering -1125) replaced for every account, liveness published
with an expiry.

Recovery is measured from the moment the exchange answers again (the simulator's fault ends) to
the first market frame the engine applies. The soak's figures are printed (run with -s) and kept
in docs/RELIABILITY.md, section "Streams"."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from marketdata import streams
from marketdata.simulator import FaultSpec, SimulatorThread, build_config
from marketdata.streams import AccountSpec, Backoff, StreamEngine
from marketdata.tests.conftest import KEY
from marketdata.tests.test_streams import RecordingSink, wait_until, with_engine

MARKET_BOUND_S = 5.0  # issue 15: the market stream resumes within 5 s of the exchange answering again
USER_BOUND_S = 10.0  # ... each user stream within 10 s
SOAK_RUNS = int(os.environ.get("STREAM_SOAK_RUNS", "50"))


class LivenessSink(RecordingSink):
    """RecordingSink plus the optional liveness calls."""

    def __init__(self):
        super().__init__()
        self.beats: list[dict] = []
        self.refreshes: list[list[dict]] = []
        self.stop_statuses: list[dict] | None = None

    async def process_alive(self, status):
        self.beats.append(status)

    async def feeds_alive(self, statuses):
        self.refreshes.append(statuses)

    async def stopped(self, statuses):
        self.stop_statuses = statuses


def test_backoff_doubles_to_its_cap_with_jitter_and_resets_after_a_healthy_session(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(streams.time, "monotonic", lambda: clock[0])
    backoff = Backoff(start_s=0.5, cap_s=2.0, healthy_after_s=10.0)
    waits = [backoff.next_delay() for _ in range(6)]
    nominal = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert all(n / 2 <= w <= n for w, n in zip(waits, nominal, strict=True)), waits
    backoff.connected()
    clock[0] += 3.0  # a short session: still unhealthy, the wait stays at the cap
    assert 1.0 <= backoff.next_delay() <= 2.0
    backoff.connected()
    clock[0] += 10.0  # healthy: the next failure starts from the beginning
    assert 0.25 <= backoff.next_delay() <= 0.5


def _silent_fault(sim: SimulatorThread, seconds: float) -> float:
    """Arm a `silent` fault; the monotonic time (this process's clock) at which it ends."""

    def arm(s):
        s.apply_fault(FaultSpec("silent", seconds=seconds))
        return s.faults.silent_until

    return sim.call(arm)


async def _stall_recoveries(engine: StreamEngine, sim: SimulatorThread, runs: int, seconds: float) -> list[float]:
    frames: list[float] = []
    engine.on_market_frame = lambda _ts: frames.append(time.monotonic())
    recoveries = []
    for run in range(runs):
        restarts = engine.market.reconnects
        ends = _silent_fault(sim, seconds)
        await asyncio.sleep(max(0.0, ends - time.monotonic()))
        assert await wait_until(lambda ends=ends: frames and frames[-1] >= ends, timeout_s=20), f"run {run}"
        recoveries.append(next(t for t in frames if t >= ends) - ends)
        assert engine.market.reconnects > restarts, f"run {run}: the watchdog did not restart the silent socket"
    return recoveries


def _figures(recoveries: list[float]) -> str:
    ordered = sorted(recoveries)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"n={len(ordered)} p50={statistics.median(ordered):.2f}s p99={p99:.2f}s max={ordered[-1]:.2f}s "
        f"min={ordered[0]:.2f}s"
    )


def test_eight_consecutive_feed_stalls_each_recover_within_the_bound(sim):
    """Issue 15 saw recovery grow from 0.6 s to 24 s over 8 stalls (the back-off never reset)."""

    async def scenario(engine, sink):
        # Each stall outlasts the watchdog (1 s at stale_after_s=1), so every one restarts the socket.
        recoveries = await _stall_recoveries(engine, sim, runs=8, seconds=1.6)
        print(f"\n8 feed stalls: {_figures(recoveries)}")
        assert max(recoveries) <= MARKET_BOUND_S, recoveries
        assert ("market", True, False) in sink.feed_events  # each went stale meanwhile

    with_engine(sim, scenario, stale_after_s=1.0)


def test_a_soak_of_silent_faults_recovers_every_time_within_the_bound(sim):
    """Issue 15: once in about 20 runs the market stream never came back. SOAK_RUNS short faults in
    one engine (CI time), each longer than the watchdog's silence, each timed."""

    async def scenario(engine, sink):
        recoveries = await _stall_recoveries(engine, sim, runs=SOAK_RUNS, seconds=1.3)
        print(f"\nsoak of {SOAK_RUNS} silent faults: {_figures(recoveries)}")
        assert len(recoveries) == SOAK_RUNS
        assert max(recoveries) <= MARKET_BOUND_S, _figures(recoveries)

    with_engine(sim, scenario, stale_after_s=1.0)


def test_a_keepalive_answered_with_1125_replaces_the_key_and_resyncs(sim):
    """A key the exchange forgot without telling the socket (no event, no close): the keep-alive
    finds out and the session restarts with a new key."""

    async def scenario(engine, sink):
        assert await wait_until(lambda: 1 in engine.listen_keys)
        old = engine.listen_keys[1]
        sim.call(lambda s: s.exchange.listen_keys.pop(old))
        assert await wait_until(lambda: engine.listen_keys.get(1) not in (None, old), timeout_s=USER_BOUND_S)
        live_keys = sim.call(lambda s: set(s.exchange.listen_keys))
        assert engine.listen_keys[1] in live_keys and engine.user_feeds[1].connected
        assert "-1125" in engine.user_feeds[1].last_error

    with_engine(sim, scenario, keepalive_s=0.5)


def test_liveness_is_published_with_a_beat_and_a_clean_stop_marks_every_feed_stale(sim):
    sink = LivenessSink()

    async def scenario(engine, sink):
        assert await wait_until(lambda: len(sink.beats) >= 2 and sink.refreshes, timeout_s=5)
        assert sink.beats[-1]["pid"] == os.getpid() and sink.beats[-1]["accounts"] == 2
        assert {s["name"] for s in sink.refreshes[-1]} == {"user:1", "user:2"}
        return engine

    engine = with_engine(sim, scenario, sink=sink)
    assert sink.stop_statuses is not None
    assert {s["name"] for s in sink.stop_statuses} == {"market", "user:1", "user:2"}
    assert all(s["stale"] and not s["connected"] for s in sink.stop_statuses)
    assert not engine.listen_keys


def _many_accounts(n: int) -> dict:
    return {
        "accounts": [
            {
                "api_key": f"soak-key-{i}",
                "api_secret": f"soak-secret-{i}",
                "position_mode": "one-way",
                "wallet": {"USDT": "10000"},
                "positions": [],
            }
            for i in range(n)
        ]
    }


def test_expire_listen_keys_with_200_accounts_leaves_none_on_a_dead_key_after_10_s():
    # The weight guard as it is: a stream is back once its socket is (a listen key costs 1), its
    # REST re-sync (55) comes after, in turn and paced to the bulk share (test_streams_recovery.py).
    n = 200
    config = build_config(accounts=_many_accounts(n), marks={"BTCUSDT": "43000"}, tick_interval_s=0.5)
    specs = [AccountSpec(i + 1, f"soak-{i}", f"soak-key-{i}", f"soak-secret-{i}") for i in range(n)]
    with SimulatorThread(config) as sim:

        async def go():
            sink = RecordingSink()
            engine = StreamEngine(
                accounts=specs, rest_url=sim.base_url, ws_url=sim.ws_url, sink=sink, stale_after_s=5.0
            )
            await engine.start()
            try:
                assert await wait_until(lambda: len(engine.listen_keys) == n, timeout_s=90), len(engine.listen_keys)
                expired = sim.call(lambda s: s.apply_fault(FaultSpec("expire_listen_keys")))
                started = time.monotonic()
                assert expired["listen_keys"] == n

                def on_dead_keys() -> list[int]:
                    alive = sim.call(lambda s: set(s.exchange.listen_keys))
                    return [
                        a
                        for a, feed in engine.user_feeds.items()
                        if not feed.connected or engine.listen_keys.get(a) not in alive
                    ]

                recovered = await wait_until(lambda: not on_dead_keys(), timeout_s=USER_BOUND_S, step_s=0.2)
                took = time.monotonic() - started
                print(f"\nexpire_listen_keys, {n} accounts: all on live keys after {took:.2f} s")
                assert recovered, f"{len(on_dead_keys())} accounts on dead keys (or not connected) after 10 s"
            finally:
                await engine.stop()

        asyncio.run(go())


def test_the_simulator_key_fixture_is_the_engine_s_first_account():
    assert KEY == "test-key-1"  # engine_for's account 1: the keep-alive test pops its key
