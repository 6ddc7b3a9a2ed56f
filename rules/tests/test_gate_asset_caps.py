"""Per-asset caps before a trade, through the order API (issue 17 item 3): the gate reads each
asset's wallet balance from the account's live state (the book's ``asset_wallets``, published by
the stream process to ``live:acct:<id>``), the symbol's margin asset from the catalogue and the caps
from the profile, and denies an order adding exposure past the cap of its margin asset with
ASSET_ABOVE_CAP, the asset and the numbers, in the request's language."""

from __future__ import annotations

from decimal import Decimal as D

from django.utils import translation

from marketdata import live
from marketdata.exchange import SymbolFilters
from marketdata.services import brackets_store, symbols_refresh
from marketdata.sink import account_state
from positions.book import BookPosition, RiskBook
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import default_profile, long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module

URL = "/api/v1/orders/check"


def _seed_btcusdc() -> None:
    tick, step, lo, hi, market, notional = fx.FILTERS["BTCUSDT"]
    symbols_refresh(
        filters=[
            SymbolFilters(
                symbol="BTCUSDC",
                status="TRADING",
                base_asset="BTC",
                quote_asset="USDC",
                margin_asset="USDC",
                tick_size=D(tick),
                step_size=D(step),
                min_qty=D(lo),
                max_qty=D(hi),
                market_max_qty=D(market),
                min_notional=D(notional),
                price_precision=2,
                quantity_precision=3,
            )
        ]
    )
    brackets_store(tables={"BTCUSDC": fx.TABLES["BTCUSDT"]})


def _publish_two_wallets(account_id: int, *, usdt: str, usdc: str) -> dict:
    """As fx.publish (feeds too), with a USDC wallet and a BTCUSDC position beside the USDT ones."""
    publish(account_id, wallet=usdt, positions=[long_btc()])
    at = live.now_ms()
    marks = {**fx.MARKS, "BTCUSDC": "50000"}
    book = RiskBook()
    for name in fx.FILTERS:
        book.set_brackets(name, fx.TABLES[name])
    book.set_brackets("BTCUSDC", fx.TABLES["BTCUSDT"])
    book.apply_marks({s: D(p) for s, p in marks.items()}, ts=at)
    book.set_wallet(account_id, D(usdt))
    book.set_wallet(account_id, D(usdc), asset="USDC")
    book.upsert_position(account_id, long_btc())
    book.upsert_position(account_id, BookPosition("BTCUSDC", "BOTH", D("0.1"), D("49000"), 20, margin_asset="USDC"))
    state = account_state(book.account_plain(account_id), book.positions_plain(account_id), [])
    state["published_ms"] = at
    live.accounts_set({account_id: state})
    live.marks_merge({s: [p, at] for s, p in marks.items()})
    return state


def _failures(response) -> dict:
    assert response.status_code == 200, response.json()
    return {f["code"]: f for f in response.json()["failures"]}


def test_an_order_under_the_cap_passes_and_one_over_it_is_denied_with_the_numbers(
    api_for, trader_a, account_a, gate_env
):
    publish(account_a.id, wallet="10000", positions=[long_btc()])
    api = api_for(trader_a)
    default_profile(asset_caps={"USDT": "10000"})
    answer = api.post(URL, order_body(account_a.id), format="json").json()
    assert answer["allowed"] is True, answer["failures"]
    default_profile(asset_caps={"USDT": "9500.5"})
    failure = _failures(api.post(URL, order_body(account_a.id), format="json"))["ASSET_ABOVE_CAP"]
    assert (failure["asset"], failure["value"], failure["limit"]) == ("USDT", "10000", "9500.5")
    assert "USDT" in failure["message"] and "9500.5" in failure["message"]


def test_a_reduce_only_order_over_the_cap_goes_through(api_for, trader_a, account_a, gate_env):
    publish(account_a.id, wallet="10000", positions=[long_btc()])
    default_profile(asset_caps={"USDT": "1"})
    body = order_body(account_a.id, side="SELL", quantity="0.5", price="50000.0", reduce_only=True)
    response = api_for(trader_a).post(URL, body, format="json")
    assert response.json()["allowed"] is True, response.json()


def test_a_usdc_margined_symbol_uses_the_usdc_cap(api_for, trader_a, account_a, gate_env):
    _seed_btcusdc()
    default_profile(asset_caps={"USDT": "20000", "USDC": "3000"})  # catalogue reloaded with BTCUSDC
    _publish_two_wallets(account_a.id, usdt="10000", usdc="4000")
    api = api_for(trader_a)
    failure = _failures(api.post(URL, order_body(account_a.id, symbol="BTCUSDC"), format="json"))["ASSET_ABOVE_CAP"]
    assert (failure["asset"], failure["value"], failure["limit"]) == ("USDC", "4000", "3000")
    # the USDT-margined symbol is held to the USDT cap, which it is under
    answer = api.post(URL, order_body(account_a.id), format="json").json()
    assert answer["allowed"] is True, answer["failures"]


def test_the_message_is_in_the_requests_language(api_for, trader_a, account_a, gate_env):
    publish(account_a.id, wallet="10000", positions=[long_btc()])
    default_profile(asset_caps={"USDT": "9000"})
    response = api_for(trader_a).post(URL, order_body(account_a.id), format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    message = _failures(response)["ASSET_ABOVE_CAP"]["message"]
    with translation.override("zh-hans"):
        expected = translation.gettext(
            "The %(asset)s wallet balance after the order (%(value)s) would be above the profile's cap for "
            "%(asset)s (%(limit)s): orders adding exposure on it are refused until it is back under the cap."
        ) % {"asset": "USDT", "value": "10000", "limit": "9000"}
    assert message == expected


def test_the_fast_lane_gives_the_same_denial_as_the_drf_view(trader_a, account_a, gate_env):
    from rules.tests.test_orders_api_check_fast import same_answer, token_for

    publish(account_a.id, wallet="10000", positions=[long_btc()])
    default_profile(asset_caps={"USDT": "9000"})
    status, body = same_answer(order_body(account_a.id), token_for(trader_a))
    assert status == 200 and body["allowed"] is False
    (failure,) = body["failures"]
    assert (failure["code"], failure["asset"], failure["value"], failure["limit"]) == (
        "ASSET_ABOVE_CAP",
        "USDT",
        "10000",
        "9000",
    )


def test_the_fast_lane_answers_in_the_requests_language_and_ignores_a_leaked_one(trader_a, account_a, gate_env):
    """The HTTP lane has no LocaleMiddleware: it picks the language from Accept-Language itself, and
    a language some earlier work left active on the thread never leaks into an answer."""
    import json

    from asgiref.sync import async_to_sync

    from rules.api_orders import order_check_fast
    from rules.tests.test_orders_api_check_fast import token_for

    publish(account_a.id, wallet="10000", positions=[long_btc()])
    default_profile(asset_caps={"USDT": "9000"})
    auth = f"Bearer {token_for(trader_a)}".encode()
    body = json.dumps(order_body(account_a.id)).encode()

    def message(accept_language):
        status, payload, _ = async_to_sync(order_check_fast)(auth, body, accept_language)
        assert status == 200
        return {f["code"]: f for f in json.loads(payload)["failures"]}["ASSET_ABOVE_CAP"]["message"]

    with translation.override("zh-hans"):
        chinese = translation.gettext(
            "The %(asset)s wallet balance after the order (%(value)s) would be above the profile's cap for "
            "%(asset)s (%(limit)s): orders adding exposure on it are refused until it is back under the cap."
        ) % {"asset": "USDT", "value": "10000", "limit": "9000"}
        assert message(None).startswith("The USDT wallet balance")  # the leaked zh-hans is ignored
    assert message(b"zh-Hans,zh;q=0.9,en;q=0.5") == chinese
    assert message(b"fr-FR").startswith("The USDT wallet balance")  # unsupported: the default
