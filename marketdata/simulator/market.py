"""Mark prices: replayed bars, fixed marks and synthetic random walks on one clock.

The replay clock (``sim_ms``, epoch ms of the data) moves by ``speed`` simulated
seconds per real second. It only drives the marks; every timestamp the
exchange sends (server time, E, T) is wall-clock, because signatures and
python-binance's timestamp offset depend on it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from .config import SimConfig
from .numbers import MONEY_PLACES, quantize
from .replay import ReplayPath, iso, start_time_ms

MarkSnapshot = dict[str, Decimal]
RISK_STEP_MS = 1000  # apply the replayed marks at least once per simulated second
MAX_STOPS_PER_STEP = 600


@dataclass
class ReplayClock:
    sim_ms: int
    start_ms: int
    end_ms: int
    speed: float
    paused: bool = False
    loop: bool = True
    ended: bool = False
    loops: int = 0


class Market:
    """Current marks for every symbol, and how they move."""

    def __init__(self, config: SimConfig) -> None:
        self.symbols = config.symbols
        self.paths = {src.symbol: ReplayPath(list(src.bars)) for src in config.replay}
        self.synthetic = [s for s, spec in config.symbols.items() if spec.synthetic and s not in self.paths]
        self._rng = random.Random(config.seed)
        self._volatility = config.synthetic_volatility
        self.marks: dict[str, Decimal] = self._initial_marks(config)
        self.clock: ReplayClock = self._clock(config)

    def _initial_marks(self, config: SimConfig) -> dict[str, Decimal]:
        """--marks, else the first entry price an account holds (a quiet desk starts flat), else typical."""
        marks = {s: spec.typical_price for s, spec in config.symbols.items()}
        entries: dict[str, Decimal] = {}
        for account in config.accounts:
            for position in account.positions:
                entries.setdefault(position.symbol, position.entry_price)
        marks.update(entries)
        marks.update(config.marks)
        return {s: quantize(v, MONEY_PLACES) for s, v in marks.items()}

    def _clock(self, config: SimConfig) -> ReplayClock:
        if not self.paths:  # synthetic walks still honour speed and pause
            return ReplayClock(sim_ms=0, start_ms=0, end_ms=0, speed=config.speed, loop=False)
        first = min(p.start_ms for p in self.paths.values())
        end = max(p.end_ms for p in self.paths.values())
        start = max(first, min(start_time_ms(config.start_at, first), end))
        clock = ReplayClock(sim_ms=start, start_ms=start, end_ms=end, speed=config.speed, loop=config.loop_replay)
        self.marks.update(self._replay_marks(start))
        return clock

    def _replay_marks(self, t_ms: int) -> MarkSnapshot:
        return {s: path.price_at(t_ms) for s, path in self.paths.items()}

    # ----------------------------------------------------------------------- moving

    def advance(self, real_dt_s: float) -> Iterator[MarkSnapshot]:
        """Move the clock by ``real_dt_s`` of real time, yielding the mark changes in order.

        ``marks`` already holds a snapshot's values when it is yielded, so a caller
        that applies each one sees the market exactly at that instant. Every replay
        stop (see ``_stops``) gets its own snapshot, so each bar's high and low are
        seen even when one tick spans whole bars. Synthetic walks move once, last.
        """
        clock = self.clock
        if clock.paused:
            return
        sim_dt_ms = int(real_dt_s * clock.speed * 1000)
        if self.paths:
            for snapshot in self._replay_steps(clock, sim_dt_ms):
                self.marks.update(snapshot)
                yield snapshot
        if self.synthetic and sim_dt_ms > 0:
            walk = self._walk(sim_dt_ms / 1000)
            self.marks.update(walk)
            yield walk

    def _replay_steps(self, clock: ReplayClock, sim_dt_ms: int) -> Iterator[MarkSnapshot]:
        target = clock.sim_ms + sim_dt_ms
        while True:
            upto = min(target, clock.end_ms)
            times = self._stops(clock.sim_ms, upto)
            for t in [*times, upto]:
                yield self._replay_marks(t)
            clock.sim_ms = upto
            if target <= clock.end_ms:
                return
            if not clock.loop:
                clock.ended = clock.paused = True
                return
            # Wrap to the start point; the jump is one more mark change like any other.
            target = clock.start_ms + (target - clock.end_ms)
            clock.sim_ms = clock.start_ms
            clock.loops += 1
            yield self._replay_marks(clock.start_ms)

    def _stops(self, after_ms: int, upto_ms: int) -> list[int]:
        """Times strictly inside (after, upto) at which the marks are applied one by one.

        Every walk point (so each bar's high and low is seen), plus one stop per
        simulated second, because Binance moves the mark about once a second and
        liquidates at the first mark past the liquidation price: applying only the
        walk points would liquidate at the next bar extreme instead, far past it.
        Capped so a very high --speed cannot stall the loop.
        """
        step = max(RISK_STEP_MS, (upto_ms - after_ms) // MAX_STOPS_PER_STEP + 1)
        stops = set(range(after_ms + step, upto_ms, step))
        for path in self.paths.values():
            stops.update(path.vertex_times(after_ms, upto_ms))
        return sorted(stops)

    def _walk(self, sim_dt_s: float) -> MarkSnapshot:
        sigma = self._volatility * math.sqrt(sim_dt_s)
        moved = {}
        for symbol in self.synthetic:
            step = Decimal(str(round(self._rng.gauss(0.0, sigma), 10)))
            moved[symbol] = quantize(self.marks[symbol] * (1 + step), MONEY_PLACES)
        return moved

    # ----------------------------------------------------------------------- control

    def set_marks(self, marks: Mapping[str, Decimal]) -> MarkSnapshot:
        snapshot = {s: quantize(v, MONEY_PLACES) for s, v in marks.items()}
        self.marks.update(snapshot)
        return snapshot

    def set_replay(
        self, *, paused: bool | None = None, speed: float | None = None, at_ms: int | None = None
    ) -> MarkSnapshot:
        """Pause/resume, change speed, or jump the replay clock (returns the marks the jump sets)."""
        clock = self.clock
        if speed is not None:
            clock.speed = speed
        if paused is not None:
            clock.paused = paused
            clock.ended = clock.ended and paused
        if at_ms is None or not self.paths:
            return {}
        clock.sim_ms = max(min(at_ms, clock.end_ms), min(p.start_ms for p in self.paths.values()))
        return self.set_marks(self._replay_marks(clock.sim_ms))

    def describe(self) -> dict:
        clock = self.clock
        replay = None
        if self.paths:
            replay = {
                "symbols": sorted(self.paths),
                "sim_ms": clock.sim_ms,
                "sim_time": iso(clock.sim_ms),
                "start": iso(clock.start_ms),
                "end": iso(clock.end_ms),
                "speed": clock.speed,
                "paused": clock.paused,
                "loop": clock.loop,
                "ended": clock.ended,
                "loops": clock.loops,
            }
        return {
            "replay": replay,
            "speed": clock.speed,
            "paused": clock.paused,
            "synthetic_symbols": len(self.synthetic),
        }
