"""Desk revaluation under scenarios with Binance's margin mechanics; VaR, ES and their components.

Public API
----------
``desk_from_inputs(*, positions, wallets, brackets) -> Desk``
    ``positions``: {account: [figures.PositionInput]} (mark_price = today's mark), ``wallets``:
    {account: {margin asset: cross wallet balance}} (Decimal), ``brackets``: {symbol: [Bracket]}.
``Desk(...)``  the same as float arrays (benchmarks build it directly; see the class).
``desk_var(desk, scenarios, *, confidence=0.99) -> VarResult``        historical simulation
``parametric_var(desk, estimate, *, confidence=0.99) -> ParametricResult``  delta-normal cross-check

Money is USDT (USDC pools at face value, as ``figures.AccountFigures`` adds them). P&L is
relative to today's marks; losses are positive in VaR/ES/components.

Margin mechanics (what a scenario does to a position)
-----------------------------------------------------
A scenario moves each symbol's mark by ``move`` (end of the window) and along the way reaches
``low``/``high`` (the path's extremes, ``scenarios.ScenarioSet``).

* Isolated position (each hedge leg is its own unit, wallet = its isolated wallet): its
  liquidation price LP is the one of ``positions.margin.liquidation_price`` (computed here in
  vector form, the max/min of the tier roots; tested equal). A long whose path low reaches
  LP (``mark × (1 + low) <= LP``), or a short whose path high reaches it, is liquidated: it loses
  its whole current margin balance ``iso wallet + uPnL`` (the move down to LP, plus the
  maintenance margin left at LP, which Binance keeps as the liquidation clearance fee / insurance
  fund) and nothing more: the price going on cannot hurt a closed position. Otherwise it gains or
  loses ``signed notional × move``. So an isolated position never loses more than its margin.
* Cross pool (one account's cross positions of one margin asset, sharing its wallet): the pool is
  liquidated when its margin balance ``wallet + Σ uPnL`` at the scenario's marks is <= its
  maintenance margin ``Σ MM(|qty| × mark)`` (each position on its bracket tier at the new notional,
  ``positions.margin.maintenance_margin``). Then the pool loses its whole current margin balance
  and no more (the same reasoning: positions are closed at the maintenance line, the rest of the
  margin goes as the fee). A pool holding a single symbol (one position, or a hedge pair) is also
  checked at the window's path low and high: its equity − MM is concave in that one price, so its
  minimum over the path is at one of the two extremes, and the check is as exact as the isolated
  one. A pool holding several symbols is judged at the window's end prices: its equity path needs
  every symbol at the same minute, which per-symbol extremes do not give (the box of extremes
  would be far too pessimistic for a hedged book); an intraday dip that recovered by the end of
  the window is therefore missed for those pools.
* A liquidation never makes the loss larger than the current margin balance, and a pool or
  position with a margin balance <= 0 today loses 0 more (it is already gone).

Definitions
-----------
K scenarios, m = ceil(K × (1 − confidence)) tail scenarios (10 of 1,000 at 99 %).
VaR = the m-th worst desk loss; ES = the mean of the m worst desk losses (so ES >= VaR).
Components (Euler allocation for historical simulation): a part's (account's, symbol's)
component VaR is minus its P&L in the desk's VaR scenario, its component ES minus its mean
P&L over the desk's tail scenarios; they add up to the desk figure. A liquidated cross pool's
P&L (−margin balance) is split over its positions in proportion to their losses in that
scenario (gross notional if none lost), so symbol components add up too. Per-account
stand-alone VaR/ES use the same definitions on the account's own P&L.

Exactness: the engine is float64; money leaves as Decimal with 8 decimals. A test compares
every figure with a Decimal reference built on ``positions.margin``/``positions.figures`` on a
small desk: equal within 0.005 USDT (``TOLERANCE``). Components are rounded so that their
Decimal sum equals the desk figure exactly (the rounding residual, < 1e-6, goes to the largest).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import NormalDist

import numpy as np

from positions.figures import PositionInput, check_positions
from positions.margin import Bracket, check_brackets
from positions.portfolio.errors import BadInput, NoBars
from positions.portfolio.scenarios import ScenarioSet
from positions.portfolio.volatility import EwmaEstimate

TOLERANCE = Decimal("0.005")
_Q8 = Decimal("0.00000001")


def money(value: float) -> Decimal:
    if not math.isfinite(value):
        raise BadInput(f"non-finite money value {value!r}")  # never reached by construction
    return Decimal(format(value, ".8f")) + 0  # + 0 drops a negative zero


# --------------------------------------------------------------------------- the desk


@dataclass
class Desk:
    """Struct-of-arrays desk. Positions index i (N), pools p (P), accounts a (A), symbols s (S).

    Per position: ``account`` int[N], ``symbol`` int[N], ``qty`` float[N] signed (+long, −short;
    a hedge SHORT leg negative), ``entry`` float[N], ``mark`` float[N] (today), ``isolated``
    bool[N], ``iso_wallet`` float[N] (0 for cross), ``pool`` int[N] (−1 for isolated), ``sides``
    list[str] (BOTH/LONG/SHORT, for labels). Per pool: ``pool_account`` int[P], ``pool_asset``
    list[str], ``pool_wallet`` float[P]. Brackets per symbol as padded float tables ``tier_floor``,
    ``tier_mmr``, ``tier_cum`` [S, T] (rows past a symbol's last tier repeat it, floor = +inf)
    and ``tier_lev`` int[S, T].
    """

    accounts: tuple[Hashable, ...]
    symbols: tuple[str, ...]
    account: np.ndarray
    symbol: np.ndarray
    qty: np.ndarray
    entry: np.ndarray
    mark: np.ndarray
    isolated: np.ndarray
    iso_wallet: np.ndarray
    pool: np.ndarray
    pool_account: np.ndarray
    pool_asset: list[str]
    pool_wallet: np.ndarray
    tier_floor: np.ndarray
    tier_mmr: np.ndarray
    tier_cum: np.ndarray
    tier_lev: np.ndarray
    sides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.qty.size
        for name in ("account", "symbol", "entry", "mark", "isolated", "iso_wallet", "pool"):
            if getattr(self, name).shape != (n,):
                raise BadInput(f"Desk.{name} must have {n} rows")
        floats = [self.qty, self.entry, self.mark, self.iso_wallet, self.pool_wallet]
        if not all(np.isfinite(a).all() for a in floats):
            raise BadInput("Desk arrays must be finite")
        if n and ((self.entry <= 0).any() or (self.mark <= 0).any() or (self.qty == 0).any()):
            raise BadInput("entry and mark must be > 0 and qty non-zero")
        if ((self.pool < 0) != self.isolated).any():
            raise BadInput("isolated positions have pool −1, cross positions a pool")
        if not self.sides:
            self.sides = ["BOTH"] * n

    @property
    def n_positions(self) -> int:
        return int(self.qty.size)


def bracket_tables(symbols: Sequence[str], brackets: Mapping[str, Sequence[Bracket]]) -> tuple[np.ndarray, ...]:
    """Padded float tables (floor, mmr, cum, max leverage) [S, T] from Decimal brackets."""
    missing = [s for s in symbols if s not in brackets]
    if missing:
        raise BadInput(f"no brackets for: {', '.join(sorted(missing))}", symbols=sorted(missing))
    tables = [check_brackets(brackets[s]) for s in symbols]
    t = max((len(tb) for tb in tables), default=1)
    floor = np.full((len(symbols), t), np.inf)
    mmr = np.zeros((len(symbols), t))
    cum = np.zeros((len(symbols), t))
    lev = np.ones((len(symbols), t), dtype=np.int64)
    for i, tb in enumerate(tables):
        k = len(tb)
        floor[i, :k] = [float(b.floor) for b in tb]
        mmr[i, :k] = [float(b.mmr) for b in tb]
        cum[i, :k] = [float(b.cum) for b in tb]
        lev[i, :k] = [b.max_leverage for b in tb]
        mmr[i, k:], cum[i, k:], lev[i, k:] = mmr[i, k - 1], cum[i, k - 1], lev[i, k - 1]
    return floor, mmr, cum, lev


def desk_from_inputs(
    *,
    positions: Mapping[Hashable, Sequence[PositionInput]],
    wallets: Mapping[Hashable, Mapping[str, Decimal]],
    brackets: Mapping[str, Sequence[Bracket]],
) -> Desk:
    """The Decimal boundary: validated inputs (``figures.check_positions`` per account) to a Desk."""
    accounts = tuple(positions)
    symbols = tuple(sorted({p.symbol for rows in positions.values() for p in rows}))
    sym_index = {s: i for i, s in enumerate(symbols)}
    cols: dict[str, list] = {
        k: [] for k in ("account", "symbol", "qty", "entry", "mark", "iso", "isow", "pool", "side")
    }
    pool_index: dict[tuple[int, str], int] = {}
    pool_account: list[int] = []
    pool_asset: list[str] = []
    pool_wallet: list[float] = []
    for a, account in enumerate(accounts):
        rows = positions[account]
        check_positions(rows)
        for p in rows:
            cross = p.margin_type == "cross"
            pool = -1
            if cross:
                key = (a, p.margin_asset)
                if key not in pool_index:
                    wallet = wallets.get(account, {}).get(p.margin_asset)
                    if wallet is None:
                        raise BadInput(
                            f"account {account!r}: no {p.margin_asset} wallet balance for its cross positions"
                        )
                    if not isinstance(wallet, Decimal) or not wallet.is_finite():
                        raise BadInput(f"account {account!r}: wallet balance must be a finite Decimal")
                    pool_index[key] = len(pool_account)
                    pool_account.append(a)
                    pool_asset.append(p.margin_asset)
                    pool_wallet.append(float(wallet))
                pool = pool_index[key]
            cols["account"].append(a)
            cols["symbol"].append(sym_index[p.symbol])
            cols["qty"].append(float(p.signed_qty))
            cols["entry"].append(float(p.entry_price))
            cols["mark"].append(float(p.mark_price))
            cols["iso"].append(not cross)
            cols["isow"].append(float(p.isolated_wallet))
            cols["pool"].append(pool)
            cols["side"].append(p.side)
    floor, mmr, cum, lev = bracket_tables(symbols, brackets)
    return Desk(
        accounts=accounts,
        symbols=symbols,
        account=np.array(cols["account"], dtype=np.int64),
        symbol=np.array(cols["symbol"], dtype=np.int64),
        qty=np.array(cols["qty"], dtype=float),
        entry=np.array(cols["entry"], dtype=float),
        mark=np.array(cols["mark"], dtype=float),
        isolated=np.array(cols["iso"], dtype=bool),
        iso_wallet=np.array(cols["isow"], dtype=float),
        pool=np.array(cols["pool"], dtype=np.int64),
        pool_account=np.array(pool_account, dtype=np.int64),
        pool_asset=pool_asset,
        pool_wallet=np.array(pool_wallet, dtype=float),
        tier_floor=floor,
        tier_mmr=mmr,
        tier_cum=cum,
        tier_lev=lev,
        sides=cols["side"],
    )


# --------------------------------------------------------------------------- position-level maths


def maint_margin(desk: Desk, idx: np.ndarray, notional: np.ndarray) -> np.ndarray:
    """MM = max over tier lines n·mmr − cum (equal to the tier-selected value: the cum
    recurrence makes MM continuous and rising mmr convex). ``notional`` [..., len(idx)]."""
    mmr = desk.tier_mmr[desk.symbol[idx]]  # [n, T]
    cum = desk.tier_cum[desk.symbol[idx]]
    out = notional * mmr[:, 0] - cum[:, 0]
    for j in range(1, mmr.shape[1]):
        np.maximum(out, notional * mmr[:, j] - cum[:, j], out=out)
    return out


def isolated_liquidation_prices(desk: Desk, idx: np.ndarray) -> np.ndarray:
    """Liquidation price of isolated positions ``idx`` (NaN where Binance shows "--").

    With W the isolated wallet, Q = |qty|, E = entry and tier lines j: a long is safe while
    P >= r_j = (Q·E − W − cum_j) / (Q·(1 − mmr_j)) for every j, a short while
    P <= r_j = (W + Q·E + cum_j) / (Q·(1 + mmr_j)); LP = max_j (long) / min_j (short) r_j when
    positive. Same root as ``positions.margin.liquidation_price`` (tested)."""
    q = np.abs(desk.qty[idx])[:, None]
    e = desk.entry[idx][:, None]
    w = desk.iso_wallet[idx][:, None]
    mmr = desk.tier_mmr[desk.symbol[idx]]
    cum = desk.tier_cum[desk.symbol[idx]]
    long = desk.qty[idx] > 0
    r_long = ((q * e - w - cum) / (q * (1.0 - mmr))).max(axis=1)
    r_short = ((w + q * e + cum) / (q * (1.0 + mmr))).min(axis=1)
    lp = np.where(long, r_long, r_short)
    return np.where(lp > 0, lp, np.nan)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Figure:
    var: Decimal
    es: Decimal


@dataclass(frozen=True)
class Component:
    component_var: Decimal
    component_es: Decimal


@dataclass(frozen=True)
class AccountVar:
    var: Decimal  # stand-alone
    es: Decimal
    component_var: Decimal  # share of the desk figure
    component_es: Decimal
    max_loss: Decimal  # Σ positive margin balances: what margin mechanics let it lose at most


@dataclass(frozen=True)
class Liquidation:
    account: Hashable
    symbol: str | None  # None: a whole cross pool
    side: str | None
    margin_type: str
    asset: str
    loss: Decimal


@dataclass
class VarResult:
    confidence: float
    scenario_names: tuple[str, ...]
    desk: Figure
    var_scenario: int
    tail: tuple[int, ...]
    accounts: dict[Hashable, AccountVar]
    symbols: dict[str, Component]
    # float internals (kept for charts and the what-if link); convert with the helpers below
    desk_pnl_f: np.ndarray  # [K]
    account_pnl_f: np.ndarray  # [K, A]
    pool_liquidated: np.ndarray  # bool [K, P]
    _desk: Desk
    _iso_idx: np.ndarray
    _iso_theta: np.ndarray
    _iso_mb: np.ndarray
    _pool_mb: np.ndarray
    _scenarios: ScenarioSet

    def desk_pnl(self) -> list[Decimal]:
        return [money(float(x)) for x in self.desk_pnl_f]

    def account_pnl(self, account: Hashable) -> list[Decimal]:
        try:
            a = self._desk.accounts.index(account)
        except ValueError:
            raise BadInput(f"unknown account {account!r}") from None
        return [money(float(x)) for x in self.account_pnl_f[:, a]]

    def liquidated_accounts(self, scenario: int) -> list[Hashable]:
        return sorted({x.account for x in self.liquidations(scenario)}, key=self._desk.accounts.index)

    def liquidations(self, scenario: int) -> list[Liquidation]:
        """Cross pools and isolated positions the scenario liquidates, with the loss each takes."""
        if (
            isinstance(scenario, bool)
            or not isinstance(scenario, (int, np.integer))
            or not 0 <= scenario < len(self.scenario_names)
        ):
            raise BadInput(f"scenario must be an index in [0, {len(self.scenario_names)}), got {scenario!r}")
        d = self._desk
        out = []
        for p in np.flatnonzero(self.pool_liquidated[scenario]):
            out.append(
                Liquidation(
                    account=d.accounts[d.pool_account[p]],
                    symbol=None,
                    side=None,
                    margin_type="cross",
                    asset=d.pool_asset[p],
                    loss=money(max(float(self._pool_mb[p]), 0.0)),
                )
            )
        liq = _iso_liquidated(d, self._scenarios, self._iso_idx, self._iso_theta, np.array([scenario]))[0]
        for j in np.flatnonzero(liq):
            i = self._iso_idx[j]
            out.append(
                Liquidation(
                    account=d.accounts[d.account[i]],
                    symbol=d.symbols[d.symbol[i]],
                    side=d.sides[i],
                    margin_type="isolated",
                    asset="",
                    loss=money(max(float(self._iso_mb[j]), 0.0)),
                )
            )
        return out


# --------------------------------------------------------------------------- historical VaR


def tail_size(k: int, confidence: float) -> int:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, Decimal)):
        raise BadInput(f"confidence must be a number, got {confidence!r}")
    c = Decimal(str(confidence))
    if not c.is_finite() or not Decimal("0.5") <= c < 1:
        raise BadInput(f"confidence must be in [0.5, 1), got {confidence}")
    return max(1, math.ceil(k * (1 - c)))


def _iso_liquidated(
    desk: Desk, scenarios: ScenarioSet, idx: np.ndarray, theta: np.ndarray, rows: np.ndarray | slice
) -> np.ndarray:
    """bool [k, len(idx)]: the isolated position's path reached its liquidation price."""
    s = desk.symbol[idx]
    long = desk.qty[idx] > 0
    low = scenarios.low[rows][:, s]
    high = scenarios.high[rows][:, s]
    return np.where(long, low <= theta, high >= theta)


def _iso_liquidation_pairs(
    sc: ScenarioSet, symbol: np.ndarray, long: np.ndarray, theta: np.ndarray, *, batch: int = 1_000_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(scenario, position) pairs where an isolated position's path reaches its liquidation price,
    in batches of about ``batch`` pairs (memory stays bounded however many liquidations there are).

    Sparse on purpose: a position is liquidated in few scenarios. Each symbol's lows are sorted once
    (highs in descending order for shorts); a long with threshold θ is then liquidated in exactly
    the first searchsorted(lows, θ, "right") scenarios of that order."""
    ks: list[np.ndarray] = []
    js: list[np.ndarray] = []
    pending = 0
    for is_long, column in ((True, sc.low), (False, -sc.high)):
        sel = np.flatnonzero(long == is_long)
        if sel.size == 0:
            continue
        # longs: low <= θ; shorts: high >= θ  <=>  −high <= −θ
        limit = theta[sel] if is_long else -theta[sel]
        syms = symbol[sel]
        order = np.argsort(syms, kind="stable")
        sel, limit, syms = sel[order], limit[order], syms[order]
        bounds = np.flatnonzero(np.r_[True, syms[1:] != syms[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            s = syms[a]
            scen = np.argsort(column[:, s], kind="stable")
            counts = np.searchsorted(column[scen, s], limit[a:b], side="right")
            total = int(counts.sum())
            if total == 0:
                continue
            offsets = np.repeat(np.cumsum(counts) - counts, counts)
            ks.append(scen[np.arange(total) - offsets])
            js.append(np.repeat(sel[a:b], counts))
            pending += total
            if pending >= batch:
                yield np.concatenate(ks), np.concatenate(js)
                ks, js, pending = [], [], 0
    if ks:
        yield np.concatenate(ks), np.concatenate(js)


def _aligned(desk: Desk, scenarios: ScenarioSet) -> ScenarioSet:
    if not isinstance(scenarios, ScenarioSet):
        raise BadInput("scenarios must be a ScenarioSet")
    if len(scenarios) == 0:
        raise BadInput("no scenarios")
    return scenarios if scenarios.symbols == desk.symbols else scenarios.for_symbols(desk.symbols)


def _bincount(ids: np.ndarray, weights: np.ndarray, minlength: int) -> np.ndarray:
    """np.bincount that stays float when there is nothing to count (NumPy returns int64 then)."""
    return np.bincount(ids, weights, minlength=minlength).astype(float, copy=False)


def _group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Σ of columns of values [K, n] per group id → [K, n_groups] (reduceat over sorted columns)."""
    out = np.zeros((values.shape[0], n_groups))
    if values.shape[1] == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    out[:, g[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
    return out


def desk_var(desk: Desk, scenarios: ScenarioSet, *, confidence: float = 0.99) -> VarResult:
    """Historical-simulation VaR/ES of the desk, per account and per symbol; see the module doc."""
    sc = _aligned(desk, scenarios)
    k_count, n_sym = sc.moves.shape
    m = tail_size(k_count, confidence)
    n_acc, n_pool = len(desk.accounts), desk.pool_wallet.size
    moves = sc.moves
    exposure = desk.qty * desk.mark  # signed notional today
    notional = np.abs(exposure)
    upnl = desk.qty * (desk.mark - desk.entry)

    # --- isolated positions: liquidation thresholds in move space
    iso_idx = np.flatnonzero(desk.isolated)
    lp = isolated_liquidation_prices(desk, iso_idx)
    long_iso = desk.qty[iso_idx] > 0
    theta = np.where(np.isnan(lp), -np.inf, lp / desk.mark[iso_idx] - 1.0)  # short with "--": always
    iso_mb = desk.iso_wallet[iso_idx] + upnl[iso_idx]
    iso_loss = np.maximum(iso_mb, 0.0)
    s_iso = desk.symbol[iso_idx]
    ever = np.where(long_iso, sc.low.min(axis=0)[s_iso] <= theta, sc.high.max(axis=0)[s_iso] >= theta)
    risky_pos = np.flatnonzero(ever)  # may be liquidated in some scenario: the others stay linear

    # --- linear part: every position's signed notional × move, by pool (cross) or by account (isolated)
    cross_idx = np.flatnonzero(~desk.isolated)
    e_pool = np.zeros((n_sym, max(n_pool, 1)))
    np.add.at(e_pool, (desk.symbol[cross_idx], desk.pool[cross_idx]), exposure[cross_idx])
    e_iso = np.zeros((n_sym, n_acc))
    np.add.at(e_iso, (desk.symbol[iso_idx], desk.account[iso_idx]), exposure[iso_idx])
    pool_lin = moves @ e_pool[:, :n_pool]  # [K, P]
    account_pnl = np.ascontiguousarray(moves @ e_iso)  # [K, A]; C order: flat_pnl below is a view

    # --- isolated liquidations: replace e·move by −margin balance where the path reached LP
    flat_pnl = account_pnl.reshape(-1)  # a view: [k, a] is k × A + a
    for ks, js in _iso_liquidation_pairs(sc, s_iso[risky_pos], long_iso[risky_pos], theta[risky_pos]):
        j = risky_pos[js]
        i = iso_idx[j]
        corr = -iso_loss[j] - exposure[i] * moves[ks, desk.symbol[i]]
        flat_pnl += _bincount(ks * n_acc + desk.account[i], corr, minlength=flat_pnl.size)

    # --- cross pools: margin balance vs maintenance margin at the scenario's marks
    pool_mb = desk.pool_wallet + _bincount(desk.pool[cross_idx], upnl[cross_idx], minlength=n_pool)
    pool_liq = _pool_liquidations(desk, moves, cross_idx, notional, pool_mb, pool_lin, desk.pool[cross_idx])
    single, pool_symbol = _single_symbol_pools(desk, cross_idx)
    if single.any():
        # A pool holding one symbol (one position or a hedge pair) depends on that one price, and its
        # equity − MM is concave in it: its minimum over the window's path is at the path's low or high.
        # So, like an isolated position, it is liquidated if either extreme reaches maintenance.
        cols = np.flatnonzero(single)
        compact = np.full(n_pool, -1)
        compact[cols] = np.arange(cols.size)
        sub = cross_idx[single[desk.pool[cross_idx]]]
        net = _bincount(compact[desk.pool[sub]], exposure[sub], minlength=cols.size)
        for path in (sc.low, sc.high):
            lin = path[:, pool_symbol[cols]] * net
            pool_liq[:, cols] |= _pool_liquidations(
                desk, path, sub, notional, pool_mb[cols], lin, compact[desk.pool[sub]], pool_symbol[cols]
            )
    pool_pnl = np.where(pool_liq, -np.maximum(pool_mb, 0.0), pool_lin)
    if n_pool:
        account_pnl += _group_sum(pool_pnl, desk.pool_account, n_acc)
    desk_pnl = account_pnl.sum(axis=1)

    # --- the desk's tail and the components
    order = np.argsort(desk_pnl, kind="stable")
    tail = order[:m]
    var_k = int(order[m - 1])
    var_f = -float(desk_pnl[var_k])
    es_f = -float(desk_pnl[tail].mean())
    comp_var_acc = -account_pnl[var_k]
    comp_es_acc = -account_pnl[tail].mean(axis=0)
    pos_pnl = _position_pnl(
        desk, sc, np.r_[var_k, tail], exposure, theta, iso_idx, iso_loss, pool_liq, pool_mb, pool_lin
    )
    sym_var = -_bincount(desk.symbol, pos_pnl[0], minlength=n_sym)
    sym_es = -_bincount(desk.symbol, pos_pnl[1:].mean(axis=0), minlength=n_sym) if desk.n_positions else np.zeros(n_sym)

    # --- stand-alone per account
    part = np.partition(account_pnl, m - 1, axis=0)  # m <= K/2 + 1: confidence >= 0.5
    acc_var = -part[m - 1]
    acc_es = -part[:m].mean(axis=0)
    max_loss = _bincount(desk.account[iso_idx], iso_loss, minlength=n_acc)
    if n_pool:
        max_loss += _bincount(desk.pool_account, np.maximum(pool_mb, 0.0), minlength=n_acc)

    desk_var_d = money(var_f)
    desk_es_d = money(es_f)
    cva = _split_exact(comp_var_acc, desk_var_d)
    cea = _split_exact(comp_es_acc, desk_es_d)
    cvs = _split_exact(sym_var, desk_var_d)
    ces = _split_exact(sym_es, desk_es_d)
    accounts = {
        acc: AccountVar(
            var=money(float(acc_var[a])),
            es=money(float(acc_es[a])),
            component_var=cva[a],
            component_es=cea[a],
            max_loss=money(float(max_loss[a])),
        )
        for a, acc in enumerate(desk.accounts)
    }
    symbols = {s: Component(component_var=cvs[i], component_es=ces[i]) for i, s in enumerate(desk.symbols)}
    return VarResult(
        confidence=float(confidence),
        scenario_names=sc.names,
        desk=Figure(var=desk_var_d, es=desk_es_d),
        var_scenario=var_k,
        tail=tuple(int(x) for x in tail),
        accounts=accounts,
        symbols=symbols,
        desk_pnl_f=desk_pnl,
        account_pnl_f=account_pnl,
        pool_liquidated=pool_liq,
        _desk=desk,
        _iso_idx=iso_idx,
        _iso_theta=theta,
        _iso_mb=iso_mb,
        _pool_mb=pool_mb,
        _scenarios=sc,
    )


def _pool_liquidations(
    desk: Desk,
    moves: np.ndarray,
    cross_idx: np.ndarray,
    notional: np.ndarray,
    pool_mb: np.ndarray,
    pool_lin: np.ndarray,
    pool_of: np.ndarray,
    pool_symbol: np.ndarray | None = None,
) -> np.ndarray:
    """bool [K, P]: margin balance <= maintenance margin at the scenario's marks.

    ``pool_of``: the pool (column of ``pool_mb``/``pool_lin``) of each position of ``cross_idx``;
    ``pool_symbol``: when every pool holds one symbol, that symbol (a gather replaces the matmul).

    MM is evaluated on each position's *today* tier line (a matmul: the lines are linear in the
    move), which is a lower bound of the true MM (the max of all tier lines). The exact MM is only
    needed where the decision could flip: where MB > MM_line but MB <= MM_line + the most the
    tier changes can add over the scenario set (a per-pool bound from each symbol's move range).
    Those (scenario, pool) pairs, few by construction, are recomputed exactly."""
    n_pool = pool_mb.size
    k_count = moves.shape[0]
    if n_pool == 0:
        return np.zeros((k_count, 0), dtype=bool)
    s = desk.symbol[cross_idx]
    n0 = notional[cross_idx]
    floors = desk.tier_floor[s]
    tier = (floors <= n0[:, None]).sum(axis=1) - 1
    mmr0 = desk.tier_mmr[s, tier]
    cum0 = desk.tier_cum[s, tier]
    # MM_line(k) = Σ n0·(1 + move)·mmr0 − cum0 per pool
    const = _bincount(pool_of, n0 * mmr0 - cum0, minlength=n_pool)
    if pool_symbol is None:
        a_pool = np.zeros((len(desk.symbols), n_pool))
        np.add.at(a_pool, (s, pool_of), n0 * mmr0)
        mm_line = moves @ a_pool + const
    else:
        mm_line = moves[:, pool_symbol] * _bincount(pool_of, n0 * mmr0, minlength=n_pool) + const
    equity = pool_mb + pool_lin
    # upper bound of (exact − line) per position over the set: convex, so at the move range's ends
    lo = n0 * (1.0 + moves.min(axis=0)[s])
    hi = n0 * (1.0 + moves.max(axis=0)[s])
    gap = np.maximum(
        maint_margin(desk, cross_idx, lo) - (lo * mmr0 - cum0),
        maint_margin(desk, cross_idx, hi) - (hi * mmr0 - cum0),
    )
    bound = _bincount(pool_of, np.maximum(gap, 0.0), minlength=n_pool)
    liq = equity <= mm_line
    unsure = (~liq) & (equity <= mm_line + bound[None, :] * (1 + 1e-12) + 1e-9)
    ks, ps = np.nonzero(unsure)
    if ks.size:
        order = np.argsort(pool_of, kind="stable")
        members = cross_idx[order]
        counts = np.bincount(pool_of, minlength=n_pool)
        starts = np.cumsum(counts) - counts
        for b in range(0, ks.size, 2048):
            kk, pp = ks[b : b + 2048], ps[b : b + 2048]
            cnt = counts[pp]
            total = int(cnt.sum())
            offsets = np.repeat(starts[pp] - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
            pos = members[offsets]
            krep = np.repeat(kk, cnt)
            nn = notional[pos] * (1.0 + moves[krep, desk.symbol[pos]])
            mm = maint_margin(desk, pos, nn)
            seg = np.cumsum(cnt) - cnt
            mm_pool = np.add.reduceat(mm, seg) if total else np.zeros(0)
            liq[kk, pp] = equity[kk, pp] <= mm_pool
    return liq


def _single_symbol_pools(desk: Desk, cross_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bool [P]: the pool's cross positions are all on one symbol, int [P]: that symbol)."""
    n_pool = desk.pool_wallet.size
    pools, syms = desk.pool[cross_idx], desk.symbol[cross_idx]
    lo = np.full(n_pool, np.iinfo(np.int64).max)
    hi = np.full(n_pool, -1)
    np.minimum.at(lo, pools, syms)
    np.maximum.at(hi, pools, syms)
    single = (hi >= 0) & (lo == hi)
    return single, np.where(single, hi, 0)


def _position_pnl(
    desk: Desk,
    sc: ScenarioSet,
    rows: np.ndarray,
    exposure: np.ndarray,
    theta: np.ndarray,
    iso_idx: np.ndarray,
    iso_loss: np.ndarray,
    pool_liq: np.ndarray,
    pool_mb: np.ndarray,
    pool_lin: np.ndarray,
) -> np.ndarray:
    """Per-position P&L [len(rows), N] in the given scenarios (for symbol components)."""
    pnl = sc.moves[rows][:, desk.symbol] * exposure
    if iso_idx.size:
        liq = _iso_liquidated(desk, sc, iso_idx, theta, rows)
        pnl[:, iso_idx] = np.where(liq, -iso_loss, pnl[:, iso_idx])
    cross = ~desk.isolated
    if pool_liq.shape[1] and cross.any():
        pools = desk.pool[cross]
        sub = pnl[:, cross]
        target = np.where(pool_liq[rows], -np.maximum(pool_mb, 0.0), pool_lin[rows])  # [r, P]
        gap = target - pool_lin[rows]  # 0 unless liquidated
        losses = np.maximum(-sub, 0.0)
        weight_sum = np.zeros((len(rows), pool_mb.size))
        for r in range(len(rows)):
            weight_sum[r] = _bincount(pools, losses[r], minlength=pool_mb.size)
        gross = _bincount(pools, np.abs(exposure[cross]), minlength=pool_mb.size)
        use_loss = weight_sum > 0
        denom = np.where(use_loss, weight_sum, np.where(gross > 0, gross, 1.0))
        w = np.where(use_loss[:, pools], losses, np.abs(exposure[cross])[None, :])
        pnl[:, cross] = sub + gap[:, pools] * w / denom[:, pools]
    return pnl


def _split_exact(parts: np.ndarray, total: Decimal) -> list[Decimal]:
    """Round each part to 8 decimals and put the rounding residual on the largest |part|,
    so that the Decimal parts add up to ``total`` exactly."""
    values = [money(float(x)) for x in parts]
    if not values:
        return values
    residual = total - sum(values, Decimal(0))
    biggest = int(np.argmax(np.abs(parts)))
    values[biggest] += residual
    return values


# --------------------------------------------------------------------------- parametric cross-check


@dataclass(frozen=True)
class ParametricResult:
    confidence: float
    desk: Figure
    accounts: dict[Hashable, AccountVar]
    symbols: dict[str, Component]
    flags: dict[str, tuple[str, ...]]


def parametric_var(desk: Desk, estimate: EwmaEstimate, *, confidence: float = 0.99) -> ParametricResult:
    """Margin-capped delta-normal VaR/ES (1 day), the cross-check of ``desk_var``.

    Plain delta-normal: P&L ≈ Σ exposure_s × r_s with r ~ N(0, Σ) (Σ = the EWMA daily
    covariance), VaR = z·σ, ES = σ·φ(z)/(1 − α). Margin mechanics, in the only way a linear
    model can carry them: an isolated position's exposure is scaled down so that its own
    VaR (z·σ_s·|e|) cannot exceed its margin balance, and a cross pool's exposure vector so
    that its VaR cannot exceed the pool's margin balance. The desk and account figures are
    then the usual quadratic forms; components are Euler (e_a·Σx/σ and x_s·(Σx)_s/σ) and add up.
    """
    tail_size(2, confidence)  # validates
    missing = [s for s in desk.symbols if s not in estimate.symbols]
    if missing:
        raise NoBars(f"no volatility estimate for: {', '.join(sorted(missing))}", symbols=sorted(missing))
    cols = [estimate.symbols.index(s) for s in desk.symbols]
    cov = estimate.daily_cov()[np.ix_(cols, cols)]
    vol = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    alpha = float(confidence)
    z = NormalDist().inv_cdf(alpha)
    es_factor = NormalDist().pdf(z) / (1 - alpha)
    n_acc, n_sym, n_pool = len(desk.accounts), len(desk.symbols), desk.pool_wallet.size
    exposure = desk.qty * desk.mark
    upnl = desk.qty * (desk.mark - desk.entry)
    # isolated: cap each position
    iso = desk.isolated
    iso_mb = np.maximum(desk.iso_wallet + upnl, 0.0)
    own = z * vol[desk.symbol] * np.abs(exposure)
    scale = np.where(iso & (own > iso_mb), np.divide(iso_mb, own, out=np.zeros_like(own), where=own > 0), 1.0)
    eff = exposure * scale
    x_acc = np.zeros((n_sym, n_acc))
    np.add.at(x_acc, (desk.symbol[iso], desk.account[iso]), eff[iso])
    if n_pool:
        cross = ~iso
        x_pool = np.zeros((n_sym, n_pool))
        np.add.at(x_pool, (desk.symbol[cross], desk.pool[cross]), eff[cross])
        pool_mb = desk.pool_wallet + _bincount(desk.pool[cross], upnl[cross], minlength=n_pool)
        pool_sigma = np.sqrt(np.clip(np.einsum("sp,sp->p", x_pool, cov @ x_pool), 0.0, None))
        cap = np.maximum(pool_mb, 0.0)
        f = np.where(
            z * pool_sigma > cap, np.divide(cap, z * pool_sigma, out=np.zeros_like(cap), where=pool_sigma > 0), 1.0
        )
        np.add.at(x_acc.T, desk.pool_account, (x_pool * f).T)
    x = x_acc.sum(axis=1)
    cx = cov @ x
    sigma = math.sqrt(max(float(x @ cx), 0.0))
    acc_sigma = np.sqrt(np.clip(np.einsum("sa,sa->a", x_acc, cov @ x_acc), 0.0, None))
    if sigma > 0:
        acc_share = (x_acc.T @ cx) / sigma
        sym_share = x * cx / sigma
    else:
        acc_share = np.zeros(n_acc)
        sym_share = np.zeros(n_sym)
    var_d, es_d = money(z * sigma), money(es_factor * sigma)
    cva, cea = _split_exact(z * acc_share, var_d), _split_exact(es_factor * acc_share, es_d)
    cvs, ces = _split_exact(z * sym_share, var_d), _split_exact(es_factor * sym_share, es_d)
    max_loss = _bincount(desk.account[iso], iso_mb[iso], minlength=n_acc)
    if n_pool:
        max_loss += _bincount(desk.pool_account, np.maximum(pool_mb, 0.0), minlength=n_acc)
    accounts = {
        acc: AccountVar(
            var=money(z * float(acc_sigma[a])),
            es=money(es_factor * float(acc_sigma[a])),
            component_var=cva[a],
            component_es=cea[a],
            max_loss=money(float(max_loss[a])),
        )
        for a, acc in enumerate(desk.accounts)
    }
    symbols = {s: Component(component_var=cvs[i], component_es=ces[i]) for i, s in enumerate(desk.symbols)}
    return ParametricResult(
        confidence=alpha,
        desk=Figure(var=var_d, es=es_d),
        accounts=accounts,
        symbols=symbols,
        flags={s: f for s, f in estimate.flags.items() if s in desk.symbols},
    )
