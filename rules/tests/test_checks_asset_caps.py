"""ASSET_ABOVE_CAP, the per-asset caps before a trade (issue 17 item 3): the order gate holds an
order's margin asset (USDT, USDC) to the profile's ``asset_caps`` with the figure the evaluator's
``asset_cap`` rule measures live: the asset's wallet balance (cross + isolated) as the stream
publishes it, plus what the order's fill would realize into it. Orders that reduce are never held.

Run twice, like test_checks.py: on ``import rules.checks`` (the Cython extension when built) and on
the pure-Python source (test_checks_pure.py loads this module again with the source)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from marketdata.sink import account_state
from positions.book import BookPosition, RiskBook
from rules import checks as c
from rules.levels import measure
from rules.tests.test_checks import NOW, STALE_MS, market, order, symbols
from rules.tests.test_gate_fixtures import FILTERS, TABLES

HELD = BookPosition("BTCUSDT", "BOTH", D("0.5"), D("49000"), 20)  # 0.5 BTC long at 49,000, 20x (USDT)
HELD_USDC = BookPosition("BTCUSDC", "BOTH", D("0.1"), D("49000"), 20, margin_asset="USDC")


def _usdc_symbols() -> dict[str, c.SymbolView]:
    out = symbols()
    tick, step, lo, hi, market_max, notional = FILTERS["BTCUSDT"]
    out["BTCUSDC"] = c.symbol_view(
        name="BTCUSDC",
        status="TRADING",
        tick_size=D(tick),
        step_size=D(step),
        min_qty=D(lo),
        max_qty=D(hi),
        market_max_qty=D(market_max),
        min_notional=D(notional),
        brackets=TABLES["BTCUSDT"],
        margin_asset="USDC",
    )
    return out


def _book(*, usdt="10000", usdc=None, positions=(HELD,)) -> RiskBook:
    book = RiskBook()
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    book.set_brackets("BTCUSDC", TABLES["BTCUSDT"])
    book.apply_marks({"BTCUSDT": D("50000"), "ETHUSDT": D("2500"), "BTCUSDC": D("50000")}, ts=NOW)
    book.set_wallet(1, D(usdt))
    if usdc is not None:
        book.set_wallet(1, D(usdc), asset="USDC")
    for p in positions:
        book.upsert_position(1, p)
    return book


def _state(book: RiskBook) -> dict:
    # What the stream process publishes to live:acct:<id>: the book's plain figures (account_plain).
    body = account_state(book.account_plain(1), book.positions_plain(1), [])
    body["published_ms"] = NOW
    return body


def _account(state: dict) -> c.AccountView:
    return c.account_view(account_id=1, trading_state="ACTIVE", hedge=False, state=state, user_feed_connected=True)


def _market() -> c.MarketState:
    m = market()
    marks = {"BTCUSDT": ["50000", NOW], "ETHUSDT": ["2500", NOW], "BTCUSDC": ["50000", NOW]}
    return c.market_state(
        symbols=_usdc_symbols(),
        marks=c.compile_marks(marks),
        feed_last_ms=m.feed_last_ms,
        now_ms=NOW,
        stale_ms=STALE_MS,
    )


def _run(o: c.Order, book: RiskBook, **values) -> c.Decision:
    return c.check_order(o, _account(_state(book)), _market(), c.compile_profile(values), c.Counters())


def _row(decision: c.Decision) -> dict:
    rows = [r for r in c.failure_rows(decision.failures) if r["code"] == c.ASSET_ABOVE_CAP]
    assert len(rows) == 1, decision.failures
    return rows[0]


def test_the_live_state_carries_each_assets_wallet_balance():
    book = _book(usdc="4000", positions=(HELD, HELD_USDC))
    figures = _state(book)["figures"]
    assert figures["asset_wallets"] == {"USDC": "4000.00000000", "USDT": "10000.00000000"}
    # the same figure the live rule measures (rules.levels asset_cap), to the last digit
    live = {m.subject: m.value for m in measure(risk=book.account(1), positions=[], day=None, rules={"asset_cap"})}
    assert {a: D(v) for a, v in figures["asset_wallets"].items()} == live


@pytest.mark.parametrize(("cap", "allowed"), [("10000", True), ("10000.00000001", True), ("9999.99999999", False)])
def test_an_order_passes_at_and_under_its_margin_assets_cap_and_is_denied_over_it(cap, allowed):
    d = _run(order(), _book(), asset_caps={"USDT": cap})
    assert d.allowed is allowed, d.failures
    assert (c.ASSET_ABOVE_CAP in d.codes) is not allowed


def test_a_denial_carries_the_code_the_asset_and_the_numbers():
    d = _run(order(), _book(usdt="10250.5"), asset_caps={"USDT": "10000"})
    assert d.codes == [c.ASSET_ABOVE_CAP]
    row = _row(d)
    assert row == {
        "code": "ASSET_ABOVE_CAP",
        "message": c.MESSAGES[c.ASSET_ABOVE_CAP],
        "value": "10250.5",
        "limit": "10000",
        "asset": "USDT",
    }


def test_an_order_that_reduces_is_never_held_by_the_cap():
    book, caps = _book(usdt="20000"), {"USDT": "10000"}
    exit_ = order(side="SELL", qty=D("0.5"), price=D("50000.0"), reduce_only=True)
    assert _run(exit_, book, asset_caps=caps).allowed
    # one-way, opposite and not larger than the position: reduces without reduceOnly
    assert _run(order(side="SELL", qty=D("0.2"), price=D("50000.0")), book, asset_caps=caps).allowed
    market_exit = order(type="MARKET", side="SELL", qty=D("0.5"), price=None, reduce_only=True)
    assert _run(market_exit, book, asset_caps=caps).allowed
    # ... while an order adding to it is refused
    assert c.ASSET_ABOVE_CAP in _run(order(), book, asset_caps=caps).codes


def test_a_usdc_margined_symbol_is_held_to_the_usdc_cap():
    book = _book(usdt="10000", usdc="4000", positions=(HELD, HELD_USDC))
    caps = {"USDT": "5000", "USDC": "5000"}  # USDT over its cap, USDC under
    usdc_order = order(symbol="BTCUSDC")
    assert _run(usdc_order, book, asset_caps=caps).allowed
    assert _row(_run(order(), book, asset_caps=caps))["asset"] == "USDT"
    row = _row(_run(usdc_order, book, asset_caps={"USDC": "3999"}))
    assert (row["asset"], row["value"], row["limit"]) == ("USDC", "4000", "3999")
    # a cap on USDC alone does not touch a USDT-margined order
    assert _run(order(), book, asset_caps={"USDC": "1"}).allowed


def test_an_account_holding_none_of_the_asset_is_at_zero():
    book = _book(usdt="10000")  # no USDC wallet, no USDC position
    assert _run(order(symbol="BTCUSDC"), book, asset_caps={"USDC": "0"}).allowed


def test_what_a_flip_realizes_counts_in_the_wallet_after_the_order():
    # 0.5 long at 49,000; selling 1.0 at the 50,000 mark realizes 500 into the USDT wallet.
    flip = order(side="SELL", qty=D("1.0"), price=D("50000.0"))
    assert _run(flip, _book(), asset_caps={"USDT": "10500"}).allowed
    row = _row(_run(flip, _book(), asset_caps={"USDT": "10499.99"}))
    assert (row["value"], row["limit"]) == ("10500", "10499.99")


def test_a_state_without_the_wallets_fails_closed():
    state = _state(_book())
    del state["figures"]["asset_wallets"]  # published by a stream process older than the check
    d = c.check_order(
        order(), _account(state), _market(), c.compile_profile({"asset_caps": {"USDT": "1e9"}}), c.Counters()
    )
    row = _row(d)
    assert not d.allowed and row["value"] is None and row["asset"] == "USDT"
    # ... but an exit still goes
    exit_ = order(side="SELL", qty=D("0.5"), price=D("50000.0"), reduce_only=True)
    assert c.check_order(
        exit_, _account(state), _market(), c.compile_profile({"asset_caps": {"USDT": "1"}}), c.Counters()
    ).allowed


def test_the_check_can_be_switched_off_by_its_limits_name_and_follows_symbol_overrides():
    book = _book(usdt="20000")
    assert _run(order(), book, asset_caps={"USDT": "10000"}, disabled_checks=["asset_caps"]).allowed
    assert _run(order(), book, asset_caps={"USDT": "10000"}, disabled_checks=["ASSET_ABOVE_CAP"]).allowed
    # a symbol override compiles its own profile: the caps come along
    values = {"asset_caps": {"USDT": "10000"}, "symbol_limits": {"BTCUSDT": {"max_order_qty": "5"}}}
    assert c.ASSET_ABOVE_CAP in _run(order(), book, **values).codes


def test_no_caps_no_check():
    assert _run(order(), _book(usdt="1e9"), asset_caps={}).allowed
    assert _run(order(), _book(usdt="1e9")).allowed


def test_a_multi_assets_accounts_usdt_cap_holds_its_collateral_value():
    """Multi-assets mode: the stream puts the haircut collateral value of every asset into the USDT
    pool (marketdata/collateral.py) and each asset's own units in an uncounted pool. The USDT cap then
    bounds that value, live and at the gate alike; a BTC cap is live only (nothing margins in BTC)."""
    from positions.collateral import collateral, parse_asset_index
    from positions.tests.test_collateral import BALANCES, INDEX_ROWS

    value = collateral(BALANCES, parse_asset_index(INDEX_ROWS), multi_assets=True)
    assert value.total == D("34849.5101")  # by hand in positions/tests/test_collateral.py
    book = _book(usdt="0")
    for asset, balance in BALANCES.items():
        if asset != "USDT":
            book.set_wallet(1, balance, asset=asset, counted=False)
    book.set_wallet(1, value.total, asset="USDT", counted=True)
    wallets = _state(book)["figures"]["asset_wallets"]
    assert D(wallets["USDT"]) == D("34849.5101") and D(wallets["BTC"]) == D("0.5")
    assert _run(order(), book, asset_caps={"USDT": "34849.5101", "BTC": "0.1"}).allowed
    row = _row(_run(order(), book, asset_caps={"USDT": "34849.51"}))
    assert (row["asset"], row["value"], row["limit"]) == ("USDT", "34849.5101", "34849.51")
