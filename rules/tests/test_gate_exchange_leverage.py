"""POSITION_LEVERAGE_HIGH follows the leverage the live state carries for the position: a
leverage raised on the exchange (ACCOUNT_CONFIG_UPDATE, which the stream engine writes into
the book's positions of the symbol) changes the gate's decision at the next published state."""

from __future__ import annotations

from decimal import Decimal as D

from marketdata import live
from marketdata.sink import DjangoSink, account_state
from marketdata.streams import AccountSpec, StreamEngine
from positions.book import BookPosition
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

URL = "/api/v1/orders/check"


def leverage_codes(body: dict) -> tuple[list[str], list[str]]:
    pick = [f["code"] for f in body["failures"]], [w["code"] for w in body["warnings"]]
    return [c for c in pick[0] if c == "POSITION_LEVERAGE_HIGH"], [c for c in pick[1] if c == "POSITION_LEVERAGE_HIGH"]


def test_a_leverage_raised_in_the_live_state_changes_the_gates_decision(api_for, trader_a, account_a, gate_env):
    default_profile(max_leverage_warning=30, max_leverage_critical=40)
    api = api_for(trader_a)
    publish(account_a.id, positions=[long_btc(leverage=20)])
    body = api.post(URL, order_body(account_a.id), format="json").json()
    assert body["allowed"] is True and leverage_codes(body) == ([], [])

    publish(account_a.id, positions=[long_btc(leverage=35)])  # raised to 35x on the exchange
    body = api.post(URL, order_body(account_a.id), format="json").json()
    assert body["allowed"] is True and leverage_codes(body) == ([], ["POSITION_LEVERAGE_HIGH"])

    publish(account_a.id, positions=[long_btc(leverage=50)])  # and to 50x
    body = api.post(URL, order_body(account_a.id), format="json").json()
    assert body["allowed"] is False and leverage_codes(body) == (["POSITION_LEVERAGE_HIGH"], [])
    [failure] = [f for f in body["failures"] if f["code"] == "POSITION_LEVERAGE_HIGH"]
    assert D(failure["value"]) == 50 and D(failure["limit"]) == 40


def test_an_account_config_update_reaches_the_gate_through_the_engines_book(api_for, trader_a, account_a, gate_env):
    """The stream engine's handling of the event (marketdata) into the state the gate reads."""
    default_profile(max_leverage_critical=40)
    engine = StreamEngine(
        accounts=[AccountSpec(account_a.id, account_a.name, "k", "s")],
        rest_url="http://127.0.0.1:9",  # never started
        ws_url="ws://127.0.0.1:9",
        sink=DjangoSink(),
    )
    state = publish(account_a.id, positions=[long_btc(leverage=20)])
    book = engine.book
    for name in fx.FILTERS:
        book.set_brackets(name, fx.TABLES[name])
    book.apply_marks({s: D(p) for s, p in fx.MARKS.items()}, ts=state["published_ms"])
    book.set_wallet(account_a.id, D("10000"))
    book.upsert_position(
        account_a.id, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.5"), entry_price=D(49000), leverage=20)
    )
    api = api_for(trader_a)
    assert api.post(URL, order_body(account_a.id), format="json").json()["allowed"] is True

    ms = state["published_ms"] + 1
    engine._apply_config(
        account_a.id, {"e": "ACCOUNT_CONFIG_UPDATE", "E": ms, "T": ms, "ac": {"s": "BTCUSDT", "l": 50}}
    )
    assert [p.leverage for p in book.positions(account_a.id)] == [50]
    republished = account_state(book.account(account_a.id), book.positions(account_a.id), [])
    republished["published_ms"] = ms
    live.accounts_set({account_a.id: republished})
    body = api.post(URL, order_body(account_a.id), format="json").json()
    assert body["allowed"] is False and leverage_codes(body)[0] == ["POSITION_LEVERAGE_HIGH"]
