"""The order gate's check: one pure function from (order, account, market, profile, counters) to a decision.

Plain Python, no Django, no I/O. The API (rules/gate.py gathers the inputs), the kill
switch, automatic actions and any dashboard ticket call ``check_order``; nothing else
decides whether an order may go to the exchange. docs/ORDER_GATE.md lists every reason
code with its formula.

Public API
----------
``Order.make(...)``                            a validated order (Decimal in, exact integer units inside)
``symbol_view(...)`` ``account_view(...)`` ``market_state(...)`` ``compile_profile(values)`` ``Counters(...)``
    build the inputs once, when the state or profile is loaded, so the per-order work is a
    handful of integer and float comparisons
``check_order(order, account, market, profile, counters) -> Decision``
``failure_rows(decision)`` ``projection_row(decision)``   Decimal/str rendering for the API

Exactness
---------
Order-level comparisons (exchange filters, quantity and notional caps, the price collar,
the market protection bound) run on integers: quantities and prices in units of 1e-8
(an order may carry at most 8 decimals), notionals in units of 1e-16, and ratio limits as
exact fractions (``Decimal.as_integer_ratio``). They agree with Decimal arithmetic exactly,
at the limit too. The projected account figures (notional, margin ratio, liquidation price)
are floats; tests/test_checks_projection.py checks them against positions.figures and
positions.margin (Decimal) to the cent on random accounts.

Limits are inclusive: a value equal to its limit passes; only beyond it denies (a count
"including this order" above the cap, a distance below its floor).

Compiled
--------
Setup (scripts/build_checks.py) compiles this file with Cython, typed by ``checks.pxd``, into
``rules/checks.*.so``, which Python imports before the .py. ``COMPILED`` says which one runs.
The source stays plain Python and is the reference: the check tests run on both
(rules/tests/test_checks_pure.py). An extension built from another version of this file is
never used: the source runs instead, with a warning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import warnings
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from operator import itemgetter
from typing import Any

from positions.margin import RATIO_CAP, Bracket

UNIT = 10**8  # quantities and prices as integers of 1e-8
_NO_LIMIT = 1 << 126  # above any count or unit value an order can carry (an unset cap)
UNIT_EXP = 8
_UNIT_Q = Decimal("1e-8")
_CAP = float(RATIO_CAP)
_INF = math.inf
# True in the Cython extension (its __file__ is the .so), False when this source runs.
COMPILED = not __file__.endswith(".py")

ACTIVE, REDUCING, HALTED = 0, 1, 2
TRADING_STATES = {"ACTIVE": ACTIVE, "REDUCING": REDUCING, "HALTED": HALTED}
SIDES = ("BUY", "SELL")
TYPES = ("LIMIT", "MARKET")
POSITION_SIDES = ("BOTH", "LONG", "SHORT")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
NOT_RESTING = ("IOC", "FOK")

# --------------------------------------------------------------------------- reason codes

TRADING_HALTED = "TRADING_HALTED"
TRADING_REDUCING = "TRADING_REDUCING"
PROFILE_MISSING = "PROFILE_MISSING"
SYMBOL_UNKNOWN = "SYMBOL_UNKNOWN"
FEED_STALE = "FEED_STALE"
MARK_MISSING = "MARK_MISSING"
MARK_STALE = "MARK_STALE"
BRACKETS_MISSING = "BRACKETS_MISSING"
ACCOUNT_STATE_MISSING = "ACCOUNT_STATE_MISSING"
ACCOUNT_STATE_STALE = "ACCOUNT_STATE_STALE"
ACCOUNT_STATE_INCOMPLETE = "ACCOUNT_STATE_INCOMPLETE"
SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"
POSITION_SIDE_INVALID = "POSITION_SIDE_INVALID"
REDUCE_ONLY_IN_HEDGE_MODE = "REDUCE_ONLY_IN_HEDGE_MODE"
PRICE_TICK = "PRICE_TICK"
QTY_STEP = "QTY_STEP"
QTY_BELOW_MIN = "QTY_BELOW_MIN"
QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
MARKET_QTY_ABOVE_MAX = "MARKET_QTY_ABOVE_MAX"
NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
ORDER_QTY_HIGH = "ORDER_QTY_HIGH"
ORDER_NOTIONAL_HIGH = "ORDER_NOTIONAL_HIGH"
OPEN_ORDERS_CAP = "OPEN_ORDERS_CAP"
DAILY_ORDERS_CAP = "DAILY_ORDERS_CAP"
DAILY_CANCELS_CAP = "DAILY_CANCELS_CAP"
DAILY_FILLS_CAP = "DAILY_FILLS_CAP"
SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
SYMBOL_DENIED = "SYMBOL_DENIED"
PRICE_COLLAR = "PRICE_COLLAR"
MARKET_UNPROTECTED = "MARKET_UNPROTECTED"
MARKET_SLIPPAGE = "MARKET_SLIPPAGE"
RATE_PER_SECOND = "RATE_PER_SECOND"
RATE_PER_MINUTE = "RATE_PER_MINUTE"
DUPLICATE_ORDER = "DUPLICATE_ORDER"
SELF_TRADE = "SELF_TRADE"
REDUCE_ONLY_NO_POSITION = "REDUCE_ONLY_NO_POSITION"
REDUCE_ONLY_WRONG_SIDE = "REDUCE_ONLY_WRONG_SIDE"
REDUCE_ONLY_EXCEEDS_POSITION = "REDUCE_ONLY_EXCEEDS_POSITION"
POSITION_NOTIONAL_HIGH = "POSITION_NOTIONAL_HIGH"
ACCOUNT_NOTIONAL_HIGH = "ACCOUNT_NOTIONAL_HIGH"
LEVERAGE_HIGH = "LEVERAGE_HIGH"
POSITION_LEVERAGE_HIGH = "POSITION_LEVERAGE_HIGH"
MARGIN_RATIO_HIGH = "MARGIN_RATIO_HIGH"
LIQUIDATION_NEAR = "LIQUIDATION_NEAR"
ASSET_ABOVE_CAP = "ASSET_ABOVE_CAP"

# check name -> its reason codes. `RiskProfile.disabled_checks` may name a check (all its
# codes) or single codes. "trading_state" and "profile" are not switchable: a profile must
# not be able to undo a risk manager's halt, nor make a missing profile mean "no limits".
CHECKS: dict[str, tuple[str, ...]] = {
    "trading_state": (TRADING_HALTED, TRADING_REDUCING),
    "profile": (PROFILE_MISSING, SYMBOL_UNKNOWN),
    "freshness": (
        FEED_STALE,
        MARK_MISSING,
        MARK_STALE,
        BRACKETS_MISSING,
        ACCOUNT_STATE_MISSING,
        ACCOUNT_STATE_STALE,
        ACCOUNT_STATE_INCOMPLETE,
    ),
    "symbol_status": (SYMBOL_NOT_TRADING,),
    "position_side": (POSITION_SIDE_INVALID, REDUCE_ONLY_IN_HEDGE_MODE),
    "filters": (PRICE_TICK, QTY_STEP, QTY_BELOW_MIN, QTY_ABOVE_MAX, MARKET_QTY_ABOVE_MAX, NOTIONAL_BELOW_MIN),
    "max_order_qty": (ORDER_QTY_HIGH,),
    "max_order_notional": (ORDER_NOTIONAL_HIGH,),
    "max_open_orders": (OPEN_ORDERS_CAP,),
    "max_daily_orders": (DAILY_ORDERS_CAP,),
    "max_daily_cancels": (DAILY_CANCELS_CAP,),
    "max_daily_fills": (DAILY_FILLS_CAP,),
    "symbol_lists": (SYMBOL_NOT_ALLOWED, SYMBOL_DENIED),
    "max_price_deviation": (PRICE_COLLAR,),
    "max_market_slippage": (MARKET_UNPROTECTED, MARKET_SLIPPAGE),
    "order_rate": (RATE_PER_SECOND, RATE_PER_MINUTE),
    "duplicate": (DUPLICATE_ORDER,),
    "self_trade": (SELF_TRADE,),
    "reduce_only": (REDUCE_ONLY_NO_POSITION, REDUCE_ONLY_WRONG_SIDE, REDUCE_ONLY_EXCEEDS_POSITION),
    "position_notional": (POSITION_NOTIONAL_HIGH,),
    "account_notional": (ACCOUNT_NOTIONAL_HIGH,),
    "leverage": (LEVERAGE_HIGH, POSITION_LEVERAGE_HIGH),
    "margin_ratio": (MARGIN_RATIO_HIGH,),
    "liq_distance": (LIQUIDATION_NEAR,),
    "asset_caps": (ASSET_ABOVE_CAP,),  # the limit's own name (rules/limits.py), so it switches the check
}
UNSWITCHABLE = frozenset(CHECKS["trading_state"] + CHECKS["profile"])
ALL_CODES = tuple(code for codes in CHECKS.values() for code in codes)
# Aliases: the limit names of rules/limits.py switch the check that enforces them.
CHECK_ALIASES = {
    "order_rate_per_second": (RATE_PER_SECOND,),
    "order_rate_per_minute": (RATE_PER_MINUTE,),
    "duplicate_window_s": (DUPLICATE_ORDER,),
    "symbol_allowlist": (SYMBOL_NOT_ALLOWED,),
    "symbol_denylist": (SYMBOL_DENIED,),
    "max_position_notional": (POSITION_NOTIONAL_HIGH,),
    "max_account_notional": (ACCOUNT_NOTIONAL_HIGH,),
    "max_leverage": (LEVERAGE_HIGH, POSITION_LEVERAGE_HIGH),
}

MESSAGES: dict[str, str] = {
    TRADING_HALTED: "The account is HALTED: only reduce-only exits are accepted.",
    TRADING_REDUCING: "The account is REDUCING: orders that would increase exposure are refused.",
    PROFILE_MISSING: "No risk profile governs this account (and there is no default profile).",
    SYMBOL_UNKNOWN: "The symbol is not known to the desk.",
    FEED_STALE: "The market data feed is stale; new orders are refused until it recovers.",
    MARK_MISSING: "There is no mark price for the symbol.",
    MARK_STALE: "The symbol's mark price is older than the staleness limit (seconds).",
    BRACKETS_MISSING: "There is no leverage bracket table for the symbol.",
    ACCOUNT_STATE_MISSING: "There is no live risk state for the account.",
    ACCOUNT_STATE_STALE: "The account's live state is older than the staleness limit and its user stream "
    "is not connected (seconds).",
    ACCOUNT_STATE_INCOMPLETE: "The account's figures are incomplete (a mark, bracket table or wallet is missing).",
    SYMBOL_NOT_TRADING: "The symbol is not in TRADING status on the exchange.",
    POSITION_SIDE_INVALID: "positionSide must be BOTH in one-way mode and LONG or SHORT in hedge mode.",
    REDUCE_ONLY_IN_HEDGE_MODE: "reduceOnly is not accepted in hedge mode; close a leg with its positionSide.",
    PRICE_TICK: "The price is not a multiple of the symbol's tick size.",
    QTY_STEP: "The quantity is not a multiple of the symbol's step size.",
    QTY_BELOW_MIN: "The quantity is below the symbol's minimum quantity.",
    QTY_ABOVE_MAX: "The quantity is above the symbol's maximum quantity for limit orders.",
    MARKET_QTY_ABOVE_MAX: "The quantity is above the symbol's maximum quantity for market orders.",
    NOTIONAL_BELOW_MIN: "The order's notional is below the symbol's minimum (reduce-only orders are exempt).",
    ORDER_QTY_HIGH: "The quantity is above the profile's maximum per order.",
    ORDER_NOTIONAL_HIGH: "The order's notional is above the profile's maximum per order.",
    OPEN_ORDERS_CAP: "The account would have more open orders than the profile allows.",
    DAILY_ORDERS_CAP: "The account has reached the profile's orders per trading day.",
    DAILY_CANCELS_CAP: "The account has passed the profile's cancels per trading day; new orders are refused.",
    DAILY_FILLS_CAP: "The account has passed the profile's fills per trading day; new orders are refused.",
    SYMBOL_NOT_ALLOWED: "The symbol is not on the profile's allow list.",
    SYMBOL_DENIED: "The symbol is on the profile's deny list.",
    PRICE_COLLAR: "The limit price deviates from the mark price by more than the profile allows.",
    MARKET_UNPROTECTED: "A market order needs a protective price (`price`): the gate cannot see the book, "
    "so it cannot bound the fill otherwise.",
    MARKET_SLIPPAGE: "The market order's protective price is further from the mark than the profile allows.",
    RATE_PER_SECOND: "The account has sent more orders in the last second than the profile allows.",
    RATE_PER_MINUTE: "The account has sent more orders in the last minute than the profile allows.",
    DUPLICATE_ORDER: "The same order (symbol, side, type, quantity, price) was sent within the duplicate window.",
    SELF_TRADE: "The order would cross the account's own resting order on the other side.",
    REDUCE_ONLY_NO_POSITION: "The reduce-only order has no position to reduce.",
    REDUCE_ONLY_WRONG_SIDE: "The reduce-only order is on the same side as the position; it would increase it.",
    REDUCE_ONLY_EXCEEDS_POSITION: "The reduce-only order is larger than the position.",
    POSITION_NOTIONAL_HIGH: "The position's notional after the order would be above the limit.",
    ACCOUNT_NOTIONAL_HIGH: "The account's gross notional after the order would be above the limit.",
    LEVERAGE_HIGH: "The account's effective leverage (gross notional / margin balance) after the order "
    "would be above the limit.",
    POSITION_LEVERAGE_HIGH: "The symbol's leverage setting is above the profile's maximum leverage.",
    MARGIN_RATIO_HIGH: "The margin ratio (maintenance margin / margin balance) after the order would be "
    "above the limit.",
    LIQUIDATION_NEAR: "The distance to liquidation after the order would be below the limit.",
    ASSET_ABOVE_CAP: "The wallet balance of the order's margin asset would be above the profile's cap for that "
    "asset: orders adding exposure on it are refused until it is back under the cap.",
}

# How a float value of a code is rendered (money with 8 decimals, ratios with 12, like the book).
_RATIO_CODES = frozenset({LEVERAGE_HIGH, MARGIN_RATIO_HIGH, LIQUIDATION_NEAR})
_MS_CODES = frozenset({FEED_STALE, MARK_STALE, ACCOUNT_STATE_STALE})


# --------------------------------------------------------------------------- conversions


def to_units(value: Decimal, name: str = "value") -> int:
    """An exact integer of 1e-8 units; more than 8 decimals raises (never round an order)."""
    scaled = value.scaleb(UNIT_EXP)
    units = int(scaled)
    if units != scaled:
        raise ValueError(f"{name} has more than {UNIT_EXP} decimals: {value}")
    return units


def _units_floor(value: Decimal, exp: int = UNIT_EXP) -> int:
    # Limits: x <= L  <=>  x_units <= floor(L * 10^exp) for integer x_units.
    return math.floor(value.scaleb(exp))


def _units_ceil(value: Decimal, exp: int = UNIT_EXP) -> int:
    # Minimums: x >= M  <=>  x_units >= ceil(M * 10^exp).
    return math.ceil(value.scaleb(exp))


def _mark_units(value: Decimal) -> int:
    # Marks from the exchange carry at most 8 decimals; quantize defensively if one ever has more.
    return int(value.quantize(_UNIT_Q, rounding=ROUND_HALF_EVEN).scaleb(UNIT_EXP))


# --------------------------------------------------------------------------- inputs


class Order:
    """An order as the gate sees it. Build with ``Order.make``; the hot path reads the
    precomputed integer units and floats. For MARKET orders ``price`` is the optional
    protective price (the worst acceptable fill)."""

    __slots__ = (
        "symbol",
        "side",
        "type",
        "qty",
        "price",
        "reduce_only",
        "position_side",
        "time_in_force",
        "client_order_id",
        "buy",
        "market",
        "resting",
        "qty_u",
        "price_u",
        "qty_f",
        "price_f",
        "leg_key",
        "both_key",
    )

    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    position_side: str
    time_in_force: str
    client_order_id: str
    buy: bool
    market: bool
    resting: bool
    qty_u: int
    price_u: int | None
    qty_f: float
    price_f: float | None
    leg_key: str
    both_key: str

    @classmethod
    def make(
        cls,
        *,
        symbol: str,
        side: str,
        type: str,
        qty: Decimal,
        price: Decimal | None = None,
        reduce_only: bool = False,
        position_side: str = "BOTH",
        time_in_force: str | None = None,
        client_order_id: str = "",
    ) -> Order:
        if side not in SIDES or type not in TYPES or position_side not in POSITION_SIDES:
            raise ValueError(f"bad side/type/positionSide: {side!r} {type!r} {position_side!r}")
        for name, value in (("qty", qty), ("price", price)):
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= 0):
                raise ValueError(f"{name} must be a positive finite Decimal, got {value!r}")
        if type == "LIMIT" and price is None:
            raise ValueError("a LIMIT order needs a price")
        tif = time_in_force or ("GTC" if type == "LIMIT" else "")
        if type == "LIMIT" and tif not in TIME_IN_FORCE:
            raise ValueError(f"bad timeInForce {tif!r}")
        o = cls()
        o.symbol, o.side, o.type, o.qty, o.price = symbol, side, type, qty, price
        o.reduce_only, o.position_side, o.time_in_force = bool(reduce_only), position_side, tif
        o.client_order_id = client_order_id
        o.buy, o.market = side == "BUY", type == "MARKET"
        o.resting = type == "LIMIT" and tif not in NOT_RESTING
        o.qty_u, o.qty_f = to_units(qty, "qty"), float(qty)
        o.price_u = None if price is None else to_units(price, "price")
        o.price_f = None if price is None else float(price)
        o.leg_key, o.both_key = leg_key(symbol, position_side), leg_key(symbol, "BOTH")
        return o

    def fingerprint(self) -> str:
        """What makes two orders duplicates (same account is the caller's key)."""
        return f"{self.symbol}|{self.side}|{self.type}|{self.qty_u}|{self.price_u or 0}"


class BracketTable:
    """A bracket table as floats: tier lines for maintenance margin and liquidation roots."""

    __slots__ = ("floors", "rows", "max_leverage")

    def __init__(self, brackets: Sequence[Bracket]):
        rows = []
        for i, b in enumerate(brackets):
            cap = float(b.cap) if i + 1 < len(brackets) else _INF  # the last tier keeps going (margin.py)
            rows.append((float(b.floor), cap, float(b.mmr), float(b.cum)))
        self.rows = tuple(rows)
        self.floors = tuple(r[0] for r in rows)
        self.max_leverage = brackets[0].max_leverage if brackets else 0

    def maint_margin(self, notional: float) -> float:
        _floor, _cap, mmr, cum = self.rows[bisect_right(self.floors, notional) - 1]
        return notional * mmr - cum


class SymbolView:
    """One symbol's exchange filters (integer units) and its default bracket table."""

    __slots__ = (
        "name",
        "trading",
        "tick",
        "step",
        "min_qty",
        "max_qty",
        "market_max_qty",
        "min_notional",
        "tick_u",
        "step_u",
        "min_qty_u",
        "max_qty_u",
        "market_max_u",
        "min_notional_u16",
        "table",
        "margin_asset",
    )


def symbol_view(
    *,
    name: str,
    status: str,
    tick_size: Decimal,
    step_size: Decimal,
    min_qty: Decimal,
    max_qty: Decimal,
    market_max_qty: Decimal | None,
    min_notional: Decimal,
    brackets: Sequence[Bracket] | None,
    margin_asset: str = "USDT",
) -> SymbolView:
    s = SymbolView()
    s.margin_asset = margin_asset  # the wallet asset its positions margin in (USDT, USDC...)
    s.name, s.trading = name, status == "TRADING"
    s.tick, s.step, s.min_qty, s.max_qty = tick_size, step_size, min_qty, max_qty
    s.market_max_qty, s.min_notional = market_max_qty, min_notional
    # A tick or step finer than 1e-8 cannot be expressed in units; every 8-decimal value is then a multiple.
    s.tick_u = max(1, _units_floor(tick_size)) if tick_size > 0 else 1
    s.step_u = max(1, _units_floor(step_size)) if step_size > 0 else 1
    s.min_qty_u, s.max_qty_u = _units_ceil(min_qty), _units_floor(max_qty)
    s.market_max_u = None if market_max_qty is None else _units_floor(market_max_qty)
    s.min_notional_u16 = _units_ceil(min_notional, 2 * UNIT_EXP)
    s.table = BracketTable(brackets) if brackets else None
    return s


class Leg:
    """One position (one-way BOTH or a hedge leg) from the live state, at its published mark,
    with the account sums *without* it precomputed (``_bases``), so projecting an order on it is
    a few additions. A hedge symbol holding one leg also gets an empty leg for the other side."""

    __slots__ = (
        "qty_u",
        "qty",
        "entry",
        "leverage",
        "isolated",
        "iso_wallet",
        "notional",
        "upnl",
        "mm",
        "gross_base",
        "mb_base",
        "pool_mm_base",
        "pool_mb_base",
        "w_base",
        "other",
        "other_sign",
    )

    def __init__(
        self,
        *,
        qty_u: int,
        entry: float,
        leverage: int,
        isolated: bool,
        iso_wallet: float,
        notional: float,
        upnl: float,
        mm: float,
    ):
        self.qty_u, self.qty = qty_u, abs(qty_u) / UNIT  # qty_u signed for BOTH, > 0 for a hedge leg
        self.entry, self.leverage, self.isolated, self.iso_wallet = entry, leverage, isolated, iso_wallet
        self.notional, self.upnl, self.mm = notional, upnl, mm
        self.gross_base = self.mb_base = self.pool_mm_base = self.pool_mb_base = self.w_base = math.nan
        self.other: Leg | None = None
        self.other_sign = 0


class AccountView:
    """What the gate knows about one account: trading state and mode (from the catalogue) and
    the live figures the stream publishes, compiled to floats once per published state."""

    __slots__ = (
        "account_id",
        "trading_state",
        "hedge",
        "has_state",
        "complete",
        "published_ms",
        "user_feed_connected",
        "wallet",
        "cross_wallet",
        "upnl",
        "mm",
        "gross",
        "cross_mm",
        "cross_upnl",
        "legs",
        "open_count",
        "own_books",
        "tables",
        "base",
        "asset_wallets",
    )

    def fresh(self, now_ms: int, stale_ms: int) -> bool:
        # An account with no positions is republished only when something happens to it, so an
        # old state is still current while its user stream is connected (it would have said).
        return self.user_feed_connected or now_ms - self.published_ms <= stale_ms


def _f(value: Any) -> float:
    return float(value) if value is not None else math.nan


def _leg_from(row: Mapping[str, Any]) -> tuple[str, Leg]:
    qty = Decimal(str(row["qty"]))
    leg = Leg(
        qty_u=_mark_units(qty),
        entry=float(row["entry_price"]),
        leverage=int(row.get("leverage") or 1),
        isolated=row.get("margin_type") == "isolated",
        iso_wallet=float(row.get("isolated_wallet") or 0),
        notional=_f(row.get("notional")),
        upnl=_f(row.get("unrealized_pnl")),
        mm=_f(row.get("maint_margin")),
    )
    return leg_key(row["symbol"], row.get("side", "BOTH")), leg


def leg_key(symbol: str, side: str) -> str:
    return f"{symbol}|{side}"


def _own_books(open_orders: Iterable[Mapping[str, Any]]) -> tuple[int, dict[str, tuple[int | None, int | None]]]:
    """Open-order count and, per symbol, the account's best resting bid and ask (units)."""
    count, books = 0, {}
    for o in open_orders:
        count += 1
        price = Decimal(str(o.get("price") or 0))
        if price <= 0:
            continue  # a resting order without a price (stop-market…) cannot be crossed by price
        units = _mark_units(price)
        bid, ask = books.get(o["symbol"], (None, None))
        if o.get("side") == "BUY":
            bid = units if bid is None else max(bid, units)
        else:
            ask = units if ask is None else min(ask, units)
        books[o["symbol"]] = (bid, ask)
    return count, books


def account_view(
    *,
    account_id: int,
    trading_state: str,
    hedge: bool,
    state: Mapping[str, Any] | None,
    user_feed_connected: bool = False,
    tables: Mapping[str, BracketTable] | None = None,
) -> AccountView:
    """Compile one account's live state (marketdata.live ``live:acct:<id>``, Decimals as strings)."""
    a = AccountView()
    a.account_id, a.trading_state, a.hedge = account_id, TRADING_STATES[trading_state], hedge
    a.tables = dict(tables or {})
    a.user_feed_connected = bool(user_feed_connected)
    a.has_state = state is not None
    a.legs, a.own_books, a.open_count = {}, {}, 0
    a.published_ms, a.complete = 0, False
    a.wallet = a.cross_wallet = a.upnl = a.mm = a.gross = a.cross_mm = a.cross_upnl = math.nan
    a.base = (math.nan,) * 5
    a.asset_wallets = None
    if state is None:
        return a
    figures = state.get("figures") or {}
    a.published_ms = int(state.get("published_ms") or 0)
    a.complete = bool(figures.get("complete"))
    a.legs = dict(_leg_from(row) for row in state.get("positions") or [])
    a.open_count, a.own_books = _own_books(state.get("open_orders") or [])
    if hedge:
        _pair_legs(a.legs)
    if a.complete:
        _account_totals(a, figures)
        wallets = figures.get("asset_wallets")
        if wallets is not None:  # None: a state published before the stream published them
            a.asset_wallets = {asset: _mark_units(Decimal(str(v))) for asset, v in wallets.items()}
    return a


def _pair_legs(legs: dict[str, Leg]) -> None:
    """Link hedge legs of one symbol; a lone leg gets an empty partner (same leverage and margin
    type: Binance sets both per symbol), so an order opening the other side finds its pair."""
    for key, leg in list(legs.items()):
        symbol, side = key.rsplit("|", 1)
        if side == "BOTH":
            continue
        other_side = "SHORT" if side == "LONG" else "LONG"
        other_key = leg_key(symbol, other_side)
        if other_key not in legs:
            legs[other_key] = Leg(
                qty_u=0,
                entry=0.0,
                leverage=leg.leverage,
                isolated=leg.isolated,
                iso_wallet=0.0,
                notional=0.0,
                upnl=0.0,
                mm=0.0,
            )
        other = legs[other_key]
        leg.other, leg.other_sign = other, 1 if other_side == "LONG" else -1
        other.other, other.other_sign = leg, 1 if side == "LONG" else -1


def _account_totals(a: AccountView, figures: Mapping[str, Any]) -> None:
    legs = a.legs.values()
    a.wallet, a.upnl = float(figures["wallet_balance"]), float(figures["unrealized_pnl"])
    a.mm, a.gross = float(figures["maint_margin"]), float(figures["gross_exposure"])
    # Single-asset mode: the cross wallet is the wallet less the isolated wallets (figures.py).
    a.cross_wallet = a.wallet - sum(leg.iso_wallet for leg in legs if leg.isolated)
    a.cross_mm = sum(leg.mm for leg in legs if not leg.isolated)
    a.cross_upnl = sum(leg.upnl for leg in legs if not leg.isolated)
    a.base = _bases(a, None)
    for leg in legs:
        leg.gross_base, leg.mb_base, leg.pool_mm_base, leg.pool_mb_base, leg.w_base = _bases(a, leg)


def _bases(a: AccountView, leg: Leg | None) -> tuple[float, float, float, float, float]:
    """The account without this leg: gross notional, margin balance, the cross pool's maintenance
    margin and balance, and W' = cross wallet − TMM1 + UPNL1 (for a hedge pair, without both legs)."""
    n, u, mm = (leg.notional, leg.upnl, leg.mm) if leg is not None else (0.0, 0.0, 0.0)
    cross = leg is None or not leg.isolated
    other_mm = a.cross_mm - (mm if cross else 0.0)
    other_upnl = a.cross_upnl - (u if cross else 0.0)
    w = a.cross_wallet - other_mm + other_upnl
    if leg is not None and leg.other is not None and cross:
        w += leg.other.mm - leg.other.upnl
    return a.gross - n, a.wallet + a.upnl - u, other_mm, a.cross_wallet + other_upnl, w


class MarketState:
    """Symbols (static, from the catalogue), marks and the feed, as of ``now_ms``."""

    __slots__ = ("symbols", "marks", "feed_last_ms", "now_ms", "stale_ms")


def market_state(
    *,
    symbols: Mapping[str, SymbolView],
    marks: Mapping[str, tuple[int, float, int]],
    feed_last_ms: int | None,
    now_ms: int,
    stale_ms: int,
) -> MarketState:
    """``marks``: symbol -> (mark units, mark float, mark time ms), see ``compile_marks``;
    ``feed_last_ms``: the market feed's last message, None when the feed says it is stale."""
    m = MarketState()
    m.symbols, m.marks, m.feed_last_ms, m.now_ms, m.stale_ms = symbols, marks, feed_last_ms, now_ms, stale_ms
    return m


def compile_marks(raw: Mapping[str, Sequence[Any]]) -> dict[str, tuple[int, float, int]]:
    """``live:marks`` ({symbol: [price_str, ts_ms]}) to the form ``market_state`` takes."""
    out = {}
    for symbol, (price, ts) in raw.items():
        value = Decimal(str(price))
        if value.is_finite() and value > 0:
            out[symbol] = (_mark_units(value), float(value), int(ts))
    return out


class Counters:
    """Per-account counts the store read in the same round trip as the state.
    ``rate_1s``/``rate_1m``/``daily_orders`` include this order."""

    __slots__ = ("rate_1s", "rate_1m", "duplicate", "daily_orders", "daily_cancels", "daily_fills")

    def __init__(
        self,
        *,
        rate_1s: int = 0,
        rate_1m: int = 0,
        duplicate: bool = False,
        daily_orders: int = 0,
        daily_cancels: int = 0,
        daily_fills: int = 0,
    ):
        self.rate_1s, self.rate_1m, self.duplicate = rate_1s, rate_1m, duplicate
        self.daily_orders, self.daily_cancels, self.daily_fills = daily_orders, daily_cancels, daily_fills


class GateProfile:
    """A RiskProfile compiled for the gate: None = not enforced (unset or disabled)."""

    __slots__ = (
        "off",
        "fresh",
        "status",
        "pside",
        "filters",
        "reduce",
        "self_trade",
        "lists",
        "allow",
        "deny",
        "max_qty_u",
        "max_notional_u16",
        "max_open",
        "daily_orders",
        "daily_cancels",
        "daily_fills",
        "collar",
        "slippage",
        "rate_s",
        "rate_m",
        "dup_window_s",
        "exposure",
        "pos_notional",
        "acct_notional",
        "leverage",
        "margin_ratio",
        "liq_distance",
        "pos_leverage",
        "values",
        "caps",
        "by_symbol",
        "asset_caps",
    )


def _fraction(value: Any) -> tuple[int, int] | None:
    return None if value is None else Decimal(str(value)).as_integer_ratio()


def _pair(values: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """(warning, critical) as floats, inf/-inf where a level is unset; None when neither is."""
    warning, critical = values.get(f"{name}_warning"), values.get(f"{name}_critical")
    if warning is None and critical is None:
        return None
    lower = name == "liq_distance"
    blank = -_INF if lower else _INF
    return (blank if warning is None else float(warning), blank if critical is None else float(critical))


def disabled_codes(names: Iterable[str]) -> frozenset[str]:
    """The reason codes a ``disabled_checks`` list switches off (unknown names are ignored)."""
    off: set[str] = set()
    for name in names or ():
        off.update(CHECKS.get(name, ()) or CHECK_ALIASES.get(name, ()))
        if name in ALL_CODES:
            off.add(name)
    return frozenset(off - UNSWITCHABLE)


def compile_profile(values: Mapping[str, Any]) -> GateProfile:
    """From ``RiskProfile.limit_values()`` (Decimals, ints, lists, None)."""
    p = GateProfile()
    off = disabled_codes(values.get("disabled_checks") or ())
    p.off, p.values = off, dict(values)

    def on(*codes: str) -> bool:
        return not all(code in off for code in codes)

    def limit(name: str, codes: tuple[str, ...]) -> Any:
        return values.get(name) if on(*codes) else None

    p.fresh, p.status = on(*CHECKS["freshness"]), on(SYMBOL_NOT_TRADING)
    p.pside, p.filters = on(*CHECKS["position_side"]), on(*CHECKS["filters"])
    p.reduce, p.self_trade = on(*CHECKS["reduce_only"]), on(SELF_TRADE)
    allow, deny = values.get("symbol_allowlist") or (), values.get("symbol_denylist") or ()
    p.allow = frozenset(allow) if allow and SYMBOL_NOT_ALLOWED not in off else None
    p.deny = frozenset(deny) if deny and SYMBOL_DENIED not in off else None
    p.lists = p.allow is not None or p.deny is not None
    qty, notional = limit("max_order_qty", (ORDER_QTY_HIGH,)), limit("max_order_notional", (ORDER_NOTIONAL_HIGH,))
    p.max_qty_u = None if qty is None else _units_floor(Decimal(str(qty)))
    p.max_notional_u16 = None if notional is None else _units_floor(Decimal(str(notional)), 2 * UNIT_EXP)
    p.max_open = limit("max_open_orders", (OPEN_ORDERS_CAP,))
    p.daily_orders = limit("max_daily_orders", (DAILY_ORDERS_CAP,))
    p.daily_cancels = limit("max_daily_cancels", (DAILY_CANCELS_CAP,))
    p.daily_fills = limit("max_daily_fills", (DAILY_FILLS_CAP,))
    p.collar = _fraction(limit("max_price_deviation", (PRICE_COLLAR,)))
    p.slippage = _fraction(limit("max_market_slippage", (MARKET_UNPROTECTED, MARKET_SLIPPAGE)))
    p.rate_s = limit("order_rate_per_second", (RATE_PER_SECOND,))
    p.rate_m = limit("order_rate_per_minute", (RATE_PER_MINUTE,))
    p.dup_window_s = limit("duplicate_window_s", (DUPLICATE_ORDER,))
    # The hot path compares counts without a None test: an unset cap is one no count reaches.
    p.caps = tuple(
        _NO_LIMIT if v is None else int(v)
        for v in (
            p.max_qty_u,
            p.max_notional_u16,
            p.max_open,
            p.daily_orders,
            p.daily_cancels,
            p.daily_fills,
            p.rate_s,
            p.rate_m,
        )
    )
    _compile_exposure(p, values, on)
    asset_caps = values.get("asset_caps") if on(ASSET_ABOVE_CAP) else None
    # asset -> cap in units (floored: a wallet of whole units passes at the cap exactly, as Decimal would)
    p.asset_caps = {str(k): _units_floor(Decimal(str(v))) for k, v in asset_caps.items()} if asset_caps else None
    p.by_symbol = _compile_symbols(p, values)
    return p


def _compile_symbols(p: GateProfile, values: Mapping[str, Any]) -> dict[str, GateProfile] | None:
    """Per-symbol overrides: a whole GateProfile per symbol, so the check swaps the profile once and
    reads every limit as it always does. Only the order caps, the collar, the position notional and
    the symbol's leverage setting follow the override; the account's effective leverage stays the
    profile's (it is an account figure, not a symbol's)."""
    overrides = values.get("symbol_limits") or {}
    if not overrides:
        return None
    out = {}
    for symbol, override in overrides.items():
        merged = {k: v for k, v in values.items() if k != "symbol_limits"}
        merged.update({k: v for k, v in override.items() if v is not None})
        sp = compile_profile(merged)
        sp.leverage = p.leverage
        sp.exposure = any(
            x is not None
            for x in (sp.pos_notional, sp.acct_notional, sp.leverage, sp.pos_leverage, sp.margin_ratio, sp.liq_distance)
        )
        out[symbol] = sp
    return out


def _compile_exposure(p: GateProfile, values: Mapping[str, Any], on: Any) -> None:
    p.pos_notional = _pair(values, "max_position_notional") if on(POSITION_NOTIONAL_HIGH) else None
    p.acct_notional = _pair(values, "max_account_notional") if on(ACCOUNT_NOTIONAL_HIGH) else None
    p.leverage = _pair(values, "max_leverage") if on(LEVERAGE_HIGH) else None
    p.pos_leverage = _pair(values, "max_leverage") if on(POSITION_LEVERAGE_HIGH) else None
    p.margin_ratio = _pair(values, "margin_ratio") if on(MARGIN_RATIO_HIGH) else None
    p.liq_distance = _pair(values, "liq_distance") if on(LIQUIDATION_NEAR) else None
    p.exposure = any(
        x is not None
        for x in (p.pos_notional, p.acct_notional, p.leverage, p.pos_leverage, p.margin_ratio, p.liq_distance)
    )


# --------------------------------------------------------------------------- decision


class Projection(tuple):
    """The order's position and account after a fill at the conservative fill price. Floats;
    None where there is nothing (no liquidation price: Binance's "--"). A tuple built in one
    step: ten attribute stores per order cost more than the figures' arithmetic."""

    __slots__ = ()
    FIELDS = (
        "position_qty",
        "entry_price",
        "fill_price",
        "position_notional",
        "account_gross_notional",
        "margin_balance",
        "leverage",
        "margin_ratio",
        "liquidation_price",
        "liquidation_distance",
    )

    position_qty = property(itemgetter(0))
    entry_price = property(itemgetter(1))
    fill_price = property(itemgetter(2))
    position_notional = property(itemgetter(3))
    account_gross_notional = property(itemgetter(4))
    margin_balance = property(itemgetter(5))
    leverage = property(itemgetter(6))
    margin_ratio = property(itemgetter(7))
    liquidation_price = property(itemgetter(8))
    liquidation_distance = property(itemgetter(9))
    # Not a published field: the PnL the fill realizes, which lands in the margin asset's wallet.
    realized_pnl = property(itemgetter(10))


class Decision(tuple):
    """allowed, failures [(code, value, limit)], warnings (the same), projection, is_exit, reduces."""

    __slots__ = ()

    allowed = property(itemgetter(0))
    failures = property(itemgetter(1))
    warnings = property(itemgetter(2))
    projection = property(itemgetter(3))
    is_exit = property(itemgetter(4))
    reduces = property(itemgetter(5))

    @property
    def codes(self) -> list[str]:
        return [f[0] for f in self[1]]


_tuple_new = tuple.__new__
_NO_WARNINGS: tuple = ()


_EMPTY = compile_profile({})


def check_order(
    order: Order, account: AccountView, market: MarketState, profile: GateProfile | None, counters: Counters
) -> Decision:
    """Every check on one order; the decision lists every failed check, not only the first.

    One function on purpose: at ~3 µs per order a call per check would cost as much as
    the checks. Sections follow docs/ORDER_GATE.md. An *exit* (reduceOnly, or a hedge order
    that closes its leg) can never add exposure, so it skips freshness, the profile's order
    limits and exposure; an order that *reduces* the position (exits, and one-way orders
    opposite to and not larger than the position) skips the exposure checks only.
    """
    fails: list = []
    add = fails.append
    symbol = order.symbol
    sym = market.symbols.get(symbol)
    if sym is None:
        return _tuple_new(Decision, (False, [(SYMBOL_UNKNOWN, symbol, None)], _NO_WARNINGS, None, False, False))
    p = profile
    if p is None:
        add((PROFILE_MISSING, None, None))
        p = _EMPTY
    elif p.by_symbol is not None:
        p = p.by_symbol.get(symbol, p)  # the symbol's overrides (compile_profile)
    buy, qty_u = order.buy, order.qty_u

    # -- position side, exit or reduce ---------------------------------------------------------------
    ps = order.position_side
    if account.hedge:
        if p.pside:
            if ps == "BOTH":
                add((POSITION_SIDE_INVALID, ps, "LONG|SHORT"))
            if order.reduce_only:
                add((REDUCE_ONLY_IN_HEDGE_MODE, True, None))
        leg = account.legs.get(order.leg_key)
        held = leg.qty_u if leg is not None else 0
        is_exit = ps != "BOTH" and (ps == "LONG") != buy  # SELL LONG / BUY SHORT close the leg
        reduces = is_exit
        if is_exit and p.reduce:
            if held == 0:
                add((REDUCE_ONLY_NO_POSITION, order.qty, Decimal(0)))
            elif qty_u > held:
                add((REDUCE_ONLY_EXCEEDS_POSITION, order.qty, Decimal(held).scaleb(-UNIT_EXP)))
    else:
        if ps != "BOTH" and p.pside:
            add((POSITION_SIDE_INVALID, ps, "BOTH"))
        leg = account.legs.get(order.both_key)
        held = leg.qty_u if leg is not None else 0
        opposite = held < 0 if buy else held > 0
        size = held if held > 0 else -held
        is_exit = order.reduce_only
        if is_exit and p.reduce:
            if held == 0:
                add((REDUCE_ONLY_NO_POSITION, order.qty, Decimal(0)))
            elif not opposite:
                add((REDUCE_ONLY_WRONG_SIDE, order.side, "SELL" if held > 0 else "BUY"))
            elif qty_u > size:
                add((REDUCE_ONLY_EXCEEDS_POSITION, order.qty, Decimal(size).scaleb(-UNIT_EXP)))
        reduces = is_exit or (opposite and qty_u <= size)

    # -- trading state (not switchable) -----------------------------------------------------------
    state = account.trading_state
    if state:
        if state == HALTED:
            if not is_exit:
                add((TRADING_HALTED, "HALTED", None))
        elif not reduces:
            add((TRADING_REDUCING, "REDUCING", None))

    # -- freshness: fail closed -------------------------------------------------------------------
    now, stale = market.now_ms, market.stale_ms
    mk = market.marks.get(symbol)
    table = account.tables.get(symbol) or sym.table if account.tables else sym.table
    if not is_exit and p.fresh:
        feed = market.feed_last_ms
        if feed is None or now - feed > stale:
            add((FEED_STALE, None if feed is None else now - feed, stale))
        if mk is None:
            add((MARK_MISSING, None, None))
        elif now - mk[2] > stale:
            add((MARK_STALE, now - mk[2], stale))
        if table is None:
            add((BRACKETS_MISSING, None, None))
        if not account.has_state:
            add((ACCOUNT_STATE_MISSING, None, None))
        else:
            if not account.complete:
                add((ACCOUNT_STATE_INCOMPLETE, None, None))
            # Not "or published lately": marks republish a position's figures every flush, so an
            # account whose user stream is down would look fresh for ever (issue 15). The stream's
            # word (marketdata.live.user_feed_is_live, with its grace for a blip) decides.
            if not account.user_feed_connected:
                add((ACCOUNT_STATE_STALE, now - account.published_ms, stale))
    if not sym.trading and p.status and not is_exit:
        add((SYMBOL_NOT_TRADING, None, "TRADING"))

    # -- exchange filters (exits too: the exchange would refuse them) -----------------------------
    price_u = order.price_u
    mark_u = mk[0] if mk is not None else None
    market_order = order.market
    # Reference price of the notional: the limit price, or for a market order the mark (as Binance).
    ref_u = mark_u if market_order else price_u
    if p.filters:
        if price_u is not None and price_u % sym.tick_u:
            add((PRICE_TICK, order.price, sym.tick))
        if qty_u % sym.step_u:
            add((QTY_STEP, order.qty, sym.step))
        if qty_u < sym.min_qty_u:
            add((QTY_BELOW_MIN, order.qty, sym.min_qty))
        if market_order:
            if sym.market_max_u is not None and qty_u > sym.market_max_u:
                add((MARKET_QTY_ABOVE_MAX, order.qty, sym.market_max_qty))
        elif qty_u > sym.max_qty_u:
            add((QTY_ABOVE_MAX, order.qty, sym.max_qty))
        if not order.reduce_only and ref_u is not None and qty_u * ref_u < sym.min_notional_u16:
            add((NOTIONAL_BELOW_MIN, Decimal(qty_u * ref_u).scaleb(-2 * UNIT_EXP), sym.min_notional))

    # -- the profile's order limits (not for exits) -----------------------------------------------
    if not is_exit:
        max_qty_u, max_notional_u16, max_open, day_orders, day_cancels, day_fills, rate_s, rate_m = p.caps
        if qty_u > max_qty_u:
            add((ORDER_QTY_HIGH, order.qty, Decimal(max_qty_u).scaleb(-UNIT_EXP)))
        worst_u = price_u if price_u is not None else mark_u  # a protected market order: its bound
        if worst_u is not None and qty_u * worst_u > max_notional_u16:
            add(
                (
                    ORDER_NOTIONAL_HIGH,
                    Decimal(qty_u * worst_u).scaleb(-2 * UNIT_EXP),
                    Decimal(max_notional_u16).scaleb(-2 * UNIT_EXP),
                )
            )
        if order.resting and account.open_count >= max_open:
            add((OPEN_ORDERS_CAP, account.open_count + 1, max_open))
        c = counters
        if c.daily_orders > day_orders:
            add((DAILY_ORDERS_CAP, c.daily_orders, day_orders))
        if c.daily_cancels > day_cancels:
            add((DAILY_CANCELS_CAP, c.daily_cancels, day_cancels))
        if c.daily_fills > day_fills:
            add((DAILY_FILLS_CAP, c.daily_fills, day_fills))
        if c.rate_1s > rate_s:
            add((RATE_PER_SECOND, c.rate_1s, rate_s))
        if c.rate_1m > rate_m:
            add((RATE_PER_MINUTE, c.rate_1m, rate_m))
        if p.lists:
            if p.allow is not None and symbol not in p.allow:
                add((SYMBOL_NOT_ALLOWED, symbol, None))
            if p.deny is not None and symbol in p.deny:
                add((SYMBOL_DENIED, symbol, None))
        if mark_u is not None:
            if not market_order:
                if p.collar is not None:
                    n, d = p.collar
                    gap = price_u - mark_u
                    if (gap if gap > 0 else -gap) * d > n * mark_u:
                        add((PRICE_COLLAR, _ratio_value(abs(gap), mark_u), Decimal(n) / d))
            elif p.slippage is not None:
                if price_u is None:
                    add((MARKET_UNPROTECTED, None, Decimal(p.slippage[0]) / p.slippage[1]))
                else:
                    n, d = p.slippage
                    adverse = price_u - mark_u if buy else mark_u - price_u
                    if adverse * d > n * mark_u:
                        add((MARKET_SLIPPAGE, _ratio_value(adverse, mark_u), Decimal(n) / d))
        if c.duplicate and p.dup_window_s:
            add((DUPLICATE_ORDER, True, p.dup_window_s))

    # -- self-trade: against the account's own resting orders ----------------------------------
    if p.self_trade and account.own_books:
        book = account.own_books.get(symbol)
        if book is not None:
            worst_u = price_u if price_u is not None else mark_u
            if buy:
                ask = book[1]
                if ask is not None and (worst_u is None or worst_u >= ask):
                    add((SELF_TRADE, order.price, Decimal(ask).scaleb(-UNIT_EXP)))
            else:
                bid = book[0]
                if bid is not None and (worst_u is None or worst_u <= bid):
                    add((SELF_TRADE, order.price, Decimal(bid).scaleb(-UNIT_EXP)))

    # -- the position and account after the order -----------------------------------------------
    projection = None
    warnings = _NO_WARNINGS
    realized = 0.0
    if mk is not None and table is not None and account.complete:
        figures = _project(order, account, leg, mk[1], table)
        realized = figures[10]
        projection = _tuple_new(Projection, figures)
        if not reduces and p.exposure:
            warnings = _exposure(p, figures, leg, add)

    # -- the cap of the order's margin asset (never for an order that reduces) --------------------
    if p.asset_caps is not None and not reduces and account.complete:
        asset = sym.margin_asset
        cap_u = p.asset_caps.get(asset)
        if cap_u is not None:
            _asset_cap(account, asset, cap_u, realized, add)

    if fails and p.off:
        fails = [f for f in fails if f[0] not in p.off]
    return _tuple_new(Decision, (not fails, fails, warnings, projection, is_exit, reduces))


def _asset_cap(account: AccountView, asset: str, cap_u: int, realized: float, add: Any) -> None:
    """ASSET_ABOVE_CAP: the asset's wallet balance (cross + isolated, as published: the figure the
    evaluator's asset_cap rule measures) after the order: plus what its fill realizes (a flip
    through zero), which lands in that wallet. Moving initial margin into an isolated wallet does
    not change the sum. A state that does not say the wallets fails closed (value unknown)."""
    wallets = account.asset_wallets
    if wallets is None:
        add((ASSET_ABOVE_CAP, None, Decimal(cap_u).scaleb(-UNIT_EXP), asset))
        return
    value_u = wallets.get(asset, 0)  # no pool: the account holds none of it
    if realized:
        value_u += int(round(realized * UNIT))
    if value_u > cap_u:
        add((ASSET_ABOVE_CAP, Decimal(value_u).scaleb(-UNIT_EXP), Decimal(cap_u).scaleb(-UNIT_EXP), asset))


def _ratio_value(numerator_u: int, mark_u: int) -> Decimal:
    return Decimal(numerator_u) / Decimal(mark_u)


def _exposure(p: GateProfile, pr: tuple, leg: Leg | None, add: Any) -> list:
    """Critical levels deny; warning levels let the order through with a warning. Unrolled: a
    loop over (code, limits, value) tuples costs more than the comparisons. ``pr`` is the plain
    tuple of the Projection's fields: compiled, indexing a tuple subclass goes through a slow slot."""
    warnings: list = []
    pair = p.pos_notional
    if pair is not None:
        value = pr[3]
        if value > pair[1]:
            add((POSITION_NOTIONAL_HIGH, value, pair[1]))
        elif value > pair[0]:
            warnings.append((POSITION_NOTIONAL_HIGH, value, pair[0]))
    pair = p.acct_notional
    if pair is not None:
        value = pr[4]
        if value > pair[1]:
            add((ACCOUNT_NOTIONAL_HIGH, value, pair[1]))
        elif value > pair[0]:
            warnings.append((ACCOUNT_NOTIONAL_HIGH, value, pair[0]))
    pair = p.leverage
    if pair is not None:
        value = pr[6]
        if value > pair[1]:
            add((LEVERAGE_HIGH, value, pair[1]))
        elif value > pair[0]:
            warnings.append((LEVERAGE_HIGH, value, pair[0]))
    pair = p.margin_ratio
    if pair is not None:
        value = pr[7]
        if value > pair[1]:
            add((MARGIN_RATIO_HIGH, value, pair[1]))
        elif value > pair[0]:
            warnings.append((MARGIN_RATIO_HIGH, value, pair[0]))
    pair = p.liq_distance
    value = pr[9]
    if pair is not None and value is not None:
        if value < pair[1]:
            add((LIQUIDATION_NEAR, value, pair[1]))
        elif value < pair[0]:
            warnings.append((LIQUIDATION_NEAR, value, pair[0]))
    pair = p.pos_leverage
    if pair is not None and leg is not None:
        value = leg.leverage
        if value > pair[1]:
            add((POSITION_LEVERAGE_HIGH, value, pair[1]))
        elif value > pair[0]:
            warnings.append((POSITION_LEVERAGE_HIGH, value, pair[0]))
    return warnings


# --------------------------------------------------------------------------- projection


def _project(order: Order, a: AccountView, leg: Leg | None, mark: float, table: BracketTable) -> tuple:
    """The order's position and account after a fill at the conservative price (see docs/ORDER_GATE.md),
    as the Projection's fields in a plain tuple. Straight-line on purpose: it runs for every order, on
    the sums precomputed without the leg."""
    price = order.price_f
    buy = order.buy
    if price is None:
        f = mark
    elif order.market:
        f = price  # the protective price: the worst fill the order accepts
    elif buy:
        f = price if price > mark else mark  # never assume a fill better than the mark
    else:
        f = price if price < mark else mark
    if leg is None:  # a new position: nothing to average, realize or move
        gross_base, mb_base, pool_mm_base, pool_mb_base, wallet = a.base
        size = order.qty_f
        new, new_u, new_entry, realized, isolated = (size if buy else -size), 1, f, 0.0, False
    else:
        new, new_u, new_entry, realized, isolated, iso_new = _leg_after(order, a.hedge, leg, f)
        gross_base, mb_base = leg.gross_base, leg.mb_base
        pool_mm_base, pool_mb_base = leg.pool_mm_base, leg.pool_mb_base
        size = new if new > 0 else -new
        # Realized PnL lands in the cross wallet; an isolated leg's margin moves out of it into its own.
        wallet = iso_new if isolated else leg.w_base + realized
    notional = size * mark
    upnl = new * (mark - new_entry)
    floors = table.floors
    k = bisect_right(floors, notional) - 1
    floor, cap, mmr, cum = table.rows[k]
    mm = notional * mmr - cum if new_u else 0.0
    gross = gross_base + notional
    mb = mb_base + realized + upnl
    if isolated:
        pool_mm, pool_mb = mm, wallet + upnl
    else:
        pool_mm, pool_mb = pool_mm_base + mm, pool_mb_base + realized + upnl
    leverage = gross / mb if mb > 0 else (_CAP if gross else 0.0)
    if pool_mm == 0:
        ratio = 0.0
    elif pool_mb <= 0:
        ratio = _CAP
    else:
        ratio = pool_mm / pool_mb
        if ratio > _CAP:
            ratio = _CAP
    other = leg.other if leg is not None and not isolated else None
    if other is not None and other.qty_u:
        # Both legs of a cross hedge share one price (W' already leaves both out).
        if new_u:
            point = _pair_root(
                wallet, size, new_entry, 1 if new > 0 else -1, other.qty, other.entry, leg.other_sign, table, mark
            )
        else:
            point = _single_root(
                wallet, other.qty, other.entry, leg.other_sign, table, bisect_right(floors, other.qty * mark) - 1
            )
    elif not new_u:
        point = None
    elif new > 0 and wallet >= size * new_entry:
        point = None  # W' covers the whole entry value: no price liquidates a long
    else:
        # The mark's tier first: its line's root is the answer when it lies in that tier.
        sign = 1 if new > 0 else -1
        root = (sign * size * new_entry - wallet - cum) / (size * (sign - mmr))
        at = root * size
        if floor * _LOW <= at <= cap * _HIGH:
            point = (root, sign > 0) if root > 0 else None
        else:  # continue from the tier that holds this root (see _single_root)
            point = _single_root(wallet, size, new_entry, sign, table, max(0, bisect_right(floors, at) - 1))
    if point is None:
        lp = distance = None
    else:
        lp = point[0]
        distance = (mark - lp) / mark if point[1] else (lp - mark) / mark
    return (new, new_entry if new_u else None, f, notional, gross, mb, leverage, ratio, lp, distance, realized)


def _leg_after(order: Order, hedge: bool, leg: Leg, f: float) -> tuple[float, int, float, float, bool, float]:
    """(signed qty, its units, entry, realized PnL, isolated, isolated wallet) after filling at ``f``."""
    buy, qty_u, qty = order.buy, order.qty_u, order.qty_f
    held_u, entry, lev, isolated, iso_w = leg.qty_u, leg.entry, leg.leverage, leg.isolated, leg.iso_wallet
    if hedge and order.position_side == "SHORT":
        held_u = -held_u  # a hedge SHORT leg is held as a size; signed here like a one-way short
    new_u = held_u + qty_u if buy else held_u - qty_u
    held, new = held_u / UNIT, new_u / UNIT
    if held_u == 0 or (held_u > 0) == buy:  # open or increase
        new_entry = ((held if held > 0 else -held) * entry + qty * f) / (new if new > 0 else -new)
        return new, new_u, new_entry, 0.0, isolated, iso_w + qty * f / lev if isolated else 0.0
    if qty_u <= (held_u if held_u > 0 else -held_u):  # reduce or close
        realized = (f - entry) * (qty if held > 0 else -qty)
        return new, new_u, entry, realized, isolated, iso_w * new / held if isolated else 0.0
    realized = (f - entry) * held  # flip through zero: the rest opens at the fill
    return new, new_u, f, realized, isolated, (new if new > 0 else -new) * f / lev if isolated else 0.0


_LOW, _HIGH = 1 - 1e-12, 1 + 1e-12  # tier-edge slack, as positions.margin allows a rounding step


def _single_root(
    wallet: float, q: float, e: float, sign: int, table: BracketTable, k: int
) -> tuple[float, bool] | None:
    """One leg's liquidation price, from the tier ``k`` (the mark's) in a step or two.

    Equity − MM is the min over tiers of the tier lines and monotone for one leg, so its root is
    the max (long) or min (short) of the lines' roots r_k, and each r_k lies on the true root's
    side of its own tier: jumping to the tier that holds r_k converges on the root's tier (the
    book's maths, positions/book.py). No positive root: a long whose W' covers Q·EP, or a short
    whose W' + Q·EP is not positive (equity − MM at price 0)."""
    if (wallet >= q * e) if sign > 0 else (wallet + q * e <= 0):
        return None
    rows, floors = table.rows, table.floors
    for _ in range(len(rows) + 1):
        floor, cap, mmr, cum = rows[k]
        root = (sign * q * e - wallet - cum) / (q * (sign - mmr))
        notional = root * q
        if floor * _LOW <= notional <= cap * _HIGH:
            return (root, sign > 0) if root > 0 else None
        k = bisect_right(floors, notional) - 1
        if k < 0:
            k = 0
    return liquidation_root(wallet, [(q, e, sign)], table)  # not reached for a valid table; the sweep decides


def _pair_root(
    wallet: float, qa: float, ea: float, sa: int, qb: float, eb: float, sb: int, table: BracketTable, mark: float
) -> tuple[float, bool] | None:
    """A cross hedge pair's shared liquidation price, walking the pieces out from the mark.

    Equity − MM is concave here (MM convex in price), so the safe set is an interval around a
    mark that is safe: walk left to its lower edge (a fall liquidates), else right to its
    upper edge, exactly the lowest positive root ``liquidation_root`` finds by sweeping."""
    rows, floors = table.rows, table.floors
    ka = bisect_right(floors, qa * mark) - 1
    kb = bisect_right(floors, qb * mark) - 1
    base = wallet - sa * qa * ea - sb * qb * eb
    fa, ca_, ma, cuma = rows[ka]
    fb, cb_, mb_, cumb = rows[kb]
    if base + cuma + cumb + (qa * (sa - ma) + qb * (sb - mb_)) * mark < 0:
        return liquidation_root(wallet, [(qa, ea, sa), (qb, eb, sb)], table)  # past liquidation: sweep
    i, j = ka, kb
    while True:  # left, to the lower edge
        fa, _c, ma, cuma = rows[i]
        fb, _c, mb_, cumb = rows[j]
        slope = qa * (sa - ma) + qb * (sb - mb_)
        const = base + cuma + cumb
        low_a, low_b = fa / qa, fb / qb
        low = low_a if low_a > low_b else low_b
        if slope > 0 and -const / slope >= low * _LOW:
            root = -const / slope
            if root > 0:
                return root, True
            break
        if low <= 0:
            break
        if low_a == low:
            i -= 1
        if low_b == low:
            j -= 1
    i, j = ka, kb
    while True:  # right, to the upper edge
        _f, cap_a, ma, cuma = rows[i]
        _f, cap_b, mb_, cumb = rows[j]
        slope = qa * (sa - ma) + qb * (sb - mb_)
        const = base + cuma + cumb
        high_a, high_b = cap_a / qa, cap_b / qb
        high = high_a if high_a < high_b else high_b
        if slope < 0 and -const / slope <= high * _HIGH:
            root = -const / slope
            return (root, False) if root > 0 else None
        if high == _INF:
            return None
        if high_a == high:
            i += 1
        if high_b == high:
            j += 1


def liquidation_root(
    wallet: float, legs: Sequence[tuple[float, float, int]], table: BracketTable
) -> tuple[float, bool] | None:
    """Float port of positions.margin._solve, the full sweep: the lowest positive price where
    equity equals maintenance margin, for one leg or a cross hedge pair; (price, on_fall) or
    None ("--"). ``legs``: (absolute qty, entry, +1 long / −1 short); ``wallet`` is W'."""
    rows = table.rows
    events = sorted((rows[k][0] / q, i, k) for i, (q, _e, _s) in enumerate(legs) for k in range(1, len(rows)))
    tiers = [0] * len(legs)
    low = 0.0
    intervals = []
    for price, i, k in events:
        if price > low:
            intervals.append((low, price, list(tiers)))
            low = price
        tiers[i] = k
    intervals.append((low, _INF, list(tiers)))
    for low, high, ks in intervals:
        slope = const = 0.0
        for (q, e, sign), k in zip(legs, ks, strict=True):
            _floor, _cap, mmr, cum = rows[k]
            slope += q * (sign - mmr)
            const += cum - sign * q * e
        if slope == 0:
            continue
        root = -(wallet + const) / slope
        slack = 1e-12 * (abs(root) + 1)
        if root > 0 and low - slack <= root <= high + slack:
            return root, slope > 0
    return None


# --------------------------------------------------------------------------- rendering


def _render(code: str, value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(format(value, ".12f" if code in _RATIO_CODES else ".8f"))
    if code in _MS_CODES and isinstance(value, int):
        return Decimal(value).scaleb(-3)  # milliseconds -> seconds
    return value


def value_text(value: Any) -> str | None:
    """How a value or limit travels in JSON: a decimal string without exponent or trailing zeros,
    a count as a string, true/false, or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 0.01050000 -> 0.0105, 2.55E+4 -> 25500
    return str(value)


def failure_rows(rows: Iterable[tuple]) -> list[dict[str, Any]]:
    """[{code, message, value, limit}], values as value_text strings; a row naming what it is about
    (ASSET_ABOVE_CAP: the asset) also carries ``asset``."""
    out = []
    for row in rows:
        code, value, limit = row[0], row[1], row[2]
        item = {
            "code": code,
            "message": MESSAGES[code],
            "value": value_text(_render(code, value)),
            "limit": value_text(_render(code, limit)),
        }
        if len(row) > 3:
            item["asset"] = row[3]
        out.append(item)
    return out


def projection_row(pr: Projection | None) -> dict[str, Any] | None:
    if pr is None:
        return None

    def money(x: float | None) -> Decimal | None:
        return None if x is None or not math.isfinite(x) else Decimal(format(x, ".8f"))

    def ratio(x: float | None) -> Decimal | None:
        return None if x is None or not math.isfinite(x) else Decimal(format(x, ".12f"))

    return {
        "position_qty": money(pr.position_qty),
        "entry_price": money(pr.entry_price),
        "fill_price": money(pr.fill_price),
        "position_notional": money(pr.position_notional),
        "account_gross_notional": money(pr.account_gross_notional),
        "margin_balance": money(pr.margin_balance),
        "leverage": ratio(pr.leverage),
        "margin_ratio": ratio(pr.margin_ratio),
        "liquidation_price": money(pr.liquidation_price),
        "liquidation_distance": ratio(pr.liquidation_distance),
    }


# --------------------------------------------------------------------------- compiled or source


def _source_digest(folder: str) -> str:
    """What scripts/build_checks.py writes to checks.built (must match its ``digest``)."""
    parts = []
    for name in ("checks.py", "checks.pxd"):
        with open(os.path.join(folder, name), "rb") as f:
            parts.append(f.read())
    return hashlib.sha256(b"".join(parts)).hexdigest()


def _built_from_this_source() -> bool:
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(folder, "checks.built")) as f:
            built = f.read().strip()
        return built == _source_digest(folder)
    except OSError:
        return False


def _run_source_instead() -> None:
    # Replacing the sys.modules entry while the extension initialises makes `import` hand out
    # the source module instead (importlib returns whatever sys.modules holds after exec).
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checks.py")
    spec = importlib.util.spec_from_file_location(__name__, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    spec.loader.exec_module(module)


if COMPILED and not _built_from_this_source():
    # Someone changed checks.py (or .pxd) after the build: a stale extension must never decide.
    warnings.warn(
        "rules/checks extension is older than rules/checks.py: running the source "
        "(rebuild: .venv/bin/python scripts/build_checks.py)",
        RuntimeWarning,
        stacklevel=2,
    )
    _run_source_instead()
