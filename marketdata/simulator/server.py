"""The simulator process: one aiohttp app serving REST, WebSocket and /_sim control on one port.

``Simulator`` runs on the caller's event loop; ``SimulatorThread`` runs one in
a background thread with its own loop, for synchronous tests and benches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web

from . import control, rest
from .clock import now_ms
from .config import SimConfig
from .exchange import Exchange
from .faults import Faults, FaultSpec
from .ledger import Account
from .market import Market, MarkSnapshot
from .numbers import fmt
from .risk import pools
from .shapes import exchange_symbol
from .ws import Hub

log = logging.getLogger(__name__)
HOUSEKEEPING_S = 0.25  # listen-key expiry resolution
T = TypeVar("T")


@web.middleware
async def json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Unknown paths and methods answer JSON too: python-binance only reads JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"code": -1000 if exc.status >= 500 else -1, "msg": f"{exc.reason}: {request.method} {request.path}"}
        return rest.json_response(body, exc.status)


class Simulator:
    """A Binance USDⓈ-M exchange on loopback. See docs/SIMULATOR.md."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.market = Market(config)
        self.faults = Faults()
        self.hub = Hub(symbols=config.symbols, marks=self.market.marks, faults=self.faults)
        self.exchange = Exchange(config, self.market, sink=self.hub)
        self.hub.listen_key_valid = lambda key: key in self.exchange.listen_keys
        self.weights = rest.WeightCounter()
        self.exchange_symbols = [exchange_symbol(spec) for spec in config.symbols.values()]
        self.port: int | None = None
        self.host = "127.0.0.1"
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._fault_tasks: list[tuple[FaultSpec, asyncio.Task]] = []
        self.started_at = time.monotonic()

    # ----------------------------------------------------------------------- lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors])
        rest.add_routes(app, self)
        control.add_routes(app, self)
        hub = self.hub
        app.router.add_get("/market/stream", hub.market_stream)
        app.router.add_get("/stream", hub.market_stream)
        app.router.add_get("/market/ws/{name}", hub.market_ws)
        app.router.add_get("/ws/{name}", hub.ws_path)
        app.router.add_get("/private/ws", hub.private_ws)
        app.router.add_get("/private/ws/{name}", hub.private_ws)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0 = any free port) and start the clocks; returns the actual port."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        self.host, self.port = host, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._tasks = [asyncio.create_task(self._ticker()), asyncio.create_task(self._housekeeping())]
        self._fault_tasks = [(spec, asyncio.create_task(self._scheduled_fault(spec))) for spec in self.config.faults]
        log.info("simulator listening on %s", self.base_url)
        return self.port

    async def stop(self) -> None:
        self.clear_faults()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.exchange.stop_timers()
        self.hub.drop_all(1001, "going away")
        await asyncio.sleep(0.05)  # let the writers send their close frames
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Value for ``BinanceSocketManager.FSTREAM_URL`` (trailing slash included)."""
        return f"ws://{self.host}:{self.port}/"

    # ----------------------------------------------------------------------- clocks

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.tick_interval_s
        last = due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            if now - due > 5 * interval:
                due = now  # fell behind (debugger, overload): skip, do not burst
            try:
                self.step(now - last)
            except Exception:  # one bad tick must not stop the market
                log.exception("simulator tick failed")
            last = now

    def step(self, real_dt_s: float) -> None:
        """Advance the marks by ``real_dt_s`` of real time, apply each change, publish once."""
        for snapshot in self.market.advance(real_dt_s):
            self.exchange.apply_marks(snapshot)
        self.hub.publish_marks()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.exchange.expire_listen_keys(only_expired=True)

    async def _scheduled_fault(self, spec: FaultSpec) -> None:
        await asyncio.sleep(spec.after)
        while True:
            self.apply_fault(spec)
            if spec.every is None:
                return
            await asyncio.sleep(spec.every)

    # ----------------------------------------------------------------------- control

    def apply_fault(self, spec: FaultSpec) -> dict:
        if spec.mode == "drop":
            return {"mode": "drop", "sockets_closed": self.hub.drop_all(1001, "going away")}
        if spec.mode == "expire_listen_keys":
            return {"mode": spec.mode, "listen_keys": len(self.exchange.expire_listen_keys())}
        self.faults.arm(spec)  # every other mode is state the next requests/frames consume
        return {"mode": spec.mode, **{k: v for k, v in self.faults.describe().items() if v}}

    def clear_faults(self, mode: str | None = None) -> None:
        """Disarm faults (one mode or all) and cancel the matching --fault schedules."""
        self.faults.clear(mode)
        keep = []
        for spec, task in self._fault_tasks:
            if mode is None or spec.mode == mode:
                task.cancel()
            else:
                keep.append((spec, task))
        self._fault_tasks = keep

    def set_marks(self, marks: Mapping[str, Decimal]) -> MarkSnapshot:
        snapshot = self.market.set_marks(marks)
        self.exchange.apply_marks(snapshot)
        self.hub.publish_marks(force=True)
        return snapshot

    def set_replay(self, *, paused: bool | None = None, speed: float | None = None, at_ms: int | None = None) -> None:
        snapshot = self.market.set_replay(paused=paused, speed=speed, at_ms=at_ms)
        if snapshot:
            self.exchange.apply_marks(snapshot)
            self.hub.publish_marks(force=True)

    def state(self) -> dict:
        return {
            "server_time": now_ms(),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "tick_interval_s": self.config.tick_interval_s,
            "market": self.market.describe(),
            "marks": {s: fmt(self.market.marks[s]) for s in self.config.symbols if not s.startswith("SYN")},
            "faults": self.faults.describe(),
            "sockets": self.hub.describe(),
            "listen_keys": len(self.exchange.listen_keys),
            "accounts": [self._account_state(a) for a in self.exchange.accounts.values()],
        }

    def _account_state(self, account: Account) -> dict:
        view = self.exchange.view(account)
        return {
            "api_key": account.api_key,
            "name": account.spec.name,
            "hedge": account.hedge,
            "wallets": {a: fmt(v) for a, v in account.wallets.items()},
            "positions": [
                {
                    "symbol": v.position.symbol,
                    "side": v.position.side,
                    "qty": str(v.position.qty),
                    "entry": fmt(v.position.entry_price),
                    "mark": fmt(v.mark),
                    "upnl": fmt(v.upnl),
                    "mm": fmt(v.mm),
                    "margin_type": v.margin_type,
                }
                for v in view.positions
            ],
            "pools": [
                {
                    "pool": ":".join(p.key),
                    "margin_balance": fmt(p.margin_balance),
                    "maint_margin": fmt(p.maint_margin),
                    "ratio": fmt(p.ratio, 6),
                }
                for p in pools(view)
            ],
            "open_orders": len(account.orders),
            "open_algo_orders": len(account.algo_orders),
            "liquidations": account.liquidations,
            "listen_key": account.listen_key is not None,
        }


class SimulatorThread:
    """A ``Simulator`` on its own event loop in a daemon thread.

    >>> sim = SimulatorThread(config)
    >>> base = sim.start()            # "http://127.0.0.1:<port>"
    >>> sim.call(lambda s: s.state())  # run code on the simulator's loop
    >>> sim.stop()
    """

    def __init__(self, config: SimConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = Simulator(config)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="binance-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.base_url

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.simulator.start(self._host, self._port))
        except BaseException as exc:  # report to start(), e.g. port in use
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def call(self, fn: Callable[[Simulator], T], timeout: float = 10.0) -> T:
        """Run ``fn(simulator)`` on the simulator's loop and return its result (state is loop-owned)."""
        assert self._loop is not None

        async def run() -> Any:
            return fn(self.simulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def ws_url(self) -> str:
        return self.simulator.ws_url

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
