"""Per-symbol limits (issue 17 item 4): validation, the gate, the evaluator, YAML, the service and API."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from positions.book import BookPosition, RiskBook
from rules import checks as c
from rules.levels import WARNING, Latch, Limits, evaluate
from rules.limits import validate_limits
from rules.tests.test_checks import codes, order, run
from rules.tests.test_gate_fixtures import TABLES
from rules.yamlio import RulesFileError, dump_rules, parse_rules

# --------------------------------------------------------------------------- validation


def test_an_override_is_checked_like_the_profile_and_against_it():
    ok = {"max_position_notional_warning": D(100), "symbol_limits": {"BTCUSDT": {"max_order_qty": D(5)}}}
    assert validate_limits(ok, exchange_max_leverage=125) == {}
    # the symbol's critical below the profile's warning it falls back to
    bad = {**ok, "symbol_limits": {"BTCUSDT": {"max_position_notional_critical": D(50)}}}
    assert "warning level" in validate_limits(bad, exchange_max_leverage=125)["symbol_limits"]
    for wrong, words in (
        ({"BTCUSDT": {"max_leverage_critical": 200}}, "maximum leverage"),
        ({"BTCUSDT": {"max_price_deviation": D(2)}}, "between 0 and 1"),
        ({"BTCUSDT": {"max_open_orders": 3}}, "unknown limit"),
        ({"BTC/USDT": {"max_order_qty": 1}}, "not a symbol"),
        (["BTCUSDT"], "must map"),
    ):
        assert words in validate_limits({"symbol_limits": wrong}, exchange_max_leverage=125)["symbol_limits"]


# --------------------------------------------------------------------------- the gate


def test_the_gate_holds_an_order_in_the_symbol_to_its_own_caps_and_others_to_the_profile():
    values = {
        "max_order_qty": D("1"),
        "max_price_deviation": D("0.05"),
        "symbol_limits": {"BTCUSDT": {"max_order_qty": D("0.005"), "max_price_deviation": D("0.001")}},
    }
    p = c.compile_profile(values)
    btc = run(p=p)  # 0.010 BTC at 49,900 vs mark 50,000: 0.2 % away
    assert c.ORDER_QTY_HIGH in codes(btc) and c.PRICE_COLLAR in codes(btc)
    assert dict((f[0], f[2]) for f in btc.failures)[c.ORDER_QTY_HIGH] == D("0.005")
    eth = run(order(symbol="ETHUSDT", qty=D("0.010"), price=D("2500.00")), p=p)
    assert eth.allowed
    # without the override the same BTC order passes
    assert run(max_order_qty=D("1"), max_price_deviation=D("0.05")).allowed


def test_a_symbol_notional_and_leverage_override_deny_and_warn_but_the_account_leverage_stays_the_profiles():
    # HELD: 0.5 BTC long at 20x; the order adds 0.010 BTC: position notional ~25,500 after it.
    p = c.compile_profile(
        {
            "max_leverage_critical": 50,
            "symbol_limits": {"BTCUSDT": {"max_position_notional_critical": D(20000), "max_leverage_critical": 10}},
        }
    )
    d = run(p=p)
    assert not d.allowed and {c.POSITION_NOTIONAL_HIGH, c.POSITION_LEVERAGE_HIGH} <= set(codes(d))
    assert c.LEVERAGE_HIGH not in codes(d)  # the account's effective leverage (~2.5x) vs the profile's 50x
    warn = c.compile_profile({"symbol_limits": {"BTCUSDT": {"max_position_notional_warning": D(20000)}}})
    d = run(p=warn)
    assert d.allowed and [w[0] for w in d.warnings] == [c.POSITION_NOTIONAL_HIGH]


def test_an_order_order_notional_override_and_an_empty_override_change_nothing_else():
    p = c.compile_profile({"max_order_notional": D(1000), "symbol_limits": {"BTCUSDT": {}}})
    assert p.by_symbol["BTCUSDT"].caps == p.caps
    tight = c.compile_profile(
        {"max_order_notional": D(1000), "symbol_limits": {"BTCUSDT": {"max_order_notional": D(100)}}}
    )
    assert c.ORDER_NOTIONAL_HIGH in codes(run(p=tight))
    assert run(p=p).allowed


# --------------------------------------------------------------------------- the evaluator


def _book() -> RiskBook:
    book = RiskBook()
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    book.apply_marks({"BTCUSDT": D(50000), "ETHUSDT": D(2500)}, ts=1)
    book.set_wallet(1, D(100000))
    book.upsert_position(1, BookPosition("BTCUSDT", "BOTH", D("1"), D(50000), 20))  # 50,000 notional
    book.upsert_position(1, BookPosition("ETHUSDT", "BOTH", D("20"), D(2500), 20))  # 50,000 notional
    return book


def test_the_evaluator_measures_each_position_against_its_symbols_override():
    book = _book()
    limits = Limits.from_values(
        {
            "max_position_notional_warning": D(60000),
            "breach_after_n": 1,
            "symbol_limits": {"BTCUSDT": {"max_position_notional_warning": D(40000), "max_leverage_warning": 10}},
        }
    )
    changes = evaluate(latch=Latch(), limits=limits, risk=book.account(1), positions=book.positions(1), day=None)
    got = {(ch.rule, ch.subject, ch.level) for ch in changes}
    assert got == {("position_notional", "BTCUSDT:BOTH", WARNING), ("leverage", "BTCUSDT:BOTH", WARNING)}
    # a rule the profile sets only per symbol is measured for that symbol alone
    only = Limits.from_values({"breach_after_n": 1, "symbol_limits": {"ETHUSDT": {"max_leverage_critical": 5}}})
    changes = evaluate(latch=Latch(), limits=only, risk=book.account(1), positions=book.positions(1), day=None)
    assert [(ch.rule, ch.subject) for ch in changes] == [("leverage", "ETHUSDT:BOTH")]


# --------------------------------------------------------------------------- YAML


def test_yaml_round_trip_and_errors_with_lines():
    text = """risk_control:
  order: {max_single_order: 100000}
  symbols:
    btcusdt: {max_order_qty: 5, max_leverage_critical: 10, max_price_deviation: 0.01}
"""
    values = parse_rules(text, exchange_max_leverage=125)
    assert values["symbol_limits"] == {
        "BTCUSDT": {"max_order_qty": 5, "max_leverage_critical": 10, "max_price_deviation": D("0.01")}
    }
    again = parse_rules(dump_rules(values), exchange_max_leverage=125)
    assert again == values
    with pytest.raises(RulesFileError) as exc:
        parse_rules("risk_control:\n  symbols:\n    BTCUSDT: {max_open_orders: 5}\n", exchange_max_leverage=125)
    assert "risk_control.symbols.BTCUSDT.max_open_orders (line 3): unknown key" in str(exc.value)


# --------------------------------------------------------------------------- service, API, gate catalogue


@pytest.mark.django_db
def test_the_service_api_and_gate_catalogue_share_the_overrides(api_for, risk_manager):
    from rules import gate, services
    from rules.models import RiskProfile, SymbolLimit

    profile = services.profile_create(
        values={"name": "desk", "max_order_qty": D(10), "symbol_limits": {"btcusdt": {"max_order_qty": "2"}}},
        by=None,
    )
    assert profile.symbol_limit_values() == {"BTCUSDT": {"max_order_qty": D(2)}}
    services.profile_update(
        profile=profile, values={"symbol_limits": {"ETHUSDT": {"max_leverage_critical": 5}}}, by=None
    )
    assert list(SymbolLimit.objects.values_list("symbol", "max_leverage_critical")) == [("ETHUSDT", 5)]
    with pytest.raises(Exception, match="symbol_limits"):
        services.profile_update(
            profile=profile, values={"symbol_limits": {"ETHUSDT": {"max_order_qty": "-1"}}}, by=None
        )
    cat = gate.catalog_load()
    compiled = cat.profiles[profile.pk]
    assert set(compiled.by_symbol) == {"ETHUSDT"}
    assert compiled.by_symbol["ETHUSDT"].pos_leverage[1] == 5.0

    client = api_for(risk_manager)
    url = f"/api/v1/profiles/{profile.pk}/"
    body = client.get(url).json()
    assert body["symbol_limits"] == {"ETHUSDT": {"max_leverage_critical": "5"}}
    answer = client.patch(
        url,
        {"symbol_limits": {"SOLUSDT": {"max_order_notional": "5000"}}, "reason": "tighter SOL"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["symbol_limits"] == {"SOLUSDT": {"max_order_notional": "5000.000000000000"}}
    assert RiskProfile.objects.get(pk=profile.pk).symbol_limit_values() == {"SOLUSDT": {"max_order_notional": D(5000)}}
    bad = client.patch(url, {"symbol_limits": {"SOLUSDT": {"nope": 1}}}, format="json")
    assert bad.status_code == 400 and "symbol_limits" in bad.json()
