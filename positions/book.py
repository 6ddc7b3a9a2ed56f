"""In-memory risk book: every open position and wallet of the desk, revalued per mark tick.

Plain Python + NumPy, no Django. The stream process owns one ``RiskBook``, feeds it
marks, brackets, wallets and positions, and reads figures back for the touched
accounts; the rule evaluator and the order gate read the same figures.

Public API
----------
Writers (each returns ``set`` of account ids whose figures changed):

``RiskBook()``
``book.set_brackets(symbol, brackets, *, account_id=None)``
    a symbol's default ``Sequence[Bracket]`` table, or one account's override
    (Binance scales brackets per account via ``notionalCoef``).
``book.apply_mark(symbol, price, *, ts)``          one ``<symbol>@markPrice`` message
``book.apply_marks(marks, *, ts)``                 ``{symbol: price}`` (``!markPrice@arr``)
``book.apply_mark_array(symbols, prices, *, ts)``  the same as parallel sequences
    ``price`` is a ``Decimal`` or a decimal string as Binance sends it; ``ts`` is
    epoch milliseconds (int) or an aware ``datetime``. A mark older than the one
    held for the symbol is ignored (out-of-order delivery after a reconnect).
``book.set_wallet(account_id, balance, *, asset="USDT", counted=None)``   cross wallet balance of one pool
    Every wallet asset has a pool (issue 17: USDT, USDC, BTC, BNB...). ``counted``: whether the pool's
    wallet counts in the account's totals (default: the stablecoin margin assets, positions/collateral.py
    PAR_ASSETS; a BTC or BNB wallet is no margin in single-asset mode). A multi-assets account carries
    its haircut collateral value in USD in its USDT pool and its other pools uncounted.
``book.upsert_position(account_id, position)``     a ``BookPosition`` (open or change)
``book.upsert_positions(items)``                   many ``(account_id, BookPosition)`` at once
``book.remove_position(account_id, symbol, side)``
``book.resync()``                                  recompute everything from scratch

Readers:

``book.account(account_id) -> AccountRisk``        account, per-asset and concentration figures
``book.positions(account_id) -> list[PositionRisk]``
``book.mark(symbol) -> MarkState | None``           last price and its time (for staleness)
``book.account_ids()`` ``book.has_account(account_id)``
``book.symbols_without_mark()`` ``book.symbols_without_brackets()``

Failing closed
--------------
A position whose symbol has no mark or no brackets is *incomplete*: its own
figures that need the missing input are None, its account's aggregate figures
are None and ``AccountRisk.complete`` is False with the culprits listed. A cross
pool without a wallet balance likewise makes every cross liquidation price of
that pool None. Nothing is guessed.

How it is fast, and why it is exact enough
------------------------------------------
Positions live in struct-of-arrays (float64). A full-market tick recomputes all
of them with a handful of vectorised passes; a single-symbol tick recomputes the
positions of that symbol, the pool sums they feed (incrementally) and the
liquidation prices of every cross position in the touched pools (their TMM1 and
UPNL1 moved). Isolated liquidation prices only change when the position, its
wallet or its brackets change. Per-position distances are derived on read.

* Maintenance margin is the max of the tier lines ``n·mmr_k − cum_k``: the cum
  recurrence makes MM continuous and rising mmr makes it convex, so the max over
  all tiers equals the tier-selected value (tested in test_margin). Like the
  liquidation pieces below, a tick evaluates only the line of the tier found
  last time and searches all tiers only for positions whose notional left that
  tier's range (a few hundred of 100k on a full-market tick).
* Liquidation price. Write equity − MM at price P as ``W' + F(P)`` where
  ``W' = WB − TMM1 + UPNL1`` (or the isolated wallet) and F depends only on the
  position. F is concave and piecewise linear, so it is the min of its pieces'
  lines ``c_j + s_j·P``, and the safe set ``{W' + F ≥ 0}`` is the interval
  ``[max_{s_j>0} r_j, min_{s_j<0} r_j]`` with ``r_j = A_j − W'·B_j``
  (``A_j = −c_j/s_j``, ``B_j = 1/s_j``). A and B are precomputed when a position
  or its brackets change. The liquidation price is the lowest positive edge of
  the safe set: the same root as ``margin.liquidation_point``.
  - One-leg units (one-way, isolated, a lone hedge leg) have one piece per tier
    and exactly one root. A tick evaluates only the piece of the tier found last
    time and accepts it if its root lies inside that tier's price range (then it
    is the root); otherwise it takes the max over all tiers and remembers the new
    tier. Marks move little between ticks, so the fallback is rare.
  - Cross hedge pairs have one piece per tier-change interval (≤ 2K − 1) and are
    evaluated in full every time (they can have two roots; see margin._solve).

Float64 keeps ~16 significant digits; tests check every figure against the
Decimal functions in ``positions.figures`` on random desks: money to
|diff| < 0.005, liquidation prices to the same cent (except where the Decimal
value sits within float resolution of a half-cent tie, which only happens for
absurd prices ~1e12). Pool sums are updated incrementally on single-symbol
ticks and rebuilt from scratch on every full-market tick (and every
``RESYNC_EVERY`` incremental updates), so rounding cannot drift. Readers convert
to Decimal at the boundary: money and prices with 8 decimals, ratios with 12.

Structural changes (a new position or liquidation unit, a removed one) rebuild
the lookup indexes lazily on the next tick, O(N log N): a few ms per 100k
positions. Until then, a structural change finds the units it revalues through
its accounts' own rows, and the per-pool arrays grow by doubling: one account's
sync costs O(its positions), so a start-up load of N accounts is O(N) (issue 19;
bench/book_load.py). A quantity change of an existing position is not structural.

A full-market tick (``!markPrice@arr``, every ~second) takes its own path: it
writes each slot's pool contributions straight into their stored rows, sums the
pools over runs of neighbouring slots (a sync loads an account's positions into
consecutive slots), and reads the per-unit and per-pair tables as contiguous
field-major rows; a single-symbol tick gathers only the units of the pools it
touches (pair pieces are also kept pair-major for that gather).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from positions.collateral import PAR_ASSETS
from positions.figures import AssetFigures, PositionInput
from positions.margin import RATIO_CAP, ZERO, Bracket, _require_decimal, check_brackets

AccountId = Hashable
Price = Decimal | str
Timestamp = int | datetime

RESYNC_EVERY = 10_000  # incremental updates between full recomputes of the pool sums
FULL_REFRESH_SHARE = 0.3  # above this share of positions touched, recompute everything (cheaper)
_CAP = float(RATIO_CAP)

# Rows of the per-pool sums; each slot adds its contribution to its pool's column.
_MM, _UPNL, _IM, _GROSS, _NET, _ISOW, _XMM, _XUPNL, _XBAD, _BAD = range(10)
_ROWS = 10

# Columns of RiskBook._u_hot (per liquidation unit).
_H_A, _H_B, _H_SIGN, _H_LO, _H_HI, _H_OWN, _H_POOL, _H_OK, _H_ISOW, _H_CROSS, _H_PAIR, _H_K = range(12)
_HOT = 12

_TIER = ("mmr", "cum", "lo", "hi")  # RiskBook._s_tier: a slot's active MM tier line and its notional range


@dataclass(frozen=True)
class BookPosition:
    """A position as the book holds it: ``figures.PositionInput`` without the mark."""

    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    leverage: int
    margin_type: str = "cross"
    isolated_wallet: Decimal = ZERO
    margin_asset: str = "USDT"

    def __post_init__(self) -> None:
        self.with_mark(self.entry_price)  # same validation as PositionInput, one place

    def with_mark(self, mark: Decimal) -> PositionInput:
        return PositionInput(
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            entry_price=self.entry_price,
            mark_price=mark,
            leverage=self.leverage,
            margin_type=self.margin_type,
            isolated_wallet=self.isolated_wallet,
            margin_asset=self.margin_asset,
        )


@dataclass(frozen=True)
class MarkState:
    price: Decimal
    ts_ms: int


@dataclass(frozen=True)
class PositionRisk:
    """One position's figures; None where an input is missing (see ``complete``)."""

    account_id: AccountId
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    leverage: int
    margin_type: str
    margin_asset: str
    isolated_wallet: Decimal
    mark: Decimal | None
    mark_ts_ms: int | None
    notional: Decimal | None
    unrealized_pnl: Decimal | None
    maint_margin: Decimal | None
    initial_margin: Decimal | None
    liquidation_price: Decimal | None  # None with complete=True means Binance's "--"
    liquidation_on_fall: bool | None
    liquidation_distance: Decimal | None
    complete: bool  # mark, brackets and (for cross) the whole pool's inputs are present


@dataclass(frozen=True)
class AccountRisk:
    """Account figures (see ``figures.AccountFigures`` for formulas); None when incomplete."""

    account_id: AccountId
    complete: bool
    missing_marks: tuple[str, ...]
    missing_brackets: tuple[str, ...]
    missing_wallets: tuple[str, ...]
    oldest_mark_ts_ms: int | None  # the stalest mark behind these figures
    wallet_balance: Decimal | None
    unrealized_pnl: Decimal | None
    margin_balance: Decimal | None
    equity: Decimal | None  # = margin_balance (wallet + uPnL); kept under the name dashboards use
    maint_margin: Decimal | None
    margin_ratio: Decimal | None
    cross_margin_ratio: Decimal | None
    initial_margin: Decimal | None
    utilization: Decimal | None
    gross_exposure: Decimal | None
    net_exposure: Decimal | None
    largest_symbol: str | None
    largest_symbol_share: Decimal | None
    herfindahl: Decimal | None
    symbol_exposures: dict[str, Decimal] = field(default_factory=dict)
    # Each wallet asset's wallet balance (cross + isolated), the figure the per-asset caps measure
    # (rules.levels asset_cap; the order gate's ASSET_ABOVE_CAP reads it from the live state). A
    # multi-assets account's USDT pool holds its haircut collateral value in USD (module docstring).
    # Empty when the figures are incomplete.
    asset_wallets: dict[str, Decimal] = field(default_factory=dict)
    per_asset: dict[str, AssetFigures | None] = field(default_factory=dict)


_DECIMAL_TYPES = ("Decimal", "Decimal | None")  # the annotations, as strings (postponed evaluation)
_POSITION_DECIMALS = frozenset(f.name for f in dataclasses.fields(PositionRisk) if f.type in _DECIMAL_TYPES)
_ACCOUNT_DECIMALS = frozenset(f.name for f in dataclasses.fields(AccountRisk) if f.type in _DECIMAL_TYPES)


def position_risk_from_plain(plain: dict[str, Any]) -> PositionRisk:
    """``positions_plain()``'s dict back to the PositionRisk ``positions()`` gives (the strings are
    ``str()`` of its Decimals, so each Decimal comes back equal, exponent included)."""
    return PositionRisk(
        **{k: (Decimal(v) if v is not None and k in _POSITION_DECIMALS else v) for k, v in plain.items()}
    )


def account_risk_from_plain(plain: dict[str, Any]) -> AccountRisk:
    """``account_plain()``'s dict back to the AccountRisk ``account()`` gives, without ``per_asset``."""
    values = {k: (Decimal(v) if v is not None and k in _ACCOUNT_DECIMALS else v) for k, v in plain.items()}
    for name in ("missing_marks", "missing_brackets", "missing_wallets"):
        values[name] = tuple(values[name])
    values["symbol_exposures"] = {sym: Decimal(v) for sym, v in plain["symbol_exposures"].items()}
    values["asset_wallets"] = {asset: Decimal(v) for asset, v in (plain.get("asset_wallets") or {}).items()}
    return AccountRisk(**values)


# --------------------------------------------------------------------------- helpers


def _money(value: float) -> Decimal:
    return Decimal(format(value, ".8f"))


def _ratio(value: float) -> Decimal:
    return Decimal(format(value, ".12f"))


def _plain_str(fixed: str) -> str:
    """``str(Decimal(fixed))`` for a fixed-point string: the same text unless the value is below
    1e-6 (six zeros after the point), which Decimal writes in exponent form ("0E-8", "1.2E-7")."""
    return str(Decimal(fixed)) if fixed.lstrip("-").startswith("0.000000") else fixed


def _money_str(value: float) -> str:
    return _plain_str(format(value, ".8f"))


def _ratio_str(value: float) -> str:
    return _plain_str(format(value, ".12f"))


def _opt(value: float, convert: Callable[[float], Decimal] = _money) -> Decimal | None:
    return convert(value) if math.isfinite(value) else None


def _capped(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """Vector twin of ``margin.capped_ratio``."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(num / np.where(den > 0, den, 1.0), _CAP)
    return np.where(num == 0, 0.0, np.where(den <= 0, _CAP, ratio))


def _capped_ratio(numerator: float, denominator: float) -> Decimal:
    return _ratio(float(_capped(numerator, denominator)))


def _ts_ms(ts: Timestamp) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        return int(ts.timestamp() * 1000)
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise ValueError(f"ts must be epoch milliseconds (int) or an aware datetime, got {ts!r}")
    return ts


def _price(symbol: str, value: object) -> Decimal:
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{symbol}: mark {value!r} is not a number") from None
    _require_decimal(f"{symbol} mark", value)
    if value <= 0:
        raise ValueError(f"{symbol}: mark must be > 0, got {value}")
    return value


def _parse_prices(symbols: Sequence[str], prices: Sequence[Price]) -> tuple[list[Decimal], np.ndarray]:
    """Decimals and floats of a frame's prices. The common case (all Decimal or decimal strings,
    all positive and finite) is checked in bulk; anything else takes ``_price`` one by one,
    which raises the error naming the symbol."""
    decimals: list[Decimal] | None = None
    if set(map(type, prices)) <= {Decimal, str}:
        with contextlib.suppress(ArithmeticError):
            decimals = [p if p.__class__ is Decimal else Decimal(p) for p in prices]
    if decimals is not None:
        floats = np.fromiter(map(float, decimals), dtype=float, count=len(decimals))
        if (floats > 0).all() and np.isfinite(floats).all():
            return decimals, floats
    decimals = [_price(s, p) for s, p in zip(symbols, prices, strict=True)]
    return decimals, np.fromiter(map(float, decimals), dtype=float, count=len(decimals))


def _grow(array: np.ndarray, size: int, fill: object) -> np.ndarray:
    """Copy ``array`` into a larger one along the last axis, new cells = fill."""
    shape = (*array.shape[:-1], size)
    out = np.full(shape, fill, dtype=array.dtype)
    out[..., : array.shape[-1]] = array
    return out


def _grow_rows(array: np.ndarray, size: int, fill: object) -> np.ndarray:
    """Copy ``array`` into a larger one along the first axis, new rows = fill."""
    out = np.full((size, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


def _unique(ids: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct non-zero ids below ``size``; a mask beats np.unique's sort here."""
    mask = np.zeros(size, dtype=bool)
    mask[ids] = True
    mask[0] = False
    return np.flatnonzero(mask)


def _distinct(ids: np.ndarray, size: int) -> np.ndarray:
    """``_unique`` for any number of ids: a sort when they are few against ``size`` (a structural
    change touches one account: its cost must not grow with the book), the mask otherwise."""
    if len(ids) * 16 >= size:
        return _unique(ids, size)
    ids = np.unique(ids)
    return ids[ids > 0]


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate arange(start, start + count) for each pair, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return offsets + np.arange(total)


class _Csr:
    """key → members, rebuilt from a key array (sorted once, sliced per query)."""

    def __init__(self, keys: np.ndarray, members: np.ndarray, n_keys: int) -> None:
        order = np.argsort(keys, kind="stable")
        self.members = members[order]
        counts = np.bincount(keys, minlength=n_keys)
        self.counts = counts
        self.starts = np.cumsum(counts) - counts

    def of(self, keys: np.ndarray) -> np.ndarray:
        keys = keys[keys < len(self.counts)]
        return self.members[_ranges(self.starts[keys], self.counts[keys])]


# --------------------------------------------------------------------------- the book


class RiskBook:
    """See the module docstring. Not thread-safe: one owner (the stream process) writes."""

    def __init__(self, *, capacity: int = 1024) -> None:
        self._k = 1  # tier rows held per slot (max over tables)
        self._init_symbols()
        self._init_accounts()
        self._init_slots(max(capacity, 16))
        self._init_units(max(capacity, 16))
        self._dirty_index = True
        self._runs: tuple[int, np.ndarray, np.ndarray] | None = None  # see _pool_runs
        self._incremental_updates = 0

    # ---------------------------------------------------------------- storage

    def _init_symbols(self) -> None:
        self._sym_index: dict[str, int] = {"": 0}  # 0 = the dummy symbol of free slots
        self._sym_names: list[str] = [""]
        self._sym_mark = np.array([1.0])
        self._sym_ts = np.array([-1], dtype=np.int64)
        self._sym_raw: list[Decimal | None] = [None]
        self._tables: list[np.ndarray] = []  # [3, tiers]: mmr, cum, floor as floats
        self._stack: tuple[int, int, np.ndarray] | None = None  # see _table_stack
        self._table_index: dict[tuple[int, int], int] = {}  # (symbol, account or -1) -> table id

    def _init_accounts(self) -> None:
        self._acct_index: dict[AccountId, int] = {}
        self._acct_ids: list[AccountId] = [None]  # 0 = dummy
        self._acct_pools: list[dict[str, int]] = [{}]
        self._acct_slots: list[dict[tuple[str, str], int]] = [{}]
        self._pool_asset: list[str] = [""]
        self._pool_wallet_dec: list[Decimal | None] = [ZERO]
        # The per-pool arrays are views of the first len(_pool_asset) columns of buffers that
        # double when full: a new account's pool is O(1), not a copy of every pool (np.append made
        # a load of N accounts O(N²)). _pool_weight: 1 = the pool's wallet counts in the account's
        # totals, 0 = not.
        self._pool_buf = {
            "acct": np.zeros(16, dtype=np.int64),
            "wallet": np.zeros(16),
            "weight": np.ones(16),
            "sum": np.zeros((_ROWS, 16)),
        }
        self._pool_views()

    def _pool_views(self) -> None:
        n, buf = len(self._pool_asset), self._pool_buf
        self._pool_acct, self._pool_wallet, self._pool_weight = buf["acct"][:n], buf["wallet"][:n], buf["weight"][:n]
        self._pool_sum = buf["sum"][:, :n]

    def _init_slots(self, cap: int) -> None:
        self._s_hw = 1  # high-water mark; slot 0 is the dummy
        self._s_free: list[int] = []
        self._s_pos: list[BookPosition | None] = [None] * cap
        ints = ("acct", "sym", "pool", "unit", "cpool", "table")
        self._si = {name: np.zeros(cap, dtype=np.int64) for name in ints}
        floats = ("sq", "aq", "entry", "lev", "isow", "mark", "notional", "upnl", "mm", "im")
        self._sf = {name: np.zeros(cap) for name in floats}
        self._sf["lev"][:] = 1.0
        # The tier line MM was last found on and the notional range where it is the max of all
        # tier lines, so a tick evaluates one line per slot (NaN range: search all tiers).
        self._s_tier = {name: np.full(cap, np.nan) for name in _TIER}
        flags = ("live", "iso", "complete")
        self._sb = {name: np.zeros(cap, dtype=bool) for name in flags}
        self._s_mmr = np.zeros((self._k, cap))
        self._s_cum = np.zeros((self._k, cap))
        self._s_floor = np.full((self._k, cap), np.inf)
        self._s_contrib = np.zeros((_ROWS, cap))

    def _init_units(self, cap: int) -> None:
        self._u_hw, self._u_free = 1, []
        self._u_key: dict[tuple, int] = {}
        self._u_keys: list[tuple | None] = [None] * cap
        self._ui = {name: np.zeros(cap, dtype=np.int64) for name in ("pool", "leg_a", "leg_b", "pair")}
        self._uf = {name: np.zeros(cap) for name in ("lp",)}
        self._ub = {name: np.zeros(cap, dtype=bool) for name in ("live", "cross", "onfall", "known")}
        # Everything a tick reads per unit, one row per _H_* field (ints and flags stored as
        # floats, exact far beyond any index here). Field-major, so a full-market tick reads each
        # field as one contiguous row; a single-symbol tick gathers its units' columns, and those
        # come in runs (a pool's units are neighbours), so the gather stays cheap.
        self._u_hot = np.zeros((_HOT, cap))
        # Unit-major [unit, tier]: a tick gathers whole rows (or one cell) of the units it touches.
        self._u_a, self._u_b = np.zeros((cap, self._k)), np.zeros((cap, self._k))
        self._p_hw, self._p_free = 1, []
        self._init_pairs(16)

    def _init_pairs(self, cap: int) -> None:
        j = 2 * self._k - 1
        self._p_unit = np.zeros(cap, dtype=np.int64)
        # [2J, pair]: the J rising pieces (safe above their root), then the J falling ones.
        # Piece-major, so the max / min over pieces runs across rows (short last-axis reductions
        # are slow in NumPy) and a full-market tick reads every pair without a gather.
        self._p_a = np.vstack([np.full((j, cap), -np.inf), np.full((j, cap), np.inf)])
        self._p_b = np.zeros((2 * j, cap))
        # The same pieces pair-major [pair, 2J]: a single-symbol tick gathers a few hundred
        # scattered pairs, and whole rows cost ~40 % of the cache lines that columns do. They
        # change only when a pair is built, so keeping both is cheap (~6 MB at 100k positions).
        self._p_a_rows, self._p_b_rows = self._p_a.T.copy(), self._p_b.T.copy()
        self._p_zc = np.full(cap, np.inf)

    def _ensure_slot_capacity(self) -> None:
        cap = len(self._s_pos)
        if self._s_hw < cap:
            return
        new = cap * 2
        self._s_pos.extend([None] * cap)
        self._si = {k: _grow(v, new, 0) for k, v in self._si.items()}
        self._sf = {k: _grow(v, new, 1.0 if k == "lev" else 0.0) for k, v in self._sf.items()}
        self._sb = {k: _grow(v, new, False) for k, v in self._sb.items()}
        self._s_tier = {k: _grow(v, new, np.nan) for k, v in self._s_tier.items()}
        self._s_mmr, self._s_cum = _grow(self._s_mmr, new, 0.0), _grow(self._s_cum, new, 0.0)
        self._s_floor = _grow(self._s_floor, new, np.inf)
        self._s_contrib = _grow(self._s_contrib, new, 0.0)

    def _ensure_unit_capacity(self) -> None:
        cap = len(self._u_keys)
        if self._u_hw >= cap:
            new = cap * 2
            self._u_keys.extend([None] * cap)
            self._ui = {k: _grow(v, new, 0) for k, v in self._ui.items()}
            self._uf = {k: _grow(v, new, 0.0) for k, v in self._uf.items()}
            self._ub = {k: _grow(v, new, False) for k, v in self._ub.items()}
            self._u_a, self._u_b = _grow_rows(self._u_a, new, 0.0), _grow_rows(self._u_b, new, 0.0)
            self._u_hot = _grow(self._u_hot, new, 0.0)
        cap = len(self._p_unit)
        if self._p_hw >= cap:
            new = cap * 2
            self._p_unit = _grow(self._p_unit, new, 0)
            self._p_a, self._p_b = _grow(self._p_a, new, np.nan), _grow(self._p_b, new, 0.0)
            self._p_a_rows = _grow_rows(self._p_a_rows, new, np.nan)
            self._p_b_rows = _grow_rows(self._p_b_rows, new, 0.0)
            self._p_zc = _grow(self._p_zc, new, np.inf)

    def _widen_tiers(self, k: int) -> None:
        """Hold k tier rows per slot; padding repeats the last tier (same line, harmless to a max)."""
        pad = k - self._k
        self._s_mmr = np.vstack([self._s_mmr, np.repeat(self._s_mmr[-1:], pad, axis=0)])
        self._s_cum = np.vstack([self._s_cum, np.repeat(self._s_cum[-1:], pad, axis=0)])
        self._s_floor = np.vstack([self._s_floor, np.full((pad, self._s_floor.shape[1]), np.inf)])
        self._k = k
        self._s_tier["lo"][:] = np.nan
        ucap = len(self._u_keys)
        self._u_a, self._u_b = np.zeros((ucap, k)), np.zeros((ucap, k))
        self._ui["pair"][:] = 0
        self._p_hw, self._p_free = 1, []
        self._init_pairs(len(self._p_unit))
        live = np.flatnonzero(self._ub["live"][: self._u_hw])
        self._build_units(live)

    # ---------------------------------------------------------------- registries

    def _symbol(self, symbol: str) -> int:
        idx = self._sym_index.get(symbol)
        if idx is None:
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"symbol must be a non-empty str, got {symbol!r}")
            idx = len(self._sym_names)
            self._sym_index[symbol] = idx
            self._sym_names.append(symbol)
            self._sym_mark = np.append(self._sym_mark, np.nan)
            self._sym_ts = np.append(self._sym_ts, -1)
            self._sym_raw.append(None)
        return idx

    def _account(self, account_id: AccountId) -> int:
        idx = self._acct_index.get(account_id)
        if idx is None:
            if account_id is None:
                raise ValueError("account_id must not be None")
            idx = len(self._acct_ids)
            self._acct_index[account_id] = idx
            self._acct_ids.append(account_id)
            self._acct_pools.append({})
            self._acct_slots.append({})
        return idx

    def _pool(self, acct: int, asset: str) -> int:
        pool = self._acct_pools[acct].get(asset)
        if pool is None:
            pool = len(self._pool_asset)
            buf = self._pool_buf
            if pool == len(buf["acct"]):
                buf = self._pool_buf = {k: _grow(v, 2 * pool, 0.0) for k, v in buf.items()}
            self._acct_pools[acct][asset] = pool
            self._pool_asset.append(asset)
            self._pool_wallet_dec.append(None)
            buf["acct"][pool] = acct
            buf["wallet"][pool] = np.nan  # no wallet yet: fail closed
            buf["weight"][pool] = 1.0 if asset in PAR_ASSETS else 0.0
            buf["sum"][:, pool] = 0.0
            self._pool_views()
        return pool

    def _load_table_rows(self, slots: np.ndarray) -> None:
        """Copy each slot's bracket table into its tier rows (NaN when it has none), all slots
        in three gathers from the padded tables (one Python step per slot: the table's id)."""
        self._s_tier["lo"][slots] = np.nan  # the next revaluation searches the new table
        get = self._table_index.get
        tables = [
            get((sym, acct), get((sym, -1), -1))
            for acct, sym in zip(self._si["acct"][slots].tolist(), self._si["sym"][slots].tolist(), strict=True)
        ]
        table = np.array(tables, dtype=np.int64)
        self._si["table"][slots] = table
        stack = self._table_stack()
        self._s_mmr[:, slots], self._s_cum[:, slots], self._s_floor[:, slots] = stack[:, :, table + 1]

    def _table_stack(self) -> np.ndarray:
        """Every table as k tier rows [mmr / cum / floor, k, 1 + table], padded as a slot's rows
        are (the last tier repeated, floor inf); column 0 is all NaN (no table). Appended to as
        tables arrive, rebuilt when k grows."""
        k, tables = self._k, self._tables
        if self._stack is None or self._stack[0] != k:
            self._stack = (k, 0, np.full((3, k, 16), np.nan))
        _, done, stack = self._stack
        if done < len(tables):
            if len(tables) + 1 > stack.shape[2]:
                stack = _grow(stack, 2 * (len(tables) + 1), np.nan)
            for i in range(done, len(tables)):
                rows, column = tables[i], i + 1
                n = rows.shape[1]
                stack[:, :n, column] = rows
                stack[:2, n:, column] = rows[:2, -1:]
                stack[2, n:, column] = np.inf
            self._stack = (k, len(tables), stack)
        return stack

    # ---------------------------------------------------------------- indexes (lazy)

    def _indexes(self) -> tuple[_Csr, _Csr]:
        if self._dirty_index:
            slots = np.flatnonzero(self._sb["live"][: self._s_hw])
            self._by_symbol = _Csr(self._si["sym"][slots], slots, len(self._sym_names))
            units = np.flatnonzero(self._ub["live"][: self._u_hw] & self._ub["cross"][: self._u_hw])
            self._by_pool = _Csr(self._ui["pool"][units], units, len(self._pool_asset))
            self._dirty_index = False
        return self._by_symbol, self._by_pool

    # ---------------------------------------------------------------- writers: market data

    def set_brackets(
        self, symbol: str, brackets: Sequence[Bracket], *, account_id: AccountId | None = None
    ) -> set[AccountId]:
        """Install a symbol's bracket table (or one account's override) and revalue its positions."""
        table = check_brackets(brackets)
        sym = self._symbol(symbol)
        acct = -1 if account_id is None else self._account(account_id)
        self._table_index[(sym, acct)] = len(self._tables)
        self._tables.append(np.array([[float(b.mmr), float(b.cum), float(b.floor)] for b in table]).T)
        if len(table) > self._k:
            self._widen_tiers(len(table))
        if acct >= 0:  # the account's own rows of the symbol: no index (re)built per account
            held = sorted(slot for (name, _), slot in self._acct_slots[acct].items() if name == symbol)
            slots = np.array(held, dtype=np.int64)
        else:
            by_symbol, _ = self._indexes()
            slots = by_symbol.of(np.array([sym]))
        self._load_table_rows(slots)
        units = _distinct(self._si["unit"][slots], self._u_hw)
        self._build_units(units)
        return self._refresh(slots, units=units)

    def apply_mark(self, symbol: str, price: Price, *, ts: Timestamp) -> set[AccountId]:
        """One symbol's mark price (``<symbol>@markPrice``)."""
        return self.apply_mark_array([symbol], [price], ts=ts)

    def apply_marks(self, marks: Mapping[str, Price], *, ts: Timestamp) -> set[AccountId]:
        """Every symbol at once (``!markPrice@arr``), as ``{symbol: price}``."""
        return self.apply_mark_array(list(marks.keys()), list(marks.values()), ts=ts)

    def apply_mark_array(self, symbols: Sequence[str], prices: Sequence[Price], *, ts: Timestamp) -> set[AccountId]:
        """Parallel sequences of symbols and prices; validated in full before anything changes."""
        if len(symbols) != len(prices):
            raise ValueError(f"{len(symbols)} symbols but {len(prices)} prices")
        ts_ms = _ts_ms(ts)
        decimals, floats = _parse_prices(symbols, prices)
        syms = self._symbol_ids(symbols)
        fresh = self._sym_ts[syms] <= ts_ms  # drop marks older than what we hold
        new = floats[fresh]
        syms = syms[fresh]
        changed = syms[self._sym_mark[syms] != new]
        self._sym_mark[syms] = new
        self._sym_ts[syms] = ts_ms
        kept = decimals if fresh.all() else [d for d, f in zip(decimals, fresh.tolist(), strict=True) if f]
        raw = self._sym_raw
        for sym, value in zip(syms.tolist(), kept, strict=True):
            raw[sym] = value
        if not len(changed):
            return set()
        by_symbol, _ = self._indexes()
        held = by_symbol.counts[changed[changed < len(by_symbol.counts)]].sum()
        if held > FULL_REFRESH_SHARE * (self._s_hw - 1 - len(self._s_free)):
            # A full-market frame: everything is recomputed anyway, so skip listing the slots
            # (100k indexes) and only mark the pools holding a changed symbol.
            return self._refresh_all(self._pools_holding(changed))
        return self._refresh(by_symbol.of(changed))

    def _symbol_ids(self, symbols: Sequence[str]) -> np.ndarray:
        get = self._sym_index.get
        ids = [get(s, 0) for s in symbols]  # 0 is the dummy symbol: never a real one
        if 0 in ids:
            ids = [self._symbol(s) for s in symbols]
        return np.array(ids, dtype=np.int64)

    def _pools_holding(self, syms: np.ndarray) -> np.ndarray:
        hw = self._s_hw
        wanted = np.zeros(len(self._sym_names), dtype=bool)
        wanted[syms] = True
        pools = np.zeros(len(self._pool_asset), dtype=bool)
        pools[self._si["pool"][:hw][wanted[self._si["sym"][:hw]]]] = True  # free slots hold symbol 0
        return pools

    # ---------------------------------------------------------------- writers: accounts

    def set_wallet(
        self, account_id: AccountId, balance: Decimal, *, asset: str = "USDT", counted: bool | None = None
    ) -> set[AccountId]:
        """Cross wallet balance of one asset (``crossWalletBalance``); isolated wallets travel with
        their positions. ``counted``: see the module's docstring (None keeps the pool's setting)."""
        _require_decimal(f"{account_id} {asset} wallet", balance)
        pool = self._pool(self._account(account_id), asset)
        weight_changed = counted is not None and self._pool_weight[pool] != float(counted)
        if weight_changed:
            self._pool_weight[pool] = float(counted)
        if self._pool_wallet_dec[pool] == balance:
            # a re-sync repeats the balance: nothing to recompute (the totals are summed on read)
            return {account_id} if weight_changed else set()
        self._pool_wallet[pool] = float(balance)
        self._pool_wallet_dec[pool] = balance
        return self._refresh(np.empty(0, dtype=np.int64), pools=np.array([pool]))

    def upsert_position(self, account_id: AccountId, position: BookPosition) -> set[AccountId]:
        return self.upsert_positions([(account_id, position)])

    def upsert_positions(self, items: Iterable[tuple[AccountId, BookPosition]]) -> set[AccountId]:
        """Open or change positions. Each is validated (and checked against the account's
        other rows of the symbol) before the book changes."""
        touched, units, pools = [], set(), set()
        try:
            for account_id, position in items:
                if self._holds(account_id, position):
                    # A REST re-sync (every reconnect, every beat) repeats each row: revaluing the
                    # book for rows it already holds held the event loop for nothing.
                    continue
                slot, old_unit, old_pool = self._place(account_id, position)
                touched.append(slot)
                units.update((old_unit, int(self._si["unit"][slot])))
                pools.add(old_pool)
        finally:
            # The placed rows' tier rows in one pass, also when a bad row stops the batch (the
            # engine then resyncs the book from the rows it holds).
            self._load_table_rows(np.array(touched, dtype=np.int64))
        if not touched:
            return set()
        return self._after_structural_change(touched, units, pools)

    def _holds(self, account_id: AccountId, position: BookPosition) -> bool:
        if not isinstance(position, BookPosition):
            return False  # _place says what is wrong with it
        acct = self._acct_index.get(account_id)
        slot = None if acct is None else self._acct_slots[acct].get((position.symbol, position.side))
        return slot is not None and self._s_pos[slot] == position

    def remove_position(self, account_id: AccountId, symbol: str, side: str) -> set[AccountId]:
        acct = self._acct_index.get(account_id)
        slot = None if acct is None else self._acct_slots[acct].get((symbol, side))
        if slot is None:
            raise ValueError(f"{account_id}: no {symbol} {side} position")
        old_unit, old_pool = int(self._si["unit"][slot]), int(self._si["pool"][slot])
        self._detach(slot)
        del self._acct_slots[acct][(symbol, side)]
        self._s_pos[slot] = None
        self._sb["live"][slot] = False
        self._si["acct"][slot] = self._si["sym"][slot] = self._si["pool"][slot] = 0
        self._runs = None
        self._sf["sq"][slot] = self._sf["aq"][slot] = self._sf["entry"][slot] = self._sf["isow"][slot] = 0.0
        self._s_mmr[:, slot] = self._s_cum[:, slot] = 0.0
        self._s_tier["lo"][slot] = np.nan
        self._s_free.append(slot)
        return self._after_structural_change([slot], {old_unit}, {old_pool})

    def resync(self) -> set[AccountId]:
        """Recompute every figure from the stored inputs (clears float drift; cheap enough hourly)."""
        self._dirty_index = True
        live = np.flatnonzero(self._ub["live"][: self._u_hw])
        self._build_units(live)
        return self._refresh_all(np.ones(len(self._pool_asset), dtype=bool))

    # ---------------------------------------------------------------- structure

    def _check_compatible(self, acct: int, position: BookPosition) -> None:
        for side in ("BOTH", "LONG", "SHORT"):
            slot = self._acct_slots[acct].get((position.symbol, side))
            other = None if slot is None or side == position.side else self._s_pos[slot]
            if other is None:
                continue
            if "BOTH" in (side, position.side):
                raise ValueError(f"{position.symbol}: a BOTH (one-way) row cannot coexist with hedge legs")
            if (other.margin_type, other.margin_asset) != (position.margin_type, position.margin_asset):
                raise ValueError(f"{position.symbol}: hedge legs disagree on margin type or asset")

    def _place(self, account_id: AccountId, position: BookPosition) -> tuple[int, int, int]:
        """Write one position into its slot and unit; returns (slot, old unit, old pool)."""
        if not isinstance(position, BookPosition):
            raise ValueError(f"expected BookPosition, got {type(position).__name__}")
        acct = self._account(account_id)
        self._check_compatible(acct, position)
        key = (position.symbol, position.side)
        slot = self._acct_slots[acct].get(key)
        old_unit = old_pool = 0
        if slot is None:
            slot = self._new_slot()
            self._acct_slots[acct][key] = slot
        else:
            old_unit, old_pool = int(self._si["unit"][slot]), int(self._si["pool"][slot])
            self._detach(slot)
        self._write_slot(slot, acct, position)
        self._attach(slot, position)
        return slot, old_unit, old_pool

    def _new_slot(self) -> int:
        if self._s_free:
            return self._s_free.pop()
        self._ensure_slot_capacity()
        self._s_hw += 1
        return self._s_hw - 1

    def _write_slot(self, slot: int, acct: int, p: BookPosition) -> None:
        qty = float(p.qty)
        self._s_pos[slot] = p
        self._sb["live"][slot] = True
        self._sb["iso"][slot] = p.margin_type == "isolated"
        self._si["acct"][slot] = acct
        self._si["sym"][slot] = self._symbol(p.symbol)
        pool = self._pool(acct, p.margin_asset)
        if pool != self._si["pool"][slot]:
            self._runs = None
        self._si["pool"][slot] = pool
        self._sf["sq"][slot] = -qty if p.side == "SHORT" else qty
        self._sf["aq"][slot] = abs(qty)
        self._sf["entry"][slot] = float(p.entry_price)
        self._sf["lev"][slot] = float(p.leverage)
        self._sf["isow"][slot] = float(p.isolated_wallet)  # tier rows: upsert_positions loads the batch's

    def _attach(self, slot: int, p: BookPosition) -> None:
        """Join the liquidation unit: a cross symbol's legs share one, an isolated leg is alone."""
        pool = int(self._si["pool"][slot])
        key = ("iso", slot) if p.margin_type == "isolated" else ("cross", pool, p.symbol)
        unit = self._u_key.get(key)
        if unit is None:
            unit = self._u_free.pop() if self._u_free else self._next_unit()
            self._u_key[key], self._u_keys[unit] = unit, key
            self._ub["live"][unit], self._ub["cross"][unit] = True, key[0] == "cross"
            self._ui["pool"][unit] = pool
            self._ui["leg_a"][unit] = self._ui["leg_b"][unit] = 0
            self._dirty_index = True
        leg = "leg_b" if p.side == "SHORT" else "leg_a"
        self._ui[leg][unit] = slot
        self._si["unit"][slot] = unit

    def _next_unit(self) -> int:
        self._ensure_unit_capacity()
        self._u_hw += 1
        return self._u_hw - 1

    def _detach(self, slot: int) -> None:
        unit = int(self._si["unit"][slot])
        self._si["unit"][slot] = 0
        for leg in ("leg_a", "leg_b"):
            if self._ui[leg][unit] == slot:
                self._ui[leg][unit] = 0
        if self._ui["leg_a"][unit] == 0 and self._ui["leg_b"][unit] == 0:
            self._free_unit(unit)

    def _free_unit(self, unit: int) -> None:
        del self._u_key[self._u_keys[unit]]
        self._u_keys[unit] = None
        self._ub["live"][unit] = self._ub["cross"][unit] = False
        self._ui["pool"][unit] = 0
        self._u_hot[:, unit] = 0.0
        self._u_hot[_H_LO, unit], self._u_hot[_H_HI, unit] = -np.inf, np.inf  # never searched while free
        self._release_pair(unit)
        self._u_free.append(unit)
        self._dirty_index = True

    def _release_pair(self, unit: int) -> None:
        pair = int(self._ui["pair"][unit])
        if pair:
            self._p_unit[pair] = 0
            self._p_free.append(pair)
            self._ui["pair"][unit] = 0

    def _after_structural_change(self, slots: list[int], units: set[int], pools: set[int]) -> set[AccountId]:
        self._dirty_index = True
        live = np.array([u for u in units if u and self._ub["live"][u]], dtype=np.int64)
        self._build_units(live)
        return self._refresh(np.array(slots, dtype=np.int64), pools=np.array(sorted(pools), dtype=np.int64), units=live)

    # ---------------------------------------------------------------- liquidation pieces

    def _build_units(self, units: np.ndarray) -> None:
        """Precompute each unit's (A, B) pieces so a tick only evaluates A − W'·B."""
        units = units[units > 0]
        if not len(units):
            return
        leg_a, leg_b = self._ui["leg_a"][units], self._ui["leg_b"][units]
        main = np.where(leg_a > 0, leg_a, leg_b)
        hot = self._u_hot
        hot[_H_ISOW, units] = self._sf["isow"][main]
        hot[_H_OK, units] = (self._si["table"][main] >= 0) & self._ub["live"][units]
        hot[_H_POOL, units] = self._ui["pool"][units]
        hot[_H_CROSS, units] = self._ub["cross"][units]
        is_pair = (leg_a > 0) & (leg_b > 0)
        # Singles forget their active tier (the next evaluation searches all); pairs never use it.
        hot[_H_LO, units] = np.where(is_pair, -np.inf, np.nan)
        hot[_H_HI, units] = np.where(is_pair, np.inf, np.nan)
        hot[_H_K, units] = 0
        for unit in units[~is_pair].tolist():
            self._release_pair(unit)
        self._build_singles(units[~is_pair])
        pairs = units[is_pair]
        for unit in pairs.tolist():
            if not self._ui["pair"][unit]:
                self._ensure_unit_capacity()
                pair = self._p_free.pop() if self._p_free else self._p_hw
                self._p_hw += pair == self._p_hw
                self._ui["pair"][unit], self._p_unit[pair] = pair, unit
        self._build_pairs(pairs)
        # Re-read: growing the tables above may have replaced the hot rows this method started with,
        # and a pair flag written to the old array leaves the unit valued as a single leg.
        self._u_hot[_H_PAIR, units] = self._ui["pair"][units]
        self._update_own(units)

    def _build_singles(self, units: np.ndarray) -> None:
        slot = self._ui["leg_a"][units] + self._ui["leg_b"][units]  # exactly one is set
        sign = np.sign(self._sf["sq"][slot])
        q, ep = self._sf["aq"][slot], self._sf["entry"][slot]
        mmr, cum = self._s_mmr[:, slot].T, self._s_cum[:, slot].T
        with np.errstate(divide="ignore", invalid="ignore"):
            # long: r_k = (Q·EP − cum_k − W') / (Q(1 − mmr_k)), LP = max_k r_k
            # short: r_k = (Q·EP + cum_k + W') / (Q(1 + mmr_k)), LP = min_k r_k = −max_k(−r_k)
            slope = q[:, None] * (1.0 - sign[:, None] * mmr)
            self._u_a[units] = sign[:, None] * (q * ep)[:, None] / slope - cum / slope
            self._u_b[units] = 1.0 / slope
        self._u_hot[_H_SIGN, units] = sign

    def _build_pairs(self, units: np.ndarray) -> None:
        if not len(units):
            return
        pairs = self._ui["pair"][units]
        long_slot, short_slot = self._ui["leg_a"][units], self._ui["leg_b"][units]
        ql, el = self._sf["aq"][long_slot], self._sf["entry"][long_slot]
        qs, es = self._sf["aq"][short_slot], self._sf["entry"][short_slot]
        kl, ks = self._pair_tiers(long_slot, ql, qs)
        mmr, cum = self._s_mmr[:, long_slot], self._s_cum[:, long_slot]  # both legs share the table
        mmr_l, cum_l = np.take_along_axis(mmr, kl, 0), np.take_along_axis(cum, kl, 0)
        mmr_s, cum_s = np.take_along_axis(mmr, ks, 0), np.take_along_axis(cum, ks, 0)
        slope = ql * (1.0 - mmr_l) - qs * (1.0 + mmr_s)  # [piece, unit]
        const = cum_l + cum_s - ql * el + qs * es
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = -const / slope, 1.0 / slope
        up, down = slope > 0, slope < 0
        self._p_a[:, pairs] = np.vstack([np.where(up, a, -np.inf), np.where(down, a, np.inf)])
        self._p_b[:, pairs] = np.vstack([np.where(up, b, 0.0), np.where(down, b, 0.0)])
        # A flat piece leaves no root of its own: the safe set is empty if W' + c < 0 there.
        self._p_zc[pairs] = np.where(slope == 0, const, np.inf).min(axis=0)
        nan = np.isnan(slope).any(axis=0)  # missing brackets: keep NaN so the LP reads as unknown
        self._p_a[:, pairs[nan]] = np.nan
        self._p_a_rows[pairs], self._p_b_rows[pairs] = self._p_a[:, pairs].T, self._p_b[:, pairs].T

    def _pair_tiers(self, slot: np.ndarray, ql: np.ndarray, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tier of each leg on each of the 2K−1 intervals between the legs' tier-change prices."""
        floors = self._s_floor[1:, slot]
        with np.errstate(divide="ignore", invalid="ignore"):
            events = np.vstack([floors / ql, floors / qs])
        is_long = np.repeat([1, 0], self._k - 1)[:, None] * np.ones((1, len(slot)), dtype=np.int64)
        order = np.argsort(events, axis=0, kind="stable")
        steps = np.take_along_axis(is_long, order, 0)
        kl = np.vstack([np.zeros((1, len(slot)), dtype=np.int64), np.cumsum(steps, axis=0)])
        ks = np.arange(2 * self._k - 1)[:, None] - kl
        return kl, ks

    # ---------------------------------------------------------------- revaluation

    def _compute_slots(self, sel: slice | np.ndarray, out: np.ndarray) -> None:
        """Position figures for the selected slots; writes their pool contributions into
        ``out`` [_ROWS, n] (a full tick passes a view of ``_s_contrib``: no temporaries to copy)."""
        sf, sb = self._sf, self._sb
        mark = np.take(self._sym_mark, self._si["sym"][sel])
        notional = np.multiply(sf["aq"][sel], mark, out=out[_GROSS])
        upnl = np.subtract(mark, sf["entry"][sel], out=out[_UPNL])
        upnl *= sf["sq"][sel]
        mm = self._maint_margin(sel, notional, out[_MM])
        np.divide(notional, sf["lev"][sel], out=out[_IM])
        np.multiply(sf["sq"][sel], mark, out=out[_NET])  # = sign(q)·notional, bit for bit
        out[_ISOW] = sf["isow"][sel]
        complete = np.isfinite(mm)
        cross = ~sb["iso"][sel]
        np.multiply(mm, cross, out=out[_XMM])
        np.multiply(upnl, cross, out=out[_XUPNL])
        sf["mark"][sel], sf["notional"][sel], sf["upnl"][sel] = mark, notional, upnl
        sf["mm"][sel], sf["im"][sel], sb["complete"][sel] = mm, out[_IM], complete
        if not complete.all():  # incomplete rows add nothing but a count
            incomplete = ~complete
            for row in (_MM, _UPNL, _IM, _GROSS, _NET, _XMM, _XUPNL):
                out[row][incomplete] = 0.0
            out[_XBAD] = cross & incomplete
            out[_BAD] = incomplete
        else:
            out[_XBAD] = out[_BAD] = 0.0

    def _maint_margin(self, sel: slice | np.ndarray, notional: np.ndarray, out: np.ndarray) -> np.ndarray:
        """MM = max over the tier lines n·mmr_k − cum_k, which is the line of the tier whose
        notional range holds n (module docstring). Marks move little between ticks, so each slot
        first tries the line it was on last time; only slots that left its range search all tiers."""
        tier = self._s_tier
        np.multiply(notional, tier["mmr"][sel], out=out)
        out -= tier["cum"][sel]
        # NaN bounds (table not searched yet) and NaN notionals (no mark) fail both tests.
        settled = (notional >= tier["lo"][sel]) & (notional <= tier["hi"][sel])
        redo = np.flatnonzero(~settled)
        if len(redo):
            slots = np.arange(self._s_hw)[sel][redo] if isinstance(sel, slice) else sel[redo]
            out[redo] = self._search_mm_tiers(slots, notional[redo])
        return out

    def _search_mm_tiers(self, slots: np.ndarray, notional: np.ndarray) -> np.ndarray:
        values = notional * self._s_mmr[:, slots] - self._s_cum[:, slots]
        k = values.argmax(axis=0)  # the first max: a padding row repeats the real last tier after it
        columns = np.arange(len(slots))
        mm = values[k, columns]
        tier = self._s_tier
        tier["mmr"][slots], tier["cum"][slots] = self._s_mmr[k, slots], self._s_cum[k, slots]
        upper = self._s_floor[np.minimum(k + 1, self._k - 1), slots]
        known = np.isfinite(mm)
        # Without a mark keep searching (NaN bounds); without a table MM stays NaN on every tick
        # through the NaN line, so the bounds may take all notionals.
        lower = np.where(k == 0, -np.inf, self._s_floor[k, slots])  # tier 1 is the max below tier 2
        tier["lo"][slots] = np.where(known, lower, np.where(np.isnan(notional), np.nan, -np.inf))
        tier["hi"][slots] = np.where(
            known & (k + 1 < self._k), upper, np.where(known | ~np.isnan(notional), np.inf, np.nan)
        )
        return mm

    def _update_own(self, units: np.ndarray | slice) -> None:
        """Cache each cross unit's own MM − uPnL: W' = (wallet − XMM + XUPNL of the pool) + own."""
        c, la, lb = self._s_contrib, self._ui["leg_a"][units], self._ui["leg_b"][units]
        if isinstance(units, slice):  # every unit: one pass over the slots, then two gathers
            own = c[_XMM, : self._s_hw] - c[_XUPNL, : self._s_hw]
            np.add(own[la], own[lb], out=self._u_hot[_H_OWN, units])
        else:
            self._u_hot[_H_OWN, units] = (c[_XMM, la] - c[_XUPNL, la]) + (c[_XMM, lb] - c[_XUPNL, lb])

    def _compute_units(self, units: np.ndarray, *, all_units: bool = False) -> None:
        """Liquidation price of the selected units from the current pool sums (``all_units``:
        ``units`` is arange(high-water mark), read the hot rows as a view instead of a copy)."""
        if not len(units):
            return
        sums, wallet = self._pool_sum, self._pool_wallet
        n = len(units)
        if all_units:  # contiguous views, and the int / bool twins of hot fields where they exist
            hot = self._u_hot[:, :n]
            pool, cross, has_pair = self._ui["pool"][:n], self._ub["cross"][:n], self._ui["pair"][:n] > 0
            base = (wallet - sums[_XMM] + sums[_XUPNL])[pool]
            pool_ok = ((sums[_XBAD] == 0) & np.isfinite(wallet))[pool]
        else:
            hot = np.take(self._u_hot, units, axis=1)
            pool, cross, has_pair = hot[_H_POOL].astype(np.int64), hot[_H_CROSS] > 0, hot[_H_PAIR] > 0
            # only the pools these units read (the same float operations, element by element)
            base = wallet[pool] - sums[_XMM, pool] + sums[_XUPNL, pool]
            pool_ok = (sums[_XBAD, pool] == 0) & np.isfinite(wallet[pool])
        w = np.where(cross, base + hot[_H_OWN], hot[_H_ISOW])
        known = np.where(cross, pool_ok, True) & (hot[_H_OK] > 0)
        lp = self._single_roots(units, hot, w, has_pair)
        onfall = hot[_H_SIGN] > 0
        if all_units:
            self._all_pair_roots(w, lp, onfall)
        elif has_pair.any():
            self._pair_roots(hot[_H_PAIR, has_pair].astype(np.int64), w[has_pair], lp, onfall, has_pair)
        at = slice(0, n) if all_units else units  # a slice writes in place, an index array scatters
        self._uf["lp"][at] = np.where(known & (lp > 0), lp, np.nan)
        self._ub["onfall"][at], self._ub["known"][at] = onfall, known

    def _single_roots(self, units: np.ndarray, hot: np.ndarray, w: np.ndarray, pair: np.ndarray) -> np.ndarray:
        """LP of one-leg units: the active tier's piece when its root stays inside that tier
        (then it is the root: there is only one), else the max over all tiers."""
        lp = hot[_H_SIGN] * (hot[_H_A] - w * hot[_H_B])
        lo, hi = hot[_H_LO], hot[_H_HI]
        # r <= 0 in tier 1 means no positive root at all (every other tier's r is lower for a
        # long, and for a short W' + Q·EP <= 0 makes every r <= 0), so it is settled too.
        settled = (lp <= hi * (1 + 1e-12)) & ((lp >= lo * (1 - 1e-12)) | (hot[_H_K] == 0))
        redo = np.flatnonzero(~(settled | pair))
        if len(redo):
            lp[redo] = self._search_tiers(units[redo], w[redo])
        return lp

    def _search_tiers(self, units: np.ndarray, w: np.ndarray) -> np.ndarray:
        values = self._u_a[units] - w[:, None] * self._u_b[units]
        with np.errstate(invalid="ignore"):
            k = np.nan_to_num(values, nan=-np.inf).argmax(axis=1)
        slot = self._ui["leg_a"][units] + self._ui["leg_b"][units]  # singles: one leg is 0
        floors, q = self._s_floor[:, slot], self._sf["aq"][slot]
        columns = np.arange(len(units))
        hot = self._u_hot
        with np.errstate(invalid="ignore", divide="ignore"):
            hot[_H_LO, units] = floors[k, columns] / q
            upper = floors[np.minimum(k + 1, self._k - 1), columns] / q
            hot[_H_HI, units] = np.where(k + 1 < self._k, upper, np.inf)
        hot[_H_K, units] = k
        hot[_H_A, units], hot[_H_B, units] = self._u_a[units, k], self._u_b[units, k]
        return hot[_H_SIGN, units] * values[columns, k]

    def _pair_roots(
        self, pairs: np.ndarray, w: np.ndarray, lp: np.ndarray, onfall: np.ndarray, mask: np.ndarray
    ) -> None:
        """Lowest positive edge of the safe interval [lo, hi] of each cross hedge pair (in place)."""
        # Row gathers, then piece-major for the reductions (see _init_pairs).
        roots = np.ascontiguousarray((self._p_a_rows[pairs] - w[:, None] * self._p_b_rows[pairs]).T)
        root, use_lo = self._safe_edges(roots, self._p_zc[pairs], w)
        lp[mask], onfall[mask] = root, use_lo

    def _all_pair_roots(self, w: np.ndarray, lp: np.ndarray, onfall: np.ndarray) -> None:
        """``_pair_roots`` for every pair of a full tick, unit ids = positions in ``w``: reads the
        pieces in place (free pair ids belong to unit 0 and are dropped)."""
        end = self._p_hw
        unit = self._p_unit[1:end]
        w = w[unit]
        roots = self._p_b[:, 1:end] * w
        np.subtract(self._p_a[:, 1:end], roots, out=roots)
        root, use_lo = self._safe_edges(roots, self._p_zc[1:end], w)
        live = unit > 0
        unit = unit[live]
        lp[unit], onfall[unit] = root[live], use_lo[live]

    def _safe_edges(self, roots: np.ndarray, zc: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lowest positive edge or NaN, whether it is the lower edge) of each pair's safe
        interval, from the pieces' roots [2J, pair]."""
        j = 2 * self._k - 1
        lo, hi = roots[:j].max(axis=0), roots[j:].min(axis=0)
        empty = (lo > hi) | (w + zc < 0)
        use_lo = lo > 0
        root = np.where(empty, np.nan, np.where(use_lo, lo, np.where(np.isinf(hi), np.nan, hi)))
        return root, use_lo

    def _refresh(
        self, slots: np.ndarray, *, pools: np.ndarray | None = None, units: np.ndarray | None = None
    ) -> set[AccountId]:
        """Revalue ``slots`` and every cross liquidation price their pools feed (plus ``units``,
        rebuilt by a structural change); returns the accounts whose figures changed."""
        live = self._s_hw - 1 - len(self._s_free)
        n_pools = len(self._pool_asset)
        # Pool ids, not a mask over every pool: one account's sync stays O(its positions).
        parts = [self._si["pool"][slots], self._si["cpool"][slots]] + ([] if pools is None else [pools])
        touched = _distinct(np.concatenate(parts), n_pools)
        self._incremental_updates += 1
        if len(slots) > FULL_REFRESH_SHARE * live or self._incremental_updates >= RESYNC_EVERY:
            touched_pools = np.zeros(n_pools, dtype=bool)
            touched_pools[touched] = True
            return self._refresh_all(touched_pools)
        if len(slots):
            new = np.empty((_ROWS, len(slots)))
            self._compute_slots(slots, new)
            self._add_to_pools(self._si["cpool"][slots], -self._s_contrib[:, slots])
            self._add_to_pools(self._si["pool"][slots], new)
            self._s_contrib[:, slots] = new
            self._si["cpool"][slots] = self._si["pool"][slots]
            self._update_own(self._si["unit"][slots])
        todo = self._cross_units(touched)  # each unit sits in one pool: no repeats
        if units is not None and len(units):
            todo = _distinct(np.concatenate([todo, units]), self._u_hw)
        self._compute_units(todo)
        return self._accounts_of_pools(touched)

    def _cross_units(self, pools: np.ndarray) -> np.ndarray:
        """The live cross units of ``pools``. After a structural change (a sync's upsert) the
        indexes are stale; rebuilding them is O(N log N) in the book, so when the pools' accounts
        hold few positions their units are read from those accounts' slots instead, and the
        rebuild waits for the next tick that needs it (once per frame, however many syncs ran)."""
        if self._dirty_index and len(pools):
            accts = np.unique(self._pool_acct[pools]).tolist()
            held = [self._acct_slots[a].values() for a in accts]
            count = sum(map(len, held))
            if count * 4 < self._s_hw:
                slots = np.fromiter((s for h in held for s in h), dtype=np.int64, count=count)
                units = self._si["unit"][slots]
                keep = self._ub["live"][units] & self._ub["cross"][units] & np.isin(self._ui["pool"][units], pools)
                return np.unique(units[keep])
        _, by_pool = self._indexes()
        return by_pool.of(pools)

    def _add_to_pools(self, pools: np.ndarray, values: np.ndarray) -> None:
        """Add each slot's ``values`` [_ROWS, slot] to its pool's sums. Summed per distinct pool
        first (bincount over the few touched pools, in slot order, as a bincount over every pool
        did), so the sums are the same floats and the cost is the touched pools', not the book's."""
        touched, inverse = np.unique(pools, return_inverse=True)
        n = len(touched)
        flat = (np.arange(_ROWS)[:, None] * n + inverse[None, :]).ravel()
        self._pool_sum[:, touched] += np.bincount(flat, weights=values.ravel(), minlength=_ROWS * n).reshape(_ROWS, n)

    def _refresh_all(self, touched_pools: np.ndarray) -> set[AccountId]:
        self._incremental_updates = 0
        hw = slice(0, self._s_hw)
        contrib = self._s_contrib[:, hw]
        self._compute_slots(hw, contrib)
        self._pool_sum[:] = self._sum_pools(contrib)  # in place: _pool_sum is a view of its buffer
        self._si["cpool"][hw] = self._si["pool"][hw]
        self._update_own(slice(0, self._u_hw))
        self._compute_units(np.arange(self._u_hw), all_units=True)
        touched_pools[0] = False
        return self._accounts_of(touched_pools)

    def _sum_pools(self, contrib: np.ndarray) -> np.ndarray:
        """Per-pool sums of every slot's contributions. Slots are mostly allocated a whole account
        at a time (a sync upserts an account's positions in one batch), so equal pools sit in runs:
        summing the runs contiguously first leaves a scatter-add over a few thousand runs instead
        of 100k slots (about 3× faster). A scattered layout falls back to one scatter per row."""
        n = len(self._pool_asset)
        starts, run_pool = self._pool_runs(contrib.shape[1])
        if len(starts) * 4 > contrib.shape[1]:
            pools = self._si["pool"][: contrib.shape[1]]
            return np.vstack([np.bincount(pools, weights=row, minlength=n) for row in contrib])
        runs = np.add.reduceat(contrib, starts, axis=1)
        return np.vstack([np.bincount(run_pool, weights=row, minlength=n) for row in runs])

    def _pool_runs(self, hw: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, pool) of each run of equal pools among slots [0, hw); cached until a slot's pool changes."""
        if self._runs is None or self._runs[0] != hw:
            pools = self._si["pool"][:hw]
            starts = np.flatnonzero(pools[1:] != pools[:-1]) + 1
            starts = np.concatenate([np.zeros(1, dtype=np.int64), starts])
            self._runs = (hw, starts, pools[starts])
        return self._runs[1], self._runs[2]

    def _accounts_of_pools(self, pools: np.ndarray) -> set[AccountId]:
        pools = pools[pools > 0]
        return set(map(self._acct_ids.__getitem__, np.unique(self._pool_acct[pools]).tolist()))

    def _accounts_of(self, pool_mask: np.ndarray) -> set[AccountId]:
        accts = np.zeros(len(self._acct_ids), dtype=bool)
        accts[self._pool_acct[pool_mask]] = True
        return set(map(self._acct_ids.__getitem__, np.flatnonzero(accts).tolist()))

    # ---------------------------------------------------------------- readers

    def account_ids(self) -> list[AccountId]:
        return self._acct_ids[1:]

    def has_account(self, account_id: AccountId) -> bool:
        """``account_id in account_ids()`` without copying the list (a sync asks it per account)."""
        return account_id in self._acct_index

    def mark(self, symbol: str) -> MarkState | None:
        sym = self._sym_index.get(symbol)
        if sym is None or self._sym_raw[sym] is None:
            return None
        return MarkState(price=self._sym_raw[sym], ts_ms=int(self._sym_ts[sym]))

    def symbols_without_mark(self) -> list[str]:
        return [s for i, s in enumerate(self._sym_names) if i and self._sym_raw[i] is None]

    def symbols_without_brackets(self) -> list[str]:
        has = {sym for sym, acct in self._table_index if acct == -1}
        return [s for i, s in enumerate(self._sym_names) if i and i not in has]

    def positions(self, account_id: AccountId) -> list[PositionRisk]:
        out = []
        for p, raw, ts, has_mark, notional, upnl, mm, im, lp, lp_known, on_fall, distance, complete in self._rows(
            account_id
        ):
            out.append(
                PositionRisk(
                    account_id=account_id,
                    symbol=p.symbol,
                    side=p.side,
                    qty=p.qty,
                    entry_price=p.entry_price,
                    leverage=p.leverage,
                    margin_type=p.margin_type,
                    margin_asset=p.margin_asset,
                    isolated_wallet=p.isolated_wallet,
                    mark=raw,
                    mark_ts_ms=ts,
                    notional=_money(notional) if has_mark else None,
                    unrealized_pnl=_money(upnl) if has_mark else None,
                    maint_margin=_opt(mm),
                    initial_margin=_money(im) if has_mark else None,
                    liquidation_price=_opt(lp) if lp_known else None,
                    liquidation_on_fall=on_fall if lp_known and math.isfinite(lp) else None,
                    liquidation_distance=_opt(distance, _ratio) if lp_known else None,
                    complete=complete,
                )
            )
        return out

    def positions_plain(self, account_id: AccountId) -> list[dict[str, Any]]:
        """``positions()`` as JSON-safe dicts, every Decimal as ``str()`` would write it, built
        without the Decimals: what the live state publishes for every account that changed, twice
        a second (tested equal in positions/tests/test_book.py)."""
        out = []
        for p, raw, ts, has_mark, notional, upnl, mm, im, lp, lp_known, on_fall, distance, complete in self._rows(
            account_id
        ):
            out.append(
                {
                    "account_id": account_id,
                    "symbol": p.symbol,
                    "side": p.side,
                    "qty": str(p.qty),
                    "entry_price": str(p.entry_price),
                    "leverage": p.leverage,
                    "margin_type": p.margin_type,
                    "margin_asset": p.margin_asset,
                    "isolated_wallet": str(p.isolated_wallet),
                    "mark": None if raw is None else str(raw),
                    "mark_ts_ms": ts,
                    "notional": _money_str(notional) if has_mark else None,
                    "unrealized_pnl": _money_str(upnl) if has_mark else None,
                    "maint_margin": _money_str(mm) if math.isfinite(mm) else None,
                    "initial_margin": _money_str(im) if has_mark else None,
                    "liquidation_price": _money_str(lp) if lp_known and math.isfinite(lp) else None,
                    "liquidation_on_fall": on_fall if lp_known and math.isfinite(lp) else None,
                    "liquidation_distance": (_ratio_str(distance) if lp_known and math.isfinite(distance) else None),
                    "complete": complete,
                }
            )
        return out

    def _require_account(self, account_id: AccountId) -> int:
        acct = self._acct_index.get(account_id)
        if acct is None:
            raise ValueError(f"unknown account {account_id!r}")
        return acct

    def _rows(self, account_id: AccountId) -> Iterator[tuple]:
        """The inputs and float figures of the account's positions, in (symbol, side) order. The
        columns are gathered once per account as Python floats (the same values as reading one
        numpy scalar at a time, at a fraction of the cost): the engine's flush reads every account
        that changed, on the stream process's event loop."""
        acct = self._require_account(account_id)
        by_key = self._acct_slots[acct]
        slots = np.array([by_key[key] for key in sorted(by_key)], dtype=np.int64)
        units, syms = self._si["unit"][slots], self._si["sym"][slots]
        sf = self._sf
        marks, notional, upnl = sf["mark"][slots].tolist(), sf["notional"][slots].tolist(), sf["upnl"][slots].tolist()
        mm, im = sf["mm"][slots].tolist(), sf["im"][slots].tolist()
        complete, known = self._sb["complete"][slots].tolist(), self._ub["known"][units].tolist()
        lps, onfall = self._uf["lp"][units].tolist(), self._ub["onfall"][units].tolist()
        mark_ts = self._sym_ts[syms].tolist()
        for i, slot in enumerate(slots.tolist()):
            mark, lp, on_fall = marks[i], lps[i], onfall[i]
            has_mark = math.isfinite(mark)
            distance = ((mark - lp) if on_fall else (lp - mark)) / mark if has_mark else math.nan
            raw = self._sym_raw[int(syms[i])]
            ts = int(mark_ts[i]) if raw is not None else None
            lp_known = known[i]
            yield (
                self._s_pos[slot],
                raw,
                ts,
                has_mark,
                notional[i],
                upnl[i],
                mm[i],
                im[i],
                lp,
                lp_known,
                on_fall,
                distance,
                bool(complete[i]) and lp_known,
            )

    def account(self, account_id: AccountId) -> AccountRisk:
        acct = self._require_account(account_id)
        base, slots, notional = self._account_base(acct, account_id)
        pools = self._acct_pools[acct]
        per_asset = {asset: self._asset_figures(pool) for asset, pool in sorted(pools.items())}
        if not base["complete"]:
            return AccountRisk(**base, **dict.fromkeys(_ACCOUNT_FIGURES), per_asset=per_asset)
        return AccountRisk(**base, **self._account_totals(acct, slots, notional, _money, _ratio), per_asset=per_asset)

    def account_plain(self, account_id: AccountId) -> dict[str, Any]:
        """``account()`` without ``per_asset``, as JSON-safe values: every Decimal as ``str()`` would
        write it, tuples as lists; built without the Decimals. The live state publishes it for every
        account that changed, twice a second, where ``account()`` was half the flush's time
        (tested equal in positions/tests/test_book.py)."""
        acct = self._require_account(account_id)
        base, slots, notional = self._account_base(acct, account_id)
        for name in ("missing_marks", "missing_brackets", "missing_wallets"):
            base[name] = list(base[name])
        if not base["complete"]:
            return {**base, **dict.fromkeys(_ACCOUNT_FIGURES), "symbol_exposures": {}, "asset_wallets": {}}
        return {**base, **self._account_totals(acct, slots, notional, _money_str, _ratio_str)}

    def _account_base(self, acct: int, account_id: AccountId) -> tuple[dict[str, Any], list[int], list[float]]:
        """What says whether the account's figures are complete, its slots (in the order the
        totals sum them) and their notionals. Columns are gathered once, as in ``_rows``."""
        slots = list(self._acct_slots[acct].values())
        index = np.array(slots, dtype=np.int64)
        marks, notional = self._sf["mark"][index].tolist(), self._sf["notional"][index].tolist()
        tables, stamps = self._si["table"][index].tolist(), self._sym_ts[self._si["sym"][index]].tolist()
        symbols = [self._s_pos[s].symbol for s in slots]
        missing_marks = sorted({sym for sym, mark in zip(symbols, marks, strict=True) if not math.isfinite(mark)})
        missing_brackets = sorted({sym for sym, table in zip(symbols, tables, strict=True) if table < 0})
        pools = self._acct_pools[acct]
        missing_wallets = sorted(a for a, p in pools.items() if self._pool_wallet_dec[p] is None)
        oldest = int(min(stamps)) if stamps else -1
        base = dict(
            account_id=account_id,
            complete=not (missing_marks or missing_brackets or missing_wallets),
            missing_marks=tuple(missing_marks),
            missing_brackets=tuple(missing_brackets),
            missing_wallets=tuple(missing_wallets),
            oldest_mark_ts_ms=oldest if oldest >= 0 else None,
        )
        return base, slots, notional

    def _account_totals(
        self,
        acct: int,
        slots: list[int],
        notional: list[float],
        money: Callable[[float], Any],
        ratio: Callable[[float], Any],
    ) -> dict:
        """The account's figures from the float sums, each written by ``money`` or ``ratio``
        (Decimals for ``account()``, their strings for ``account_plain()``)."""
        pools = list(self._acct_pools[acct].values())
        s = self._pool_sum[:, pools].sum(axis=1)
        wallet = float((self._pool_wallet[pools] * self._pool_weight[pools]).sum()) + s[_ISOW]
        mb = wallet + s[_UPNL]
        cross_mb = self._pool_wallet[pools] + self._pool_sum[_XUPNL, pools]
        cross_ratios = _capped(self._pool_sum[_XMM, pools], cross_mb)
        exposures: dict[str, float] = {}
        for slot, value in zip(slots, notional, strict=True):
            symbol = self._s_pos[slot].symbol
            exposures[symbol] = exposures.get(symbol, 0.0) + value
        gross = s[_GROSS]
        shares = {sym: g / gross for sym, g in exposures.items()} if gross > 0 else {}
        # As _asset_figures computes each pool's wallet_balance, so the gate and the evaluator
        # compare the same number with an asset's cap.
        wallets = {
            asset: money(float(self._pool_wallet_dec[p]) + self._pool_sum[_ISOW, p])
            for asset, p in sorted(self._acct_pools[acct].items())
        }
        largest = max(shares, key=shares.__getitem__, default=None)
        return dict(
            wallet_balance=money(wallet),
            unrealized_pnl=money(s[_UPNL]),
            margin_balance=money(mb),
            equity=money(mb),
            maint_margin=money(s[_MM]),
            margin_ratio=ratio(float(_capped(s[_MM], mb))),
            cross_margin_ratio=ratio(cross_ratios.max(initial=0.0)),
            initial_margin=money(s[_IM]),
            utilization=ratio(float(_capped(s[_IM], mb))),
            gross_exposure=money(gross),
            net_exposure=money(s[_NET]),
            largest_symbol=largest,
            largest_symbol_share=ratio(shares[largest] if largest else 0.0),
            herfindahl=ratio(sum(x * x for x in shares.values())),
            symbol_exposures={sym: money(g) for sym, g in sorted(exposures.items())},
            asset_wallets=wallets,
        )

    def _asset_figures(self, pool: int) -> AssetFigures | None:
        s = self._pool_sum[:, pool]
        cross_wallet = self._pool_wallet_dec[pool]
        if cross_wallet is None or s[_BAD] > 0:
            return None
        wallet = float(cross_wallet) + s[_ISOW]
        mb, cross_mb = wallet + s[_UPNL], float(cross_wallet) + s[_XUPNL]
        return AssetFigures(
            asset=self._pool_asset[pool],
            cross_wallet_balance=cross_wallet,
            isolated_wallet_balance=_money(s[_ISOW]),
            wallet_balance=_money(wallet),
            unrealized_pnl=_money(s[_UPNL]),
            margin_balance=_money(mb),
            maint_margin=_money(s[_MM]),
            margin_ratio=_capped_ratio(s[_MM], mb),
            cross_margin_balance=_money(cross_mb),
            cross_maint_margin=_money(s[_XMM]),
            cross_margin_ratio=_capped_ratio(s[_XMM], cross_mb),
            initial_margin=_money(s[_IM]),
            utilization=_capped_ratio(s[_IM], mb),
            gross_exposure=_money(s[_GROSS]),
            net_exposure=_money(s[_NET]),
        )

    def screen_arrays(self) -> dict:
        """Float figures of every live position and pool, for ``rules.quiet_screen`` (read-only copies).

        Slots: ``acct`` (index into ``account_ids``, which starts with a None placeholder),
        ``sym``, ``pool``, ``notional``, ``upnl``, ``mm``, ``mark``, ``lev``, ``iso``, ``isow``,
        ``complete`` (mark and brackets present), ``lp``/``onfall``/``lp_known`` (the unit's
        liquidation price as ``positions()`` reads it). Pools: ``pool_acct``, ``pool_asset``,
        ``pool_wallet`` (NaN without a wallet) and the sums ``pool_mm``, ``pool_upnl``, ``pool_im``,
        ``pool_gross``, ``pool_isow``, ``pool_xmm``, ``pool_xupnl``, ``pool_bad``. Accounts:
        ``margin_balance``, computed in the same float operations as ``account()``, so
        ``margin_balance`` rounded to 8 decimals is exactly ``account().margin_balance``
        (rules.quiet_screen keeps the day's peak equity from it; tested in rules/tests/test_quiet_screen.py).
        """
        live = np.flatnonzero(self._sb["live"][: self._s_hw])
        units = self._si["unit"][live]
        sf, sums = self._sf, self._pool_sum
        out = {
            "account_ids": list(self._acct_ids),
            "n_symbols": len(self._sym_names),
            "acct": self._si["acct"][live],
            "sym": self._si["sym"][live],
            "pool": self._si["pool"][live],
            "notional": sf["notional"][live],
            "upnl": sf["upnl"][live],
            "mm": sf["mm"][live],
            "mark": sf["mark"][live],
            "lev": sf["lev"][live],
            "isow": sf["isow"][live],
            "iso": self._sb["iso"][live],
            "complete": self._sb["complete"][live] & (self._si["table"][live] >= 0),
            "lp": self._uf["lp"][units],
            "onfall": self._ub["onfall"][units],
            "lp_known": self._ub["known"][units],
            "pool_acct": self._pool_acct.copy(),
            "pool_asset": list(self._pool_asset),
            "pool_wallet": self._pool_wallet.copy(),  # NaN until the pool's wallet is known
        }
        for name, row in (
            ("mm", _MM),
            ("upnl", _UPNL),
            ("im", _IM),
            ("gross", _GROSS),
            ("isow", _ISOW),
            ("xmm", _XMM),
            ("xupnl", _XUPNL),
            ("bad", _BAD),
        ):
            out[f"pool_{name}"] = sums[row].copy()
        # margin_balance as _account_totals computes it: one-pool accounts vectorised (a one-element
        # sum is the element), the others with the very same numpy calls.
        n_acct = len(self._acct_ids)
        count = np.bincount(self._pool_acct[1:], minlength=n_acct)
        mb = np.full(n_acct, np.nan)
        single = np.flatnonzero(count == 1)
        pool_of = np.zeros(n_acct, dtype=np.int64)
        pool_of[self._pool_acct[1:]] = np.arange(1, len(self._pool_acct))
        p = pool_of[single]
        mb[single] = (self._pool_wallet[p] * self._pool_weight[p] + sums[_ISOW, p]) + sums[_UPNL, p]
        for acct in np.flatnonzero(count > 1).tolist():
            pools = list(self._acct_pools[acct].values())
            s = sums[:, pools].sum(axis=1)
            mb[acct] = (float((self._pool_wallet[pools] * self._pool_weight[pools]).sum()) + s[_ISOW]) + s[_UPNL]
        out["margin_balance"] = mb
        return out


_ACCOUNT_FIGURES = (
    "wallet_balance",
    "unrealized_pnl",
    "margin_balance",
    "equity",
    "maint_margin",
    "margin_ratio",
    "cross_margin_ratio",
    "initial_margin",
    "utilization",
    "gross_exposure",
    "net_exposure",
    "largest_symbol",
    "largest_symbol_share",
    "herfindahl",
)
