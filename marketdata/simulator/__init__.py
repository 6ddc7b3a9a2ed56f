"""A Binance USDⓈ-M futures exchange on loopback, for tests, demos and benchmarks.

The real python-binance client talks to it unchanged except for its base URLs
(``client.FUTURES_URL``, ``client.API_URL``, ``BinanceSocketManager.FSTREAM_URL``).
Plain asyncio/aiohttp; nothing here imports Django (the maths come from
positions.margin and positions.figures). See docs/SIMULATOR.md.

Public API
----------
``build_config(*, accounts, replay=(), synthetic_symbols=0, seed=0, marks=None, **options) -> SimConfig``
``Simulator(config)``: ``await start(host, port) -> port``, ``await stop()``, ``base_url``, ``ws_url``,
    ``set_marks(marks)``, ``set_replay(...)``, ``apply_fault(FaultSpec)``, ``state()``, ``step(real_dt_s)``
``SimulatorThread(config, host=..., port=0)``: ``start() -> base_url``, ``stop()``, ``call(fn)``, ``ws_url``
``FaultSpec(mode, count=1, seconds=None, retry_after=5, variant="json", execute=True, after=0, every=None)``
``ConfigError``: a malformed accounts file or option (the message names the key)
"""

from __future__ import annotations

from .config import AccountSpec, ConfigError, PositionSpec, SimConfig, build_config, load_accounts
from .faults import FaultError, FaultSpec
from .replay import Bar, ReplayError, ReplayPath, load_bars
from .server import Simulator, SimulatorThread

__all__ = [
    "AccountSpec",
    "Bar",
    "ConfigError",
    "FaultError",
    "FaultSpec",
    "PositionSpec",
    "ReplayError",
    "ReplayPath",
    "SimConfig",
    "Simulator",
    "SimulatorThread",
    "build_config",
    "load_accounts",
    "load_bars",
]
