# cython: language_level=3
# Cython declarations for rules/checks.py (pure-Python mode: the .py stays plain Python).
# Integer units stay Python ints (object): products reach 10^26 and must stay exact.
cimport cython

cdef class Order:
    cdef public object symbol, side, type, qty, price, position_side, time_in_force, client_order_id
    cdef public bint reduce_only, buy, market, resting
    cdef public object qty_u, price_u, price_f, leg_key, both_key
    cdef public double qty_f

cdef class BracketTable:
    cdef public tuple floors, rows
    cdef public object max_leverage

cdef class SymbolView:
    cdef public object name, tick, step, min_qty, max_qty, market_max_qty, min_notional
    cdef public bint trading
    cdef public object tick_u, step_u, min_qty_u, max_qty_u, market_max_u, min_notional_u16
    cdef public BracketTable table
    cdef public object margin_asset

cdef class Leg:
    cdef public object qty_u, leverage, other_sign
    cdef public double qty, entry, iso_wallet, notional, upnl, mm
    cdef public double gross_base, mb_base, pool_mm_base, pool_mb_base, w_base
    cdef public bint isolated
    cdef public Leg other

cdef class AccountView:
    cdef public object account_id, trading_state, published_ms, open_count
    cdef public bint hedge, has_state, complete, user_feed_connected
    cdef public double wallet, cross_wallet, upnl, mm, gross, cross_mm, cross_upnl
    cdef public dict legs, own_books, tables
    cdef public tuple base
    cdef public object asset_wallets

cdef class MarketState:
    cdef public object symbols, marks, feed_last_ms, now_ms, stale_ms

cdef class Counters:
    cdef public object rate_1s, rate_1m, duplicate, daily_orders, daily_cancels, daily_fills

cdef class GateProfile:
    cdef public object off, allow, deny, max_qty_u, max_notional_u16, max_open, daily_orders, daily_cancels
    cdef public object daily_fills, collar, slippage, rate_s, rate_m, dup_window_s
    cdef public bint fresh, status, pside, filters, reduce, self_trade, lists, exposure
    cdef public object pos_notional, acct_notional, leverage, margin_ratio, liq_distance, pos_leverage
    cdef public object values, by_symbol, asset_caps
    cdef public tuple caps

cdef double _CAP, _INF, _LOW, _HIGH

@cython.locals(sym=SymbolView, p=GateProfile, leg=Leg, fails=list, table=BracketTable, realized=double)
cpdef check_order(Order order, AccountView account, MarketState market, GateProfile profile, Counters counters)

cdef list _exposure(GateProfile p, tuple pr, Leg leg, object add)

cdef object _asset_cap(AccountView account, object asset, object cap_u, double realized, object add)

@cython.locals(
    f=double, size=double, new=double, new_entry=double, realized=double, isolated=bint, wallet=double,
    gross_base=double, mb_base=double, pool_mm_base=double, pool_mb_base=double, iso_new=double,
    notional=double, upnl=double, floor=double, cap=double, mmr=double, cum=double, mm=double, gross=double,
    mb=double, pool_mm=double, pool_mb=double, leverage=double, ratio=double, other=Leg, sign=int,
    root=double, at=double, k=Py_ssize_t, vals=tuple,
)
cdef tuple _project(Order order, AccountView a, Leg leg, double mark, BracketTable table)

@cython.locals(qty=double, entry=double, held=double, new=double, iso_w=double, buy=bint, isolated=bint)
cdef tuple _leg_after(Order order, bint hedge, Leg leg, double f)

@cython.locals(rows=tuple, floors=tuple, floor=double, cap=double, mmr=double, cum=double, root=double,
               notional=double)
cdef object _single_root(double wallet, double q, double e, int sign, BracketTable table, Py_ssize_t k)

@cython.locals(
    rows=tuple, floors=tuple, ka=Py_ssize_t, kb=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, base=double,
    fa=double, ca_=double, ma=double, cuma=double, fb=double, cb_=double, mb_=double, cumb=double,
    slope=double, const=double, low_a=double, low_b=double, low=double, root=double,
    high_a=double, high_b=double, high=double, cap_a=double, cap_b=double,
)
cdef object _pair_root(double wallet, double qa, double ea, int sa, double qb, double eb, int sb,
                       BracketTable table, double mark)
