"""rules.checks.check_order, the pure function: every reason code at, just below and just above
its limit; exits and reductions; switching checks off. No database, no I/O."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from marketdata.sink import account_state
from positions.book import BookPosition, RiskBook
from rules import checks as c
from rules.tests.test_gate_fixtures import FILTERS, TABLES

NOW = 1_800_000_000_000
STALE_MS = 5000
MARK = "50000"
HELD = BookPosition("BTCUSDT", "BOTH", D("0.5"), D("49000"), 20)  # 0.5 BTC long at 49,000, 20x


def symbols(status: str = "TRADING", brackets: bool = True) -> dict[str, c.SymbolView]:
    out = {}
    for name, (tick, step, lo, hi, market, notional) in FILTERS.items():
        out[name] = c.symbol_view(
            name=name,
            status=status,
            tick_size=D(tick),
            step_size=D(step),
            min_qty=D(lo),
            max_qty=D(hi),
            market_max_qty=D(market),
            min_notional=D(notional),
            brackets=TABLES[name] if brackets else None,
        )
    return out


def state(
    *,
    wallet="10000",
    positions=(HELD,),
    open_orders=(),
    published_ms=NOW,
    marks=None,
) -> dict:
    book = RiskBook()
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    book.apply_marks({s: D(p) for s, p in (marks or {"BTCUSDT": MARK, "ETHUSDT": "2500"}).items()}, ts=NOW)
    book.set_wallet(1, D(wallet))
    for p in positions:
        book.upsert_position(1, p)
    body = account_state(book.account(1), book.positions(1), list(open_orders))
    body["published_ms"] = published_ms
    return body


def account(
    *, trading="ACTIVE", hedge=False, connected=True, live: dict | None | str = "default", **state_kw
) -> c.AccountView:
    live_state = state(**state_kw) if live == "default" else live
    return c.account_view(
        account_id=1, trading_state=trading, hedge=hedge, state=live_state, user_feed_connected=connected
    )


def market(*, mark=MARK, mark_age_ms=0, feed_age_ms=0, feed=True, **sym_kw) -> c.MarketState:
    marks = {"BTCUSDT": [mark, NOW - mark_age_ms], "ETHUSDT": ["2500", NOW]} if mark else {"ETHUSDT": ["2500", NOW]}
    return c.market_state(
        symbols=symbols(**sym_kw),
        marks=c.compile_marks(marks),
        feed_last_ms=NOW - feed_age_ms if feed else None,
        now_ms=NOW,
        stale_ms=STALE_MS,
    )


def order(**kw) -> c.Order:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "qty": D("0.010"), "price": D("49900.0")}
    base.update(kw)
    return c.Order.make(**{k: v for k, v in base.items() if v is not None or k != "price"})


def run(o=None, a=None, m=None, p=None, counters=None, **values) -> c.Decision:
    profile = p if p is not None else c.compile_profile(values)
    return c.check_order(o or order(), a or account(), m or market(), profile, counters or c.Counters())


def codes(decision: c.Decision) -> list[str]:
    return decision.codes


def test_an_order_within_every_limit_passes():
    d = run()
    assert d.allowed and not d.failures and not d.warnings
    assert d.projection.position_notional == pytest.approx(25500)


# --------------------------------------------------------------------------- limits at / below / above

# code -> (build a decision from the limit, the value the order has, a small step in the value's unit)
# "max" limits pass at and below the value's limit and deny above; "min" limits the other way.
MAX_CASES = {
    c.ORDER_QTY_HIGH: (lambda lim: run(max_order_qty=lim), D("0.010"), D("0.001")),
    c.ORDER_NOTIONAL_HIGH: (lambda lim: run(max_order_notional=lim), D("499.000"), D("0.01")),
    c.PRICE_COLLAR: (lambda lim: run(max_price_deviation=lim), D("0.002"), D("0.00000001")),
    c.MARKET_SLIPPAGE: (
        lambda lim: run(order(type="MARKET", price=D("50100.0")), max_market_slippage=lim),
        D("0.002"),
        D("0.00000001"),
    ),
    c.RATE_PER_SECOND: (lambda lim: run(counters=c.Counters(rate_1s=5), order_rate_per_second=lim), 5, 1),
    c.RATE_PER_MINUTE: (lambda lim: run(counters=c.Counters(rate_1m=50), order_rate_per_minute=lim), 50, 1),
    c.OPEN_ORDERS_CAP: (
        lambda lim: run(
            a=account(open_orders=[{"symbol": "ETHUSDT", "side": "BUY", "price": "1"}] * 4), max_open_orders=lim
        ),
        5,
        1,
    ),
    c.DAILY_ORDERS_CAP: (lambda lim: run(counters=c.Counters(daily_orders=7), max_daily_orders=lim), 7, 1),
    c.DAILY_CANCELS_CAP: (lambda lim: run(counters=c.Counters(daily_cancels=7), max_daily_cancels=lim), 7, 1),
    c.DAILY_FILLS_CAP: (lambda lim: run(counters=c.Counters(daily_fills=7), max_daily_fills=lim), 7, 1),
    c.POSITION_LEVERAGE_HIGH: (lambda lim: run(max_leverage_critical=lim), 20, 1),
    # Exchange filters: the limit is the symbol's.
    c.QTY_ABOVE_MAX: (
        lambda lim: run(m=market(), o=order(qty=D("1000") + (D("1000") - lim), price=D("49900.0"))),
        D("1000"),
        D("0.001"),
    ),
    c.MARKET_QTY_ABOVE_MAX: (
        lambda lim: run(o=order(type="MARKET", price=None, qty=D("120") + (D("120") - lim))),
        D("120"),
        D("0.001"),
    ),
}


@pytest.mark.parametrize("code", sorted(MAX_CASES))
@pytest.mark.parametrize(("where", "passes"), [("at", True), ("just_below", True), ("just_above", False)])
def test_a_max_limit_passes_at_and_below_and_denies_above(code, where, passes):
    build, value, step = MAX_CASES[code]
    # "just below": the value is one step under the limit (limit = value + step); "just above": over it.
    limit = {"at": value, "just_below": value + step, "just_above": value - step}[where]
    decision = build(limit)
    assert (code not in codes(decision)) is passes, (limit, decision.failures)
    assert decision.allowed is passes


MIN_CASES = {
    # symbol minimums: the order's value against the filter, moved by changing the order
    c.QTY_BELOW_MIN: (lambda delta: run(o=order(qty=D("0.001") + delta, price=D("100000.0"))), D("0.00000001")),
    c.NOTIONAL_BELOW_MIN: (lambda delta: run(o=order(qty=D("0.002"), price=D("50000.0") + delta * 100)), D("0.1")),
}


@pytest.mark.parametrize("code", sorted(MIN_CASES))
@pytest.mark.parametrize(("where", "passes"), [("at", True), ("just_above", True), ("just_below", False)])
def test_a_minimum_passes_at_and_above_and_denies_below(code, where, passes):
    build, step = MIN_CASES[code]
    delta = {"at": 0, "just_above": step, "just_below": -step}[where]
    decision = build(delta)
    assert (code not in codes(decision)) is passes, decision.failures


def _projected(name: str) -> float:
    return getattr(run().projection, name)


EXPOSURE = {
    c.POSITION_NOTIONAL_HIGH: ("max_position_notional", "position_notional", False),
    c.ACCOUNT_NOTIONAL_HIGH: ("max_account_notional", "account_gross_notional", False),
    c.LEVERAGE_HIGH: ("max_leverage", "leverage", False),
    c.MARGIN_RATIO_HIGH: ("margin_ratio", "margin_ratio", False),
    c.LIQUIDATION_NEAR: ("liq_distance", "liquidation_distance", True),
}


@pytest.mark.parametrize("code", sorted(EXPOSURE))
@pytest.mark.parametrize("where", ["at", "just_inside", "just_beyond"])
@pytest.mark.parametrize("level", ["critical", "warning"])
def test_the_position_and_account_after_the_order_against_warning_and_critical(code, where, level):
    limit_name, figure, lower_is_worse = EXPOSURE[code]
    value = _projected(figure)
    # just_inside: the value is on the safe side by a relative hair; just_beyond: past the limit.
    safe = 1 - 1e-9 if lower_is_worse else 1 + 1e-9
    factor = {"at": 1.0, "just_inside": safe, "just_beyond": 2 - safe}[where]
    limit = D(repr(value * factor))
    # max_leverage also caps the symbol's leverage setting (20x here): watch only the effective figure.
    decision = run(**{f"{limit_name}_{level}": limit}, disabled_checks=[c.POSITION_LEVERAGE_HIGH])
    beyond = where == "just_beyond"
    if level == "critical":
        assert (code in codes(decision)) is beyond and decision.allowed is not beyond
    else:  # a warning level never denies: the order goes through with a warning
        assert decision.allowed
        assert (code in [w[0] for w in decision.warnings]) is beyond


# --------------------------------------------------------------------------- one-off codes


def test_exchange_tick_and_step():
    assert codes(run(o=order(price=D("49900.05"), qty=D("0.0105")))) == [c.PRICE_TICK, c.QTY_STEP]


def test_min_notional_does_not_apply_to_reduce_only():
    exit_ = order(side="SELL", qty=D("0.001"), price=D("50000.0"), reduce_only=True)
    assert c.NOTIONAL_BELOW_MIN not in codes(run(o=exit_))
    assert c.NOTIONAL_BELOW_MIN in codes(run(o=order(qty=D("0.001"), price=D("50000.0"))))


def test_a_market_order_without_protection_when_slippage_is_limited():
    naked = order(type="MARKET", price=None)
    assert codes(run(naked, max_market_slippage=D("0.01"))) == [c.MARKET_UNPROTECTED]
    assert run(naked).allowed  # no slippage limit: no protective price needed


def test_duplicate_within_the_window():
    assert codes(run(counters=c.Counters(duplicate=True), duplicate_window_s=2)) == [c.DUPLICATE_ORDER]
    assert run(counters=c.Counters(duplicate=False), duplicate_window_s=2).allowed
    assert run(counters=c.Counters(duplicate=True)).allowed  # no window configured


def test_symbol_allow_and_deny_lists():
    assert codes(run(symbol_allowlist=["ETHUSDT"])) == [c.SYMBOL_NOT_ALLOWED]
    assert codes(run(symbol_denylist=["BTCUSDT"])) == [c.SYMBOL_DENIED]
    assert run(symbol_allowlist=["BTCUSDT"], symbol_denylist=["ETHUSDT"]).allowed


@pytest.mark.parametrize(("price", "crosses"), [("49900.0", True), ("49899.9", False), ("49900.1", True)])
def test_self_trade_at_below_and_above_the_own_resting_ask(price, crosses):
    a = account(open_orders=[{"symbol": "BTCUSDT", "side": "SELL", "price": "49900.0"}])
    assert (c.SELF_TRADE in codes(run(order(price=D(price)), a))) is crosses


def test_self_trade_for_a_sell_against_the_own_resting_bid_and_other_symbols_do_not_count():
    a = account(
        open_orders=[
            {"symbol": "BTCUSDT", "side": "BUY", "price": "49950.0"},
            {"symbol": "ETHUSDT", "side": "SELL", "price": "1.00"},
        ]
    )
    assert codes(run(order(side="SELL", price=D("49950.0")), a)) == [c.SELF_TRADE]
    assert run(order(side="SELL", price=D("49950.1")), a).allowed
    assert run(order(side="BUY", price=D("49900.0")), a).allowed


@pytest.mark.parametrize(
    ("side", "qty", "held", "code"),
    [
        ("SELL", "0.5", "0", c.REDUCE_ONLY_NO_POSITION),
        ("BUY", "0.1", "0.5", c.REDUCE_ONLY_WRONG_SIDE),
        ("SELL", "0.501", "0.5", c.REDUCE_ONLY_EXCEEDS_POSITION),
        ("SELL", "0.5", "0.5", None),  # at: closes exactly
        ("SELL", "0.499", "0.5", None),
        ("BUY", "0.3", "-0.3", None),
    ],
)
def test_reduce_only_consistency(side, qty, held, code):
    positions = [BookPosition("BTCUSDT", "BOTH", D(held), D("49000"), 20)] if held != "0" else []
    d = run(order(side=side, qty=D(qty), price=D("50000.0"), reduce_only=True), account(positions=positions))
    assert codes(d) == ([code] if code else [])


def test_hedge_mode_position_side_rules():
    legs = [BookPosition("BTCUSDT", "LONG", D("0.3"), D("49000"), 10)]
    hedge = account(hedge=True, positions=legs)
    assert codes(run(order(position_side="BOTH"), hedge)) == [c.POSITION_SIDE_INVALID]
    assert codes(run(order(position_side="LONG", reduce_only=True), hedge)) == [c.REDUCE_ONLY_IN_HEDGE_MODE]
    assert codes(run(order(position_side="LONG"), account())) == [c.POSITION_SIDE_INVALID]
    close = run(order(side="SELL", position_side="LONG", qty=D("0.3"), price=D("50000.0")), hedge)
    assert close.allowed and close.is_exit
    too_much = run(order(side="SELL", position_side="LONG", qty=D("0.301"), price=D("50000.0")), hedge)
    assert codes(too_much) == [c.REDUCE_ONLY_EXCEEDS_POSITION]
    assert codes(run(order(side="BUY", position_side="SHORT", price=D("50000.0")), hedge)) == [
        c.REDUCE_ONLY_NO_POSITION
    ]


def test_trading_states():
    sell_exit = order(side="SELL", qty=D("0.5"), price=D("50000.0"), reduce_only=True)
    sell_reduce = order(side="SELL", qty=D("0.2"), price=D("50000.0"))
    assert codes(run(a=account(trading="HALTED"))) == [c.TRADING_HALTED]
    assert codes(run(sell_reduce, account(trading="HALTED"))) == [c.TRADING_HALTED]  # halted: flagged exits only
    assert run(sell_exit, account(trading="HALTED")).allowed
    assert codes(run(a=account(trading="REDUCING"))) == [c.TRADING_REDUCING]
    assert run(sell_reduce, account(trading="REDUCING")).allowed
    flip = order(side="SELL", qty=D("0.6"), price=D("50000.0"))
    assert codes(run(flip, account(trading="REDUCING"))) == [c.TRADING_REDUCING]


@pytest.mark.parametrize(("age_ms", "stale"), [(STALE_MS, False), (STALE_MS - 1, False), (STALE_MS + 1, True)])
def test_feed_mark_and_account_staleness_at_the_limit(age_ms, stale):
    assert (c.FEED_STALE in codes(run(m=market(feed_age_ms=age_ms)))) is stale
    assert (c.MARK_STALE in codes(run(m=market(mark_age_ms=age_ms)))) is stale
    # The account: its user stream's judgement (marketdata.live.user_feed_is_live, with the grace
    # for a blip) decides, not how lately marks republished its figures (issue 15).
    disconnected = account(connected=False, published_ms=NOW - age_ms)
    assert c.ACCOUNT_STATE_STALE in codes(run(a=disconnected))


def test_an_old_state_is_current_while_the_user_stream_is_connected():
    assert run(a=account(connected=True, published_ms=NOW - 3_600_000)).allowed


def test_missing_inputs_fail_closed():
    assert c.FEED_STALE in codes(run(m=market(feed=False)))
    assert c.MARK_MISSING in codes(run(m=market(mark=None)))
    assert c.BRACKETS_MISSING in codes(run(m=market(brackets=False)))
    assert c.ACCOUNT_STATE_MISSING in codes(run(a=account(live=None)))
    incomplete = state()
    incomplete["figures"]["complete"] = False
    assert c.ACCOUNT_STATE_INCOMPLETE in codes(run(a=account(live=incomplete)))
    assert codes(run(m=market(status="BREAK"))) == [c.SYMBOL_NOT_TRADING]
    assert codes(c.check_order(order(), account(), market(), None, c.Counters())) == [c.PROFILE_MISSING]
    assert codes(run(order(symbol="DOGEUSDT"))) == [c.SYMBOL_UNKNOWN]


def test_a_reduce_only_exit_passes_a_stale_feed_and_every_order_limit():
    exit_ = order(side="SELL", type="MARKET", price=None, qty=D("0.5"), reduce_only=True)
    strict = dict(
        max_order_qty=D("0.001"),
        max_market_slippage=D("0.001"),
        symbol_denylist=["BTCUSDT"],
        order_rate_per_second=0,
        max_daily_orders=0,
        max_position_notional_critical=D("1"),
    )
    d = run(
        exit_,
        account(trading="HALTED"),
        market(feed_age_ms=60_000, mark_age_ms=60_000),
        counters=c.Counters(rate_1s=9, daily_orders=9),
        **strict,
    )
    assert d.allowed and d.is_exit and d.reduces
    # the same order without the flag is refused on every count
    assert not run(
        order(side="SELL", type="MARKET", price=None, qty=D("0.5")),
        m=market(feed_age_ms=60_000),
        counters=c.Counters(rate_1s=9, daily_orders=9),
        **strict,
    ).allowed


def test_a_reducing_order_skips_only_the_exposure_checks():
    reduce = order(side="SELL", qty=D("0.2"), price=D("50000.0"))
    d = run(reduce, max_position_notional_critical=D("1"), margin_ratio_critical=D("0.000001"))
    assert d.allowed and d.reduces and not d.is_exit
    assert codes(run(reduce, max_order_qty=D("0.1"))) == [c.ORDER_QTY_HIGH]


# --------------------------------------------------------------------------- switching checks off


def test_a_check_switched_off_by_name_or_by_code():
    bad = order(price=D("49900.05"), qty=D("0.0105"))
    assert run(bad, disabled_checks=["filters"]).allowed
    assert codes(run(bad, disabled_checks=["PRICE_TICK"])) == [c.QTY_STEP]
    assert run(max_order_qty=D("0.001"), disabled_checks=["max_order_qty"]).allowed
    assert run(m=market(feed=False, mark=None), a=account(live=None), disabled_checks=["freshness"]).allowed


def test_every_code_has_a_message_and_belongs_to_one_check():
    assert set(c.MESSAGES) == set(c.ALL_CODES)
    assert len(c.ALL_CODES) == len(set(c.ALL_CODES))


def test_the_trading_state_cannot_be_switched_off():
    assert codes(run(a=account(trading="HALTED"), disabled_checks=["trading_state", "TRADING_HALTED"])) == [
        c.TRADING_HALTED
    ]


def test_the_order_rejects_more_than_eight_decimals_and_non_positive_numbers():
    with pytest.raises(ValueError):
        order(qty=D("0.000000001"))
    with pytest.raises(ValueError):
        order(price=D("-1"))
    with pytest.raises(ValueError):
        order(qty=D("NaN"))
