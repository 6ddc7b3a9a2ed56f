"""Simulator-only control API under /_sim/ (never under a Binance path).

``GET    /_sim/state``   clocks, marks, faults, sockets, every account's figures
``POST   /_sim/fault``   {"mode": ..., "count": N, "seconds": S, "retry_after": S, "variant": ..., "execute": bool}
``DELETE /_sim/fault``   clear all faults and --fault schedules (``?mode=...`` clears one mode)
``POST   /_sim/marks``   {"BTCUSDT": "30000", ...}: set marks now, run matching/liquidation, push a frame
``POST   /_sim/replay``  {"paused": bool, "speed": N, "at": "HH:MM" | ISO | epoch ms}
``POST   /_sim/funding`` {"api_key": ..., "symbol": "BTCUSDT", "rate": "0.0001"}: charge funding now on
                        that account's positions of the symbol (ACCOUNT_UPDATE m=FUNDING_FEE); the
                        simulator has no funding schedule of its own, so tests and demos ask for it

Answers are JSON; a bad request is HTTP 400 {"error": "..."}.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .faults import MODES, FaultError, FaultSpec
from .numbers import to_decimal
from .replay import ReplayError, start_time_ms

if TYPE_CHECKING:
    from .server import Simulator

PREFIX = "/_sim"


class ControlError(ValueError):
    pass


async def _body(request: web.Request) -> dict:
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError:
        raise ControlError("body must be JSON") from None
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def _answer(body: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, default=str), status=status, content_type="application/json")


async def state(sim: Simulator, request: web.Request) -> object:
    return sim.state()


async def set_fault(sim: Simulator, request: web.Request) -> object:
    try:
        spec = FaultSpec.from_mapping(await _body(request))
    except FaultError as exc:
        raise ControlError(str(exc)) from None
    return {"applied": sim.apply_fault(spec)}


async def clear_fault(sim: Simulator, request: web.Request) -> object:
    mode = request.query.get("mode")
    if mode is not None and mode not in MODES:
        raise ControlError(f"unknown mode {mode!r}")
    sim.clear_faults(mode)
    return {"cleared": mode or "all"}


async def set_marks(sim: Simulator, request: web.Request) -> object:
    body = await _body(request)
    marks = {}
    for symbol, value in body.items():
        if symbol not in sim.exchange.symbols:
            raise ControlError(f"unknown symbol {symbol!r}")
        try:
            marks[symbol] = to_decimal(value)
        except ValueError as exc:
            raise ControlError(f"{symbol}: {exc}") from None
        if marks[symbol] <= 0:
            raise ControlError(f"{symbol}: mark must be > 0")
    return {"marks": {s: str(v) for s, v in sim.set_marks(marks).items()}}


async def set_replay(sim: Simulator, request: web.Request) -> object:
    body = await _body(request)
    unknown = set(body) - {"paused", "speed", "at"}
    if unknown:
        raise ControlError(f"unknown field {sorted(unknown)[0]!r} (allowed: paused, speed, at)")
    paused, speed, at = body.get("paused"), body.get("speed"), body.get("at")
    if paused is not None and not isinstance(paused, bool):
        raise ControlError("paused must be true or false")
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float)) or speed <= 0):
        raise ControlError("speed must be a number > 0")
    at_ms = None
    if at is not None and not sim.market.paths:
        raise ControlError("no replay to move: start the simulator with --replay")
    if at is not None:
        first = sim.market.clock.start_ms
        try:
            at_ms = at if isinstance(at, int) and not isinstance(at, bool) else start_time_ms(str(at), first)
        except ReplayError as exc:
            raise ControlError(str(exc)) from None
    sim.set_replay(paused=paused, speed=speed, at_ms=at_ms)
    return sim.market.describe()


async def charge_funding(sim: Simulator, request: web.Request) -> object:
    body = await _body(request)
    unknown = set(body) - {"api_key", "symbol", "rate"}
    if unknown:
        raise ControlError(f"unknown field {sorted(unknown)[0]!r} (allowed: api_key, symbol, rate)")
    account = sim.exchange.accounts.get(str(body.get("api_key", "")))
    if account is None:
        raise ControlError("api_key must name an account of the simulator")
    symbol = body.get("symbol")
    if symbol not in sim.exchange.symbols:
        raise ControlError(f"unknown symbol {symbol!r}")
    try:
        rate = to_decimal(body.get("rate"))
    except (TypeError, ValueError) as exc:
        raise ControlError(f"rate: {exc}") from None
    return {"charged": sim.exchange.charge_funding(account, symbol, rate)}


Action = Callable[["Simulator", web.Request], Awaitable[object]]


def _wrap(sim: Simulator, action: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            return _answer(await action(sim, request))
        except ControlError as exc:
            return _answer({"error": str(exc)}, 400)

    return handle


def add_routes(app: web.Application, sim: Simulator) -> None:
    for method, path, action in (
        ("GET", "/state", state),
        ("POST", "/fault", set_fault),
        ("DELETE", "/fault", clear_fault),
        ("POST", "/marks", set_marks),
        ("POST", "/replay", set_replay),
        ("POST", "/funding", charge_funding),
    ):
        app.router.add_route(method, PREFIX + path, _wrap(sim, action))
