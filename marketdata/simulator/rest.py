"""REST front-end: Binance paths, Binance shapes, Binance errors.

Each route declares its security (NONE, API_KEY = USER_STREAM, SIGNED =
TRADE/USER_DATA) and its request weight. One wrapper does what every Binance
endpoint does: count weight per client IP and minute, honour injected HTTP
faults, parse query + form body (query wins), authenticate, call the handler,
and answer JSON with the rate-limit headers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from . import klines, shapes
from .auth import check_api_key, check_signature, check_timestamp
from .clock import now_ms
from .errors import BANNED, TOO_MANY, UNKNOWN_STATUS, ApiError, missing
from .events import algo_shape
from .ledger import Account, AlgoOrder
from .orders import symbol_spec
from .risk import AccountView

if TYPE_CHECKING:
    from .server import Simulator

NONE, API_KEY, SIGNED = "NONE", "API_KEY", "SIGNED"
JSON = "application/json"


@dataclass
class Ctx:
    sim: Simulator
    request: web.Request
    params: dict[str, str]
    account: Account | None

    @property
    def me(self) -> Account:
        assert self.account is not None  # SIGNED/API_KEY routes always have one
        return self.account

    def symbol(self) -> str | None:
        return symbol_spec(self.params, self.sim.exchange.symbols).symbol if "symbol" in self.params else None


Handler = Callable[[Ctx], object]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    security: str = NONE
    weight: int = 1
    order: bool = False  # counts towards X-MBX-ORDER-COUNT-*


class WeightCounter:
    """X-MBX-USED-WEIGHT-1M: weight used by this client IP in the current UTC minute."""

    def __init__(self) -> None:
        self._used: dict[str, tuple[int, int]] = {}

    def add(self, ip: str, weight: int) -> int:
        minute = int(time.time() // 60)
        start, used = self._used.get(ip, (minute, 0))
        used = (used if start == minute else 0) + weight
        self._used[ip] = (minute, used)
        return used


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status, content_type=JSON, headers=headers)


async def _params(request: web.Request) -> tuple[dict[str, str], str, str]:
    raw_query = request.rel_url.raw_query_string
    raw_body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
    params = dict(parse_qsl(raw_body, keep_blank_values=True))
    params.update(parse_qsl(raw_query, keep_blank_values=True))  # the query string wins on a clash
    return params, raw_query, raw_body


def _authenticate(
    sim: Simulator, route: Route, request: web.Request, params: dict[str, str], raw: tuple[str, str]
) -> Account | None:
    if route.security == NONE:
        return None
    secret = check_api_key(request.headers.get("X-MBX-APIKEY"), sim.exchange.api_secrets)
    if route.security == SIGNED:
        check_signature(raw_query=raw[0], raw_body=raw[1], secret=secret)
        check_timestamp(params, now_ms())
    return sim.exchange.accounts[request.headers["X-MBX-APIKEY"]]


def _fault_response(sim: Simulator, headers: dict[str, str]) -> web.Response | None:
    refused = sim.faults.take_http()
    if refused is None:
        return None
    status, retry_after = refused
    headers["Retry-After"] = str(retry_after)
    code, msg = TOO_MANY if status == 429 else BANNED
    until_ms = int((time.time() + retry_after) * 1000)
    return json_response({"code": code, "msg": msg.format(until=until_ms)}, status, headers)


def wrap(sim: Simulator, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        headers = {"X-MBX-USED-WEIGHT-1M": str(sim.weights.add(request.remote or "?", _weight(route, request)))}
        refused = _fault_response(sim, headers)
        if refused is not None:
            return refused
        params, raw_query, raw_body = await _params(request)
        account = None
        try:
            account = _authenticate(sim, route, request, params, (raw_query, raw_body))
            ctx = Ctx(sim, request, params, account)
            if route.order and (execute := sim.faults.take_order503()) is not None:
                return _unknown_status(ctx, route, execute, headers)
            body, status = route.handler(ctx), 200
        except ApiError as exc:
            body, status = exc.body(), exc.status
        if route.order and account is not None:
            _order_headers(sim, account, headers)
        return json_response(body, status, headers)

    return handle


def _unknown_status(ctx: Ctx, route: Route, execute: bool, headers: dict[str, str]) -> web.Response:
    """503 "Unknown error": Binance may or may not have executed the order; here it did iff ``execute``."""
    if execute:
        with contextlib.suppress(ApiError):  # rejected anyway: the client still only sees the 503
            route.handler(ctx)
    _order_headers(ctx.sim, ctx.me, headers)
    return json_response({"code": UNKNOWN_STATUS[0], "msg": UNKNOWN_STATUS[1]}, 503, headers)


def _order_headers(sim: Simulator, account: Account, headers: dict[str, str]) -> None:
    ten_s, one_m = sim.exchange.order_counts(account)
    headers["X-MBX-ORDER-COUNT-10S"] = str(ten_s)
    headers["X-MBX-ORDER-COUNT-1M"] = str(one_m)


def _weight(route: Route, request: web.Request) -> int:
    if callable(route.weight):  # klines: by its limit parameter
        return route.weight(request)
    # Binance charges the all-symbols variants of these far more.
    heavy = {"/openOrders": 40, "/premiumIndex": 10, "/forceOrders": 50, "/assetIndex": 10}
    if "symbol" not in request.query and route.path.endswith(tuple(heavy)):
        return heavy["/" + route.path.rsplit("/", 1)[1]]
    return route.weight


# --------------------------------------------------------------------------- handlers: public


def ping(ctx: Ctx) -> dict:
    return {}


def server_time(ctx: Ctx) -> dict:
    return {"serverTime": now_ms()}


def exchange_info(ctx: Ctx) -> dict:
    return shapes.exchange_info(ctx.sim.exchange_symbols)


def premium_index(ctx: Ctx) -> object:
    exchange = ctx.sim.exchange
    symbol = ctx.symbol()
    if symbol:
        return shapes.premium_index(exchange.symbols[symbol], exchange.marks[symbol])
    return [shapes.premium_index(spec, exchange.marks[s]) for s, spec in exchange.symbols.items()]


INDEX_ASSETS = ("BTC", "ETH", "BNB", "USDC")  # served whenever their USDT mark is known (USDC at 1)


def asset_index(ctx: Ctx) -> object:
    """GET /fapi/v1/assetIndex: every asset held in a simulated wallet (USDT aside) and INDEX_ASSETS,
    the index from the asset's USDT mark (stablecoins at 1); one object when a symbol is asked for."""
    exchange, stamp = ctx.sim.exchange, now_ms()
    held = {a for account in exchange.accounts.values() for a in account.wallets}
    rows = {}
    for asset in sorted((held | set(INDEX_ASSETS)) - {"USDT"}):
        mark = exchange.marks.get(f"{asset}USDT")
        index = Decimal(1) if asset in ("USDC", "FDUSD") else mark
        if index is not None:
            rows[f"{asset}USD"] = shapes.asset_index(asset, index, stamp)
    symbol = ctx.params.get("symbol")
    if symbol:
        if symbol not in rows:
            raise ApiError(-1121, "Invalid symbol.")
        return rows[symbol]
    return list(rows.values())


# --------------------------------------------------------------------------- handlers: account


def leverage_bracket(ctx: Ctx) -> object:
    symbols = ctx.sim.exchange.symbols
    symbol = ctx.symbol()
    rows = [
        {"symbol": s, "brackets": list(spec.bracket_rows)} for s, spec in symbols.items() if s == symbol or not symbol
    ]
    return rows[0] if symbol else rows  # a single object when a symbol is given, as the docs say


def _view(ctx: Ctx) -> AccountView:
    return ctx.sim.exchange.view(ctx.me)


def account_v2(ctx: Ctx) -> dict:
    return shapes.account_v2(ctx.me, _view(ctx), ctx.sim.exchange.symbols)


def account_v3(ctx: Ctx) -> dict:
    return shapes.account_v3(ctx.me, _view(ctx), ctx.sim.exchange.symbols)


def balance(ctx: Ctx) -> list[dict]:
    return shapes.balances(ctx.me, _view(ctx))


def position_risk_v2(ctx: Ctx) -> list[dict]:
    exchange = ctx.sim.exchange
    return shapes.position_risk_v2(ctx.me, _view(ctx), exchange.symbols, exchange.marks, ctx.symbol())


def position_risk_v3(ctx: Ctx) -> list[dict]:
    exchange = ctx.sim.exchange
    return shapes.position_risk_v3(ctx.me, _view(ctx), exchange.symbols, exchange.marks, ctx.symbol())


def symbol_config(ctx: Ctx) -> list[dict]:
    return shapes.symbol_config(ctx.me, ctx.sim.exchange.symbols, ctx.symbol())


def position_mode(ctx: Ctx) -> dict:
    return {"dualSidePosition": ctx.me.hedge}


def multi_assets(ctx: Ctx) -> dict:
    return {"multiAssetsMargin": ctx.me.multi_assets}


def change_multi_assets(ctx: Ctx) -> dict:
    return ctx.sim.exchange.change_multi_assets(ctx.me, ctx.params)


def force_orders(ctx: Ctx) -> list[dict]:
    return ctx.sim.exchange.force_orders(ctx.me, ctx.params)


# --------------------------------------------------------------------------- handlers: trading


def new_order(ctx: Ctx) -> dict:
    return ctx.sim.exchange.place_order(ctx.me, ctx.params)


def cancel_order(ctx: Ctx) -> dict:
    return ctx.sim.exchange.cancel_order(ctx.me, ctx.params)


def query_order(ctx: Ctx) -> dict:
    return ctx.sim.exchange.query_order(ctx.me, ctx.params)


def open_orders(ctx: Ctx) -> list[dict]:
    return ctx.sim.exchange.open_orders(ctx.me, ctx.symbol())


def cancel_all(ctx: Ctx) -> dict:
    symbol = ctx.symbol()
    if not symbol:
        raise missing("symbol")
    ctx.sim.exchange.cancel_all(ctx.me, symbol, algo=False)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def change_leverage(ctx: Ctx) -> dict:
    return ctx.sim.exchange.change_leverage(ctx.me, ctx.params)


def change_margin_type(ctx: Ctx) -> dict:
    return ctx.sim.exchange.change_margin_type(ctx.me, ctx.params)


def countdown_cancel_all(ctx: Ctx) -> dict:
    return ctx.sim.exchange.countdown_cancel_all(ctx.me, ctx.params)


def new_algo_order(ctx: Ctx) -> dict:
    exchange = ctx.sim.exchange
    order = exchange.place_algo(ctx.me, ctx.params)
    return shapes_algo(ctx, order)


def shapes_algo(ctx: Ctx, order: AlgoOrder) -> dict:
    return algo_shape(order, ctx.sim.exchange.symbols[order.symbol])


def cancel_algo_order(ctx: Ctx) -> dict:
    exchange = ctx.sim.exchange
    order = exchange.find_algo(ctx.me, ctx.params)
    exchange.finish_algo(ctx.me, order, "CANCELED")
    return {"algoId": order.algo_id, "clientAlgoId": order.client_algo_id, "code": "200", "msg": "success"}


def open_algo_orders(ctx: Ctx) -> list[dict]:
    symbol = ctx.symbol()
    return [shapes_algo(ctx, o) for o in ctx.me.algo_orders.values() if not symbol or o.symbol == symbol]


def cancel_all_algo(ctx: Ctx) -> dict:
    symbol = ctx.symbol()
    if not symbol:
        raise missing("symbol")
    for order in [o for o in ctx.me.algo_orders.values() if o.symbol == symbol]:
        ctx.sim.exchange.finish_algo(ctx.me, order, "CANCELED")
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


# GET /sapi/v1/account/apiRestrictions in Binance's shape. A simulated key is IP-restricted and
# cannot withdraw unless a test says otherwise: ``exchange.api_restrictions[api_key] = {...}``.
API_RESTRICTIONS = {
    "ipRestrict": True,
    "createTime": 1_700_000_000_000,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": True,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": False,
    "enablePortfolioMarginTrading": False,
}


def api_restrictions(ctx: Ctx) -> dict:
    overrides = getattr(ctx.sim.exchange, "api_restrictions", {}).get(ctx.me.api_key, {})
    return {**API_RESTRICTIONS, **overrides}


# --------------------------------------------------------------------------- handlers: user stream


def listen_key_new(ctx: Ctx) -> dict:
    return {"listenKey": ctx.sim.exchange.listen_key_create(ctx.me)}


def listen_key_keepalive(ctx: Ctx) -> dict:
    return {"listenKey": ctx.sim.exchange.listen_key_keepalive(ctx.me, ctx.params)}


def listen_key_close(ctx: Ctx) -> dict:
    ctx.sim.exchange.listen_key_close(ctx.me, ctx.params)
    return {}


ROUTES = (
    Route("GET", "/api/v3/ping", ping),
    Route("GET", "/api/v3/time", server_time),
    Route("GET", "/fapi/v1/ping", ping),
    Route("GET", "/fapi/v1/time", server_time),
    Route("GET", "/fapi/v1/exchangeInfo", exchange_info),
    Route("GET", "/fapi/v1/premiumIndex", premium_index),
    Route("GET", "/fapi/v1/assetIndex", asset_index, NONE),
    Route("GET", "/fapi/v1/leverageBracket", leverage_bracket, SIGNED),
    Route("GET", "/fapi/v2/account", account_v2, SIGNED, 5),
    Route("GET", "/fapi/v3/account", account_v3, SIGNED, 5),
    Route("GET", "/fapi/v2/balance", balance, SIGNED, 5),
    Route("GET", "/fapi/v3/balance", balance, SIGNED, 5),
    Route("GET", "/fapi/v2/positionRisk", position_risk_v2, SIGNED, 5),
    Route("GET", "/fapi/v3/positionRisk", position_risk_v3, SIGNED, 5),
    Route("GET", "/fapi/v1/symbolConfig", symbol_config, SIGNED, 5),
    Route("GET", "/fapi/v1/positionSide/dual", position_mode, SIGNED, 30),
    Route("GET", "/fapi/v1/multiAssetsMargin", multi_assets, SIGNED, 30),
    Route("POST", "/fapi/v1/multiAssetsMargin", change_multi_assets, SIGNED),
    Route("GET", "/fapi/v1/forceOrders", force_orders, SIGNED, 20),
    Route("POST", "/fapi/v1/order", new_order, SIGNED, 0, order=True),
    Route("DELETE", "/fapi/v1/order", cancel_order, SIGNED),
    Route("GET", "/fapi/v1/order", query_order, SIGNED),
    Route("GET", "/fapi/v1/openOrders", open_orders, SIGNED),
    Route("DELETE", "/fapi/v1/allOpenOrders", cancel_all, SIGNED),
    Route("POST", "/fapi/v1/leverage", change_leverage, SIGNED),
    Route("POST", "/fapi/v1/marginType", change_margin_type, SIGNED),
    Route("POST", "/fapi/v1/countdownCancelAll", countdown_cancel_all, SIGNED, 10),
    Route("POST", "/fapi/v1/algoOrder", new_algo_order, SIGNED, 0, order=True),
    Route("DELETE", "/fapi/v1/algoOrder", cancel_algo_order, SIGNED),
    Route("GET", "/fapi/v1/openAlgoOrders", open_algo_orders, SIGNED),
    Route("DELETE", "/fapi/v1/algoOpenOrders", cancel_all_algo, SIGNED),
    Route("GET", "/sapi/v1/account/apiRestrictions", api_restrictions, SIGNED),
    Route("POST", "/fapi/v1/listenKey", listen_key_new, API_KEY),
    Route("PUT", "/fapi/v1/listenKey", listen_key_keepalive, API_KEY),
    Route("DELETE", "/fapi/v1/listenKey", listen_key_close, API_KEY),
)


def add_routes(app: web.Application, sim: Simulator) -> None:
    kline_route = Route("GET", "/fapi/v1/klines", klines.register(app, sim), NONE, klines.request_weight)  # type: ignore[arg-type]
    for route in (*ROUTES, kline_route):
        app.router.add_route(route.method, route.path, wrap(sim, route))
