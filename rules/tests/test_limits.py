from __future__ import annotations

from decimal import Decimal

import pytest

from rules.limits import LIMITS_BY_FIELD, validate_limits

MAX_LEV = 125


def errors(**values):
    return validate_limits(values, exchange_max_leverage=MAX_LEV)


def test_an_empty_profile_is_valid_because_unset_limits_are_disabled():
    assert errors() == {}


@pytest.mark.parametrize("field", sorted(LIMITS_BY_FIELD))
def test_it_refuses_a_negative_limit_naming_the_field(field):
    assert "negative" in errors(**{field: Decimal("-1")})[field]


def test_it_accepts_zero_and_equal_warning_and_critical_levels():
    assert errors(margin_ratio_warning=Decimal("0.8"), margin_ratio_critical=Decimal("0.8"), max_order_qty=0) == {}


def test_it_refuses_a_warning_above_its_critical_level_when_higher_is_worse():
    found = errors(margin_ratio_warning=Decimal("0.9"), margin_ratio_critical=Decimal("0.8"))
    assert "margin_ratio_warning" in found and "critical" in found["margin_ratio_warning"]


def test_it_refuses_a_warning_below_its_critical_level_when_lower_is_worse():
    found = errors(liq_distance_warning=Decimal("0.03"), liq_distance_critical=Decimal("0.05"))
    assert "lower is worse" in found["liq_distance_warning"]
    assert errors(min_equity_warning=5000, min_equity_critical=2000) == {}


@pytest.mark.parametrize("value", [126, 1000])
def test_it_refuses_leverage_above_what_the_exchange_allows(value):
    assert "125x" in errors(max_leverage_critical=value)["max_leverage_critical"]


def test_it_accepts_leverage_at_the_exchange_maximum_and_refuses_zero_and_fractions():
    assert errors(max_leverage_critical=125) == {}
    assert "between 1" in errors(max_leverage_critical=0)["max_leverage_critical"]
    assert "whole" in errors(max_leverage_critical=Decimal("2.5"))["max_leverage_critical"]


def test_it_refuses_a_ratio_above_one_with_a_hint():
    assert "0.05 means 5 %" in errors(max_price_deviation=5)["max_price_deviation"]
    assert errors(max_price_deviation=1) == {}


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "abc", True, [1]])
def test_it_refuses_values_that_are_not_finite_numbers(bad):
    assert "max_order_notional" in errors(max_order_notional=bad)


def test_it_refuses_nonsense_evaluation_and_action_settings():
    found = errors(breach_after_n=0, hysteresis=Decimal("0.9"), auto_action="liquidate", symbol_denylist="BTC")
    assert set(found) == {"breach_after_n", "hysteresis", "auto_action", "symbol_denylist"}


def test_it_checks_per_asset_caps():
    assert errors(asset_caps={"USDT": "500000"}) == {}
    assert "USDT" in errors(asset_caps={"USDT": "-1"})["asset_caps"]
    assert "mapping" not in errors(asset_caps={"USDT": "x"})["asset_caps"]
    assert "map" in errors(asset_caps=["USDT"])["asset_caps"]
