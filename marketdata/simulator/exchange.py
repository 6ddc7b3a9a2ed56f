"""The matching and margin engine behind the REST and WebSocket front-ends.

Single-threaded by design: every method runs on the simulator's event loop,
so no locks. The engine never formats HTTP: it returns Binance-shaped dicts
and raises ``ApiError``; events for an account's user stream go to ``sink``.

Execution model (documented in docs/SIMULATOR.md): there is no order book.
MARKET orders fill at the current mark; LIMIT orders priced through the mark
fill at once at the mark (taker), others rest and fill at their own price
(maker) when the mark reaches it. Fees: taker 0.04 %, maker 0.02 % of
notional, charged to the cross wallet of the margin asset.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from .algo import order_params_for, parse_algo, triggered
from .clock import now_ms
from .config import SimConfig
from .errors import LISTEN_KEY, MARGIN, MAX_POSITION, REDUCE_ONLY, UNKNOWN_ORDER, ApiError, api_error, missing
from .events import (
    account_config_update,
    account_update,
    balance_row,
    force_order_shape,
    listen_key_expired,
    margin_call,
    multi_assets_update,
    order_shape,
    order_trade_update,
    position_row,
)
from .ledger import CROSS, ISOLATED, Account, AlgoOrder, Order, Position, apply_fill
from .market import Market, MarkSnapshot
from .numbers import ZERO, quantize
from .orders import OrderRequest, check_min_notional, parse_order, symbol_spec, would_take
from .risk import REARM_FRACTION, AccountView, Pool, account_view, make_screen, pools, screen_passes
from .symbols import SymbolSpec

HISTORY = 2000  # closed orders kept per account for GET /fapi/v1/order
FORCE_HISTORY = 1000  # liquidation (and ADL) orders kept per account for GET /fapi/v1/forceOrders
FORCE_WINDOW_MS = 7 * 24 * 3600 * 1000  # forceOrders answers at most 7 days (reference: Binance's docs)
FORCE_LIMIT_DEFAULT, FORCE_LIMIT_MAX = 50, 100
MULTI_ASSETS_ISOLATED = (
    "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M Futures under isolated-margin mode."
)


class EventSink(Protocol):
    def user_event(self, listen_key: str, event: dict) -> None: ...

    def close_listen_key(self, listen_key: str) -> None: ...


class NullSink:
    def user_event(self, listen_key: str, event: dict) -> None:
        pass

    def close_listen_key(self, listen_key: str) -> None:
        pass


@dataclass
class ListenKey:
    key: str
    api_key: str
    expires_at: float  # time.monotonic()


@dataclass(frozen=True)
class Fill:
    position: Position
    qty: Decimal
    price: Decimal
    realized: Decimal
    fee: Decimal
    trade_id: int


class Exchange:
    def __init__(self, config: SimConfig, market: Market, sink: EventSink | None = None) -> None:
        self.config = config
        self.market = market
        self.symbols: dict[str, SymbolSpec] = config.symbols
        self.sink: EventSink = sink or NullSink()
        self.accounts = {spec.api_key: Account.from_spec(spec) for spec in config.accounts}
        self.listen_keys: dict[str, ListenKey] = {}
        self.history: dict[str, deque[Order]] = {key: deque(maxlen=HISTORY) for key in self.accounts}
        # Apart from ``history``: an account that trades a lot must not push its liquidations out.
        self.force_history: dict[str, deque[Order]] = {key: deque(maxlen=FORCE_HISTORY) for key in self.accounts}
        self._order_ids = itertools.count(8_100_000_000)
        self._trade_ids = itertools.count(500_000_000)
        self._liq_seq = itertools.count(1)
        self._countdowns: dict[tuple[str, str], asyncio.TimerHandle] = {}

    # ----------------------------------------------------------------------- views and events

    @property
    def api_secrets(self) -> dict[str, str]:
        return {key: account.spec.api_secret for key, account in self.accounts.items()}

    @property
    def marks(self) -> dict[str, Decimal]:
        return self.market.marks

    def view(self, account: Account) -> AccountView:
        return account_view(account, self.marks, self.symbols)

    def emit(self, account: Account, event: dict) -> None:
        if account.listen_key in self.listen_keys:
            self.sink.user_event(account.listen_key, event)

    def _emit_order(
        self, account: Account, order: Order, exec_type: str, fill: Fill | None = None, maker: bool = False
    ) -> None:
        spec = self.symbols[order.symbol]
        extra = {}
        if fill is not None:
            extra = {
                "last_qty": fill.qty,
                "last_price": fill.price,
                "commission": fill.fee,
                "realized": fill.realized,
                "trade_id": fill.trade_id,
                "maker": maker,
            }
        self.emit(
            account,
            order_trade_update(
                order, spec, exec_type=exec_type, now_ms=now_ms(), margin_asset=spec.margin_asset, **extra
            ),
        )

    def _emit_account(self, account: Account, reason: str, positions: list[Position]) -> None:
        view = self.view(account)
        assets = {self.symbols[p.symbol].margin_asset for p in positions} or set(account.wallets)
        balances = [
            balance_row(a, view.assets[a].wallet, view.assets[a].cross_wallet)
            for a in sorted(assets)
            if a in view.assets
        ]
        rows = [
            position_row(p, self.symbols[p.symbol], account.setting(p.symbol).margin_type, self.marks[p.symbol])
            for p in positions
        ]
        self.emit(account, account_update(reason, balances, rows, now_ms()))

    # ----------------------------------------------------------------------- orders

    def place_order(self, account: Account, params: Mapping[str, str]) -> dict:
        request = parse_order(params, symbols=self.symbols, hedge=account.hedge)
        mark = self.marks[request.spec.symbol]
        check_min_notional(request, request.price or mark)
        if any(o.client_order_id == request.client_order_id for o in account.orders.values()):
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        self._check_reduce(account, request)
        self._check_margin(account, request, request.price or mark)
        order = self._new_order(account, request)
        ack = order_shape(order, request.spec)
        self._emit_order(account, order, "NEW")
        self._execute_new(account, order, request)
        return order_shape(order, request.spec) if request.result else ack

    def _new_order(self, account: Account, request: OrderRequest) -> Order:
        stamp = now_ms()
        order = Order(
            order_id=next(self._order_ids),
            client_order_id=request.client_order_id,
            symbol=request.spec.symbol,
            side=request.side,
            position_side=request.position_side,
            type=request.type,
            time_in_force=request.time_in_force,
            orig_qty=request.qty,
            price=request.price,
            reduce_only=request.reduce_only,
            time_ms=stamp,
            update_ms=stamp,
        )
        account.orders[order.order_id] = order
        self.history[account.api_key].append(order)
        account.order_stamps.append(time.monotonic())
        return order

    def _execute_new(self, account: Account, order: Order, request: OrderRequest) -> None:
        mark = self.marks[order.symbol]
        if order.type == "MARKET" or would_take(order.side, order.price, mark):
            if order.time_in_force == "GTX" and order.type == "LIMIT":
                self._finish(account, order, "EXPIRED")  # post-only would have taken liquidity
                return
            self._fill_order(account, order, order.remaining, mark, maker=False)
        elif order.time_in_force in ("IOC", "FOK"):
            self._finish(account, order, "EXPIRED")

    def _reducible(self, account: Account, symbol: str, position_side: str, delta: Decimal) -> Decimal:
        """How much of ``delta`` only reduces the position (0 if it would open or add)."""
        position = account.positions.get((symbol, position_side))
        held = position.signed_qty if position else ZERO
        if held == 0 or (held > 0) == (delta > 0):
            return ZERO
        return min(abs(delta), abs(held))

    def _check_reduce(self, account: Account, request: OrderRequest) -> None:
        closing_leg = closes_leg(request.position_side, request.side)
        if not (request.reduce_only or closing_leg):
            return
        reducible = self._reducible(account, request.spec.symbol, request.position_side, request.delta)
        # Hedge legs cannot flip: closing more than the leg holds is refused like a reduce-only order.
        if reducible == 0 or (closing_leg and reducible < request.qty):
            raise api_error(REDUCE_ONLY)

    def _opening_qty(self, account: Account, request: OrderRequest) -> Decimal:
        if request.reduce_only:
            return ZERO
        return request.qty - self._reducible(account, request.spec.symbol, request.position_side, request.delta)

    def _check_margin(self, account: Account, request: OrderRequest, price: Decimal) -> None:
        opening = self._opening_qty(account, request)
        if opening == 0:
            return
        symbol = request.spec.symbol
        leverage = account.setting(symbol).leverage
        position = account.positions.get((symbol, request.position_side))
        size_after = abs((position.signed_qty if position else ZERO) + request.delta)
        if size_after * price > request.spec.max_notional_for(leverage):
            raise api_error(MAX_POSITION)
        available = self.view(account).assets.get(request.spec.margin_asset)
        if available is None or opening * price / leverage > available.available:
            raise api_error(MARGIN)

    def _fill_order(self, account: Account, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        if order.reduce_only or closes_leg(order.position_side, order.side):
            qty = min(
                qty, self._reducible(account, order.symbol, order.position_side, qty if order.side == "BUY" else -qty)
            )
            if qty == 0:
                self._finish(account, order, "EXPIRED")
                return
        rate = self.config.maker_fee_rate if maker else self.config.taker_fee_rate
        fill = self._fill(account, order, qty, price, fee_rate=rate)
        if order.remaining > 0 and order.type == "MARKET":
            order.status = "EXPIRED"  # a reduce-only MARKET larger than the position: the rest expires
        self._emit_order(account, order, "TRADE", fill, maker=maker)
        self._emit_account(account, "ORDER", [fill.position])
        if order.status in ("FILLED", "EXPIRED"):
            account.orders.pop(order.order_id, None)

    def _fill(
        self,
        account: Account,
        order: Order,
        qty: Decimal,
        price: Decimal,
        *,
        fee_rate: Decimal,
        liquidation: bool = False,
    ) -> Fill:
        position = account.position(order.symbol, order.position_side)
        setting = account.setting(order.symbol)
        iw_before = position.isolated_wallet
        result = apply_fill(position, qty if order.side == "BUY" else -qty, price)
        fee = quantize(qty * price * fee_rate)  # wallets move in 8-decimal steps, as Binance shows them
        asset = self.symbols[order.symbol].margin_asset
        cross = account.wallets.get(asset, ZERO) + result.realized - fee
        if setting.margin_type == ISOLATED:
            released = quantize(iw_before * result.closed / result.size_before) if result.closed else ZERO
            if position.qty == 0:
                released = iw_before  # no dust left behind in a closed isolated wallet
            # A liquidated isolated position can lose at most its isolated wallet (insurance fund takes the rest).
            cross += max(released + result.realized, ZERO) - result.realized if liquidation else released
            opened_margin = quantize(result.opened * price / setting.leverage)
            position.isolated_wallet = iw_before - released + opened_margin
            cross -= opened_margin
        account.wallets[asset] = cross
        stamp = now_ms()
        position.update_ms = account.update_ms = order.update_ms = stamp
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        account.screen = None
        return Fill(position, qty, price, result.realized, fee, next(self._trade_ids))

    def _finish(self, account: Account, order: Order, status: str) -> None:
        order.status = status
        order.update_ms = now_ms()
        account.orders.pop(order.order_id, None)
        account.screen = None
        self._emit_order(account, order, "CANCELED" if status == "CANCELED" else "EXPIRED")

    # ----------------------------------------------------------------------- cancel and query

    def _find(self, account: Account, params: Mapping[str, str], *, open_only: bool) -> Order:
        symbol = symbol_spec(params, self.symbols).symbol
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if not order_id and not client_id:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        pool = account.orders.values() if open_only else self.history[account.api_key]
        for order in pool:
            if order.symbol == symbol and (str(order.order_id) == order_id or order.client_order_id == client_id):
                return order
        raise api_error(UNKNOWN_ORDER) if open_only else ApiError(-2013, "Order does not exist.")

    def cancel_order(self, account: Account, params: Mapping[str, str]) -> dict:
        order = self._find(account, params, open_only=True)
        self._finish(account, order, "CANCELED")
        return order_shape(order, self.symbols[order.symbol])

    def query_order(self, account: Account, params: Mapping[str, str]) -> dict:
        order = self._find(account, params, open_only=False)
        return order_shape(order, self.symbols[order.symbol], with_time=True)

    def open_orders(self, account: Account, symbol: str | None) -> list[dict]:
        return [
            order_shape(o, self.symbols[o.symbol], with_time=True)
            for o in account.orders.values()
            if symbol is None or o.symbol == symbol
        ]

    def cancel_all(self, account: Account, symbol: str, *, algo: bool = True) -> int:
        orders = [o for o in account.orders.values() if o.symbol == symbol]
        for order in orders:
            self._finish(account, order, "CANCELED")
        if algo:
            for order in [a for a in account.algo_orders.values() if a.symbol == symbol]:
                self.finish_algo(account, order, "CANCELED")
        return len(orders)

    # ----------------------------------------------------------------------- settings

    def change_leverage(self, account: Account, params: Mapping[str, str]) -> dict:
        spec = symbol_spec(params, self.symbols)
        raw = params.get("leverage", "")
        if not raw.isdigit():
            raise missing("leverage")
        leverage = int(raw)
        if not 1 <= leverage <= spec.max_leverage:
            raise ApiError(-4028, f"Leverage {leverage} is not valid")
        held = sum((abs(p.qty) for p in account.open_positions() if p.symbol == spec.symbol), ZERO)
        if held * self.marks[spec.symbol] > spec.max_notional_for(leverage):
            raise api_error(MAX_POSITION)
        account.setting(spec.symbol).leverage = leverage
        account.screen = None
        self.emit(account, account_config_update(spec.symbol, leverage, now_ms()))
        return {
            "leverage": leverage,
            "maxNotionalValue": f"{spec.max_notional_for(leverage).normalize():f}",
            "symbol": spec.symbol,
        }

    def change_margin_type(self, account: Account, params: Mapping[str, str]) -> dict:
        spec = symbol_spec(params, self.symbols)
        wanted = {"ISOLATED": ISOLATED, "CROSSED": CROSS}.get(params.get("marginType", "").upper())
        if wanted is None:
            raise missing("marginType")
        setting = account.setting(spec.symbol)
        if setting.margin_type == wanted:
            raise ApiError(-4046, "No need to change margin type.")
        if any(p.symbol == spec.symbol for p in account.open_positions()) or any(
            o.symbol == spec.symbol for o in account.orders.values()
        ):
            raise ApiError(-4048, "Margin type cannot be changed if there exists position.")
        setting.margin_type = wanted
        account.screen = None
        self._emit_margin_type(account, spec.symbol)
        return {"code": 200, "msg": "success"}

    def _emit_margin_type(self, account: Account, symbol: str) -> None:
        """ACCOUNT_UPDATE m=MARGIN_TYPE_CHANGE with the symbol's (flat: Binance refuses the change
        while a position is open) rows in the new ``mt``: Binance lists the reason but its payload
        is not documented; this is the shape its other ACCOUNT_UPDATEs have."""
        spec = self.symbols[symbol]
        setting = account.setting(symbol)
        rows = [
            position_row(Position(symbol, side), spec, setting.margin_type, self.marks[symbol])
            for side in account.sides()
        ]
        asset = spec.margin_asset
        view = self.view(account).assets.get(asset)
        balances = [balance_row(asset, view.wallet, view.cross_wallet)] if view is not None else []
        self.emit(account, account_update("MARGIN_TYPE_CHANGE", balances, rows, now_ms()))

    def change_multi_assets(self, account: Account, params: Mapping[str, str]) -> dict:
        """POST /fapi/v1/multiAssetsMargin. The flag is reported (GET, account v2, the user stream)
        but the margin maths stay single-asset: the simulator's wallets are per asset already."""
        raw = params.get("multiAssetsMargin", "").lower()
        if raw not in ("true", "false"):
            raise missing("multiAssetsMargin")
        wanted = raw == "true"
        if wanted == account.multi_assets:
            raise ApiError(-4171, "Adjusted Multi-Assets mode is same as user's current Multi-Assets mode.")
        if wanted and any(s.margin_type == ISOLATED for s in account.settings.values()):
            raise ApiError(-4167, MULTI_ASSETS_ISOLATED)
        account.multi_assets = wanted
        self.emit(account, multi_assets_update(wanted, now_ms()))
        return {"code": 200, "msg": "success"}

    # ----------------------------------------------------------------------- liquidation history and funding

    def force_orders(self, account: Account, params: Mapping[str, str]) -> list[dict]:
        """GET /fapi/v1/forceOrders: the account's liquidation and ADL orders in a time window,
        oldest first (so a client pages on with startTime = the last row's time + 1)."""
        symbol = symbol_spec(params, self.symbols).symbol if params.get("symbol") else None
        kind = params.get("autoCloseType", "")
        if kind not in ("", "LIQUIDATION", "ADL"):
            raise ApiError(-1130, "Data sent for parameter 'autoCloseType' is not valid.")
        start = _ms_param(params, "startTime", -1)
        # A window either side: before endTime (or now) when only that is given, after startTime when it is.
        end = _ms_param(params, "endTime", now_ms() if start < 0 else start + FORCE_WINDOW_MS)
        start = end - FORCE_WINDOW_MS if start < 0 else start
        if start > end:
            raise ApiError(-1023, "Start time is greater than end time.")
        if end - start > FORCE_WINDOW_MS:
            raise ApiError(-1127, "Lookup interval is too big.")
        limit = _ms_param(params, "limit", FORCE_LIMIT_DEFAULT)
        if not 1 <= limit <= FORCE_LIMIT_MAX:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        rows = [
            o
            for o in self.force_history[account.api_key]
            if start <= o.time_ms <= end
            and (symbol is None or o.symbol == symbol)
            and (not kind or (kind == "ADL") == (o.client_order_id == ADL_CLIENT_ID))
        ]
        return [force_order_shape(o, self.symbols[o.symbol]) for o in rows[:limit]]

    def charge_funding(self, account: Account, symbol: str, rate: Decimal) -> list[dict]:
        """Funding at ``rate`` on the account's open positions of ``symbol`` (longs pay a positive
        rate), one ACCOUNT_UPDATE m=FUNDING_FEE per position as Binance sends them: a cross
        position's has only ``B``; an isolated one's ``B`` plus that position, whose isolated
        wallet pays. ``bc`` is the fee (Binance: the balance change other than PnL and commission)."""
        spec = self.symbols[symbol]
        asset, mark = spec.margin_asset, self.marks[symbol]
        isolated = account.setting(symbol).margin_type == ISOLATED
        charged = []
        for position in [p for p in account.open_positions() if p.symbol == symbol]:
            amount = quantize(-position.signed_qty * mark * rate)
            if isolated:
                position.isolated_wallet += amount
            else:
                account.wallets[asset] = account.wallets.get(asset, ZERO) + amount
            account.screen = None
            view = self.view(account).assets[asset]
            rows = [position_row(position, spec, ISOLATED, mark)] if isolated else []
            balances = [balance_row(asset, view.wallet, view.cross_wallet, amount)]
            self.emit(account, account_update("FUNDING_FEE", balances, rows, now_ms()))
            charged.append({"symbol": symbol, "side": position.side, "asset": asset, "amount": str(amount)})
        self.check_risk(account)  # funding can be what tips a position over
        return charged

    # ----------------------------------------------------------------------- dead-man switch

    def countdown_cancel_all(self, account: Account, params: Mapping[str, str]) -> dict:
        spec = symbol_spec(params, self.symbols)
        raw = params.get("countdownTime", "")
        if not raw.isdigit():
            raise missing("countdownTime")
        key = (account.api_key, spec.symbol)
        handle = self._countdowns.pop(key, None)
        if handle is not None:
            handle.cancel()
        if int(raw) > 0:
            loop = asyncio.get_running_loop()
            self._countdowns[key] = loop.call_later(int(raw) / 1000, self._countdown_fired, account, spec.symbol)
        return {"symbol": spec.symbol, "countdownTime": raw}

    def _countdown_fired(self, account: Account, symbol: str) -> None:
        self._countdowns.pop((account.api_key, symbol), None)
        self.cancel_all(account, symbol)

    def stop_timers(self) -> None:
        for handle in self._countdowns.values():
            handle.cancel()
        self._countdowns.clear()

    # ----------------------------------------------------------------------- algo (conditional) orders

    def place_algo(self, account: Account, params: Mapping[str, str]) -> AlgoOrder:
        order = parse_algo(
            params, account=account, symbols=self.symbols, mark_of=self.marks.__getitem__, algo_id=next(self._order_ids)
        )
        account.algo_orders[order.algo_id] = order
        account.order_stamps.append(time.monotonic())
        return order

    def finish_algo(self, account: Account, order: AlgoOrder, status: str) -> None:
        order.status, order.update_ms = status, now_ms()
        account.algo_orders.pop(order.algo_id, None)

    def find_algo(self, account: Account, params: Mapping[str, str]) -> AlgoOrder:
        algo_id, client_id = params.get("algoId"), params.get("clientAlgoId")
        if not algo_id and not client_id:
            raise ApiError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        for order in account.algo_orders.values():
            if str(order.algo_id) == algo_id or order.client_algo_id == client_id:
                return order
        raise api_error(UNKNOWN_ORDER)

    def _trigger_algos(self, account: Account, snapshot: MarkSnapshot) -> None:
        for order in [a for a in account.algo_orders.values() if a.symbol in snapshot]:
            if not triggered(order, snapshot[order.symbol]):
                continue
            order.trigger_ms = now_ms()
            params = order_params_for(order, account)
            status = "EXPIRED"
            try:
                if params:
                    self.place_order(account, params)
                    status = "FINISHED"
            except ApiError:
                pass  # e.g. margin gone by the time it triggered: Binance expires it too
            self.finish_algo(account, order, status)

    # ----------------------------------------------------------------------- marks: matching and risk

    def apply_marks(self, snapshot: MarkSnapshot) -> None:
        """React to new marks: fill crossed LIMIT orders, trigger algo orders, margin-call, liquidate."""
        if not snapshot:
            return
        for account in self.accounts.values():
            if account.orders:
                self._match(account, snapshot)
            if account.algo_orders:
                self._trigger_algos(account, snapshot)
            self.check_risk(account)

    def _match(self, account: Account, snapshot: MarkSnapshot) -> None:
        for order in [o for o in account.orders.values() if o.symbol in snapshot and o.type == "LIMIT"]:
            if would_take(order.side, order.price, snapshot[order.symbol]):
                self._fill_order(account, order, order.remaining, order.price, maker=True)

    def check_risk(self, account: Account) -> None:
        if not any(p.qty for p in account.positions.values()):
            return
        if account.screen is not None and screen_passes(account.screen, self.marks):  # type: ignore[arg-type]
            return
        view = self.view(account)
        all_pools = pools(view)
        liquidated = False
        for pool in all_pools:
            if pool.breached:
                self._liquidate(account, view, pool)
                liquidated = True
            else:
                self._margin_call(account, view, pool)
        account.screen = None if liquidated else make_screen(view, all_pools, self.config.margin_call_ratio)

    def _margin_call(self, account: Account, view: AccountView, pool: Pool) -> None:
        level = self.config.margin_call_ratio
        ratio = pool.ratio
        if ratio >= level and pool.key not in account.margin_calls:
            account.margin_calls.add(pool.key)
            cross = view.assets[pool.key[1]].cross_wallet if pool.key[0] == CROSS else None
            self.emit(account, margin_call(pool.views, cross_wallet=cross, now_ms=now_ms()))
        elif ratio < level * REARM_FRACTION:
            account.margin_calls.discard(pool.key)

    def _liquidate(self, account: Account, view: AccountView, pool: Pool) -> None:
        """Close the pool's positions at the mark: LIQUIDATION orders, then one ACCOUNT_UPDATE.

        Binance first cancels the account's open orders on the symbols being liquidated.
        The wallet keeps what is left; a deficit (gap past the bankruptcy price) would be the
        insurance fund's, so the cross wallet is floored at 0.
        """
        for symbol in {v.position.symbol for v in pool.views}:
            self.cancel_all(account, symbol)
        closed = []
        for v in pool.views:
            position = v.position
            stamp = now_ms()
            order = Order(
                order_id=next(self._order_ids),
                client_order_id=f"autoclose-{stamp}{next(self._liq_seq):06d}",
                symbol=position.symbol,
                side="SELL" if position.signed_qty > 0 else "BUY",
                position_side=position.side,
                type="LIQUIDATION",
                time_in_force="IOC",
                orig_qty=abs(position.qty),
                price=v.mark,
                reduce_only=True,
                time_ms=stamp,
                update_ms=stamp,
            )
            self.history[account.api_key].append(order)
            self.force_history[account.api_key].append(order)
            fill = self._fill(account, order, abs(position.qty), v.mark, fee_rate=ZERO, liquidation=True)
            self._emit_order(account, order, "TRADE", fill)
            closed.append(position)
        asset = pool.views[0].spec.margin_asset
        account.wallets[asset] = max(account.wallets.get(asset, ZERO), ZERO)
        account.margin_calls.discard(pool.key)
        account.liquidations += 1
        self._emit_account(account, "ORDER", closed)

    # ----------------------------------------------------------------------- listen keys

    def listen_key_create(self, account: Account) -> str:
        """One key per account: a second POST returns the live key and extends it, as Binance does."""
        live = self.listen_keys.get(account.listen_key or "")
        if live is None:
            live = ListenKey(secrets.token_hex(32), account.api_key, 0.0)
            self.listen_keys[live.key] = live
            account.listen_key = live.key
        live.expires_at = time.monotonic() + self.config.listen_key_validity_s
        return live.key

    def _own_key(self, account: Account, params: Mapping[str, str]) -> ListenKey:
        key = params.get("listenKey") or account.listen_key or ""
        live = self.listen_keys.get(key)
        if live is None or live.api_key != account.api_key:
            raise api_error(LISTEN_KEY)
        return live

    def listen_key_keepalive(self, account: Account, params: Mapping[str, str]) -> str:
        live = self._own_key(account, params)
        live.expires_at = time.monotonic() + self.config.listen_key_validity_s
        return live.key

    def listen_key_close(self, account: Account, params: Mapping[str, str]) -> None:
        live = self._own_key(account, params)
        self._drop_key(live.key)

    def listen_key_owner(self, key: str) -> Account | None:
        live = self.listen_keys.get(key)
        return None if live is None else self.accounts[live.api_key]

    def _drop_key(self, key: str) -> None:
        live = self.listen_keys.pop(key, None)
        if live is not None and self.accounts[live.api_key].listen_key == key:
            self.accounts[live.api_key].listen_key = None
        self.sink.close_listen_key(key)

    def expire_listen_keys(self, *, only_expired: bool = False) -> list[str]:
        """Send listenKeyExpired, forget the keys (PUT -> -1125) and close their sockets."""
        now = time.monotonic()
        keys = [k for k, live in self.listen_keys.items() if not only_expired or live.expires_at <= now]
        for key in keys:
            self.sink.user_event(key, listen_key_expired(key, now_ms()))
            self._drop_key(key)
        return keys

    # ----------------------------------------------------------------------- state for /_sim/state

    def order_counts(self, account: Account) -> tuple[int, int]:
        """Orders placed in the last 10 s and 60 s (X-MBX-ORDER-COUNT-10S / -1M)."""
        now = time.monotonic()
        stamps = account.order_stamps
        while stamps and stamps[0] < now - 60:
            stamps.popleft()
        return sum(1 for s in stamps if s >= now - 10), len(stamps)


ADL_CLIENT_ID = "adl_autoclose"  # Binance's client id on ADL orders (liquidations: "autoclose-…")


def _ms_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def closes_leg(position_side: str, side: str) -> bool:
    """A hedge-mode order that can only shrink its leg (SELL LONG, BUY SHORT)."""
    return (position_side, side) in (("LONG", "SELL"), ("SHORT", "BUY"))
