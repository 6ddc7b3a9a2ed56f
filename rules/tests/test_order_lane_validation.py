"""The check's fast pieces agree with the slow ones they stand in for (issue 19):

* ``order_input_fast`` returns what ``OrderInputSerializer`` validates, or None (the serializer
  then decides and words the error);
* ``StrictJSONParser`` with orjson reads what the json module reads, and refuses what it refuses
  with the same message;
* ``render_json`` writes the bytes DRF's ``JSONRenderer`` writes for ``gate.plain(body)``.
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer

from rules import api_orders, gate
from rules.serializers_orders import OrderInputSerializer, order_input_fast
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, order_body, publish

gate_env = fx.gate_env

DECIMALS = st.one_of(
    st.sampled_from(
        ["0.010", "49900.0", "0", "1", "0.00000001", "0.000000001", "1e3", " 5", "1_0", "-1", "10000000000"]
    ),
    st.decimals(min_value=0, max_value=D("1e13"), allow_nan=False, places=9).map(str),
    st.integers(min_value=-5, max_value=10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
FIELDS = {
    "account": st.one_of(st.integers(min_value=-2, max_value=2**63), st.just("7"), st.booleans(), st.floats()),
    "symbol": st.sampled_from(["BTCUSDT", "ETHUSDT", "NOPEUSDT", "btcusdt", " BTCUSDT", "B", 123, None]),
    "side": st.sampled_from(["BUY", "SELL", "HOLD", "buy", 1, None]),
    "type": st.sampled_from(["LIMIT", "MARKET", "STOP", None]),
    "quantity": DECIMALS,
    "price": DECIMALS,
    "time_in_force": st.sampled_from(["GTC", "IOC", "FOK", "GTX", "GTD", "", "DAY", None]),
    "reduce_only": st.sampled_from([True, False, "true", "yes", 1, None]),
    "position_side": st.sampled_from(["BOTH", "LONG", "SHORT", "both", None]),
    "client_order_id": st.sampled_from(["bot-7-000123", "x" * 37, "a b", "", ":/._-Az09", 5]),
    "reduceOnly": st.just(True),
}


def _serializer(data):
    serializer = OrderInputSerializer(data=data)
    return dict(serializer.validated_data) if serializer.is_valid() else None


VALID = {"account": 7, "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "price": "49900.0"}
MISSING = object()


def _mostly_valid(name):
    # Each field usually clean, so that the fast path is taken often and compared field by field.
    clean = st.just(VALID.get(name, MISSING))
    return st.one_of(clean, clean, clean, FIELDS[name], st.just(MISSING))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({name: _mostly_valid(name) for name in FIELDS}))
def test_the_fast_validation_accepts_only_what_the_serializer_accepts_and_returns_the_same(gate_env, drawn):
    data = {k: v for k, v in drawn.items() if v is not MISSING}
    fast = order_input_fast(data)
    if fast is not None:
        slow = _serializer(data)
        assert fast == slow
        assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in slow.items()}
        assert {k: str(v) for k, v in fast.items()} == {k: str(v) for k, v in slow.items()}  # same exponent


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"type": "MARKET", "price": None},
        {"type": "MARKET"},
        {"time_in_force": "IOC", "reduce_only": True, "position_side": "LONG", "client_order_id": "bot-1"},
        {"quantity": "123456789012.12345678", "price": "0.00000001"},
        {"quantity": "0.5", "price": "9999999999.99999999"},
    ],
)
def test_clean_orders_take_the_fast_path_with_the_serializers_values(gate_env, account_a, change):
    data = {k: v for k, v in {**order_body(account_a.id), **change}.items() if v is not None or k == "price"}
    if change.get("type") == "MARKET" and "price" not in change:
        data.pop("price")
    fast = order_input_fast(data)
    expected = _serializer(data)
    if expected is None:  # over MAX_NUMBER: the serializer refuses, the fast path declines
        assert fast is None
    else:
        assert fast == expected


# --------------------------------------------------------------------------- JSON in


@pytest.mark.parametrize(
    "raw",
    [
        b'{"account": 1, "quantity": "0.010"}',
        b'{"a": 123456789012345678901234567890}',
        b'{"a": 1e400}',
        b'{"a": 1, "a": 2}',
        b'{"a": -0, "b": 1.5, "c": [true, false, null]}',
        b'"\\ud800"',
        '{"a": "\u2028\u00e9\u4e2d"}'.encode(),
        b"\xef\xbb\xbf{}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"{",
        b"",
        b"[" * 40 + b"]" * 40,
        b"[" * 3000 + b"]" * 3000,
        b'{"a": "\xff"}',
    ],
)
def test_the_parser_reads_what_the_json_module_reads_and_refuses_alike(raw, monkeypatch):
    from riskdesk import drf

    def outcome():
        try:
            return "ok", api_orders._PARSER.parse_bytes(raw)
        except ParseError as exc:
            return "400", str(exc.detail)

    got = outcome()
    monkeypatch.setattr(drf, "_fast_loads", lambda raw: drf._SLOW)  # the json module alone, as before
    expected = outcome()
    assert got == expected
    if got[0] == "ok":
        assert json.dumps(got[1]) == json.dumps(expected[1])  # ints stay ints, floats floats


# --------------------------------------------------------------------------- JSON out


def test_the_answer_renders_byte_for_byte_as_drfs_renderer(gate_env, account_a, trader_a):
    from rules.tests.test_gate_fixtures import default_profile

    default_profile(max_order_qty=D("0.005"), max_position_notional_warning=D("100"))
    publish(account_a.id, positions=[long_btc()])
    actor = gate.Actor(user=trader_a)
    bodies = [
        gate.order_check(account=account_a, order=api_orders._order(_serializer(o)), actor=actor).body()
        for o in (
            order_body(account_a.id),
            order_body(account_a.id, quantity="0.0105", price="55000.05"),
            order_body(account_a.id, symbol="ETHUSDT", price="2400.00"),
        )
    ]
    bodies.append({**bodies[0], "note": "\u2028 line \u2029 para, 中文, é", "nested": (D("1.50"), D("-0E-8"), None)})
    for body in bodies:
        assert api_orders.render_json(body) == JSONRenderer().render(gate.plain(body))
