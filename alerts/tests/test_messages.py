"""Alert messages as a code plus parameters, rendered for people in English or Chinese."""

from __future__ import annotations

from decimal import Decimal

from alerts import messages
from alerts.models import Level


def breach(**kw):
    params = {"rule": "leverage", "subject": "BTCUSDT:LONG", "value": "25", "limit": "20", "level": 30}
    return {**params, **kw}


def test_a_value_equal_to_its_limit_is_at_the_limit_never_above_it():
    text = messages.render("limit_breach", breach(value="20", limit="20", comparison="above"), "en")

    assert text == "Leverage of BTCUSDT long: 20× is at the critical limit"
    assert "above" not in text


def test_above_and_below_follow_the_rule():
    above = messages.render("limit_breach", breach(comparison="above"), "en")
    below = messages.render(
        "limit_breach",
        {"rule": "liq_distance", "subject": "ETHUSDT:SHORT", "value": "0.0123", "limit": "0.02", "level": "warning"},
        "en",
    )

    assert above == "Leverage of BTCUSDT long: 25× is above the critical limit 20×"
    assert below == "Distance to liquidation of ETHUSDT short: 1.23 % is below the warning limit 2.00 %"


def test_numbers_are_rounded_for_people():
    ratio = messages.render(
        "limit_breach",
        breach(rule="utilization", subject="account", value="0.4921590353596404916131486127", limit="0.45"),
        "en",
    )
    money = messages.render(
        "limit_breach",
        breach(rule="daily_loss", subject="account", value="1674.694999", limit="1500", level=Level.WARNING),
        "en",
    )

    assert ratio == "Fund utilization of the account: 49.22 % is above the critical limit 45.00 %"
    assert money == "Daily loss of the account: 1,674.69 USDT is above the warning limit 1,500.00 USDT"
    assert messages.fmt_price("61234.56789", "0.1") == "61,234.6"
    assert messages.fmt_price(Decimal("0.012340")) == "0.01234"


def test_a_message_renders_in_chinese_with_the_rule_named_in_chinese():
    params = breach(value="20", limit="20")

    text = messages.render("limit_breach", params, "zh-hans")

    assert text == "杠杆（BTCUSDT 多头）：20× 已达严重限额"
    assert messages.render("limit_breach", breach(), "zh-hans") == "杠杆（BTCUSDT 多头）：25× 高于严重限额 20×"
    assert messages.rule_name("liq_distance", "zh-hans") == "距强平距离"
    assert messages.rule_name("liq_distance", "en") == "Distance to liquidation"


def test_a_liquidation_says_what_happened_in_both_languages():
    params = {
        "symbol": "BTCUSDT",
        "side": "LONG",
        "qty": "0.500",
        "price": "61234.5",
        "realized_pnl": "-812.345678",
        "time_ms": 1_779_000_000_000,
        "last_liquidation_price": "61200",
        "last_distance": "0.0123",
    }

    english = messages.render("liquidated", params, "en")
    chinese = messages.render("liquidated", params, "zh-hans")

    assert english.startswith("BTCUSDT long was liquidated at ")
    assert "0.5 filled at 61,234.5, realized -812.35 USDT." in english
    assert "liquidation price at 61,200, 1.23 % away" in english
    assert "强平" in chinese and "-812.35 USDT" in chinese and "liquidated" not in chinese


def test_every_code_renders_in_both_languages_and_an_unknown_one_renders_nothing():
    samples = {
        "feed_stale": {"name": "market", "last_message_ms": 1_779_000_000_000},
        "margin_call": {"symbol": "BTCUSDT", "side": "BOTH", "maintenance_margin": "12.3456", "mark_price": "61000"},
        "position_drift": {"count": 2, "source": "reconciliation"},
        "exchange_config_changed": {"what": "leverage", "symbol": "BTCUSDT", "old": "20", "new": "50"},
    }
    for code, params in samples.items():
        english, chinese = messages.render(code, params, "en"), messages.render(code, params, "zh-hans")
        assert english and chinese and english != chinese, code
    assert messages.render("exchange_config_changed", samples["exchange_config_changed"], "en") == (
        "Leverage of BTCUSDT was changed on the exchange from 20× to 50×."
    )
    assert messages.render("no_such_code", {}, "en") == ""


def test_an_alert_without_a_code_keeps_its_stored_sentence():
    assert messages.alert_text({"message": "old words", "message_code": ""}, "zh-hans") == "old words"
