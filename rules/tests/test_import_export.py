from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from rules.models import RiskProfile

SEED = """\
risk_control:
  position: {max_leverage: 20, max_position_value: 1000000, risk_ratio_threshold: 0.8}
  order: {max_single_order: 100000, price_deviation_limit: 0.05, order_frequency_limit: 10}
  account: {max_daily_loss: 50000, risk_level_threshold: 0.9}
"""
DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo_rules.yaml"


def run_import(tmp_path, text: str, profile: str = "desk") -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    call_command("import_rules", str(path), profile=profile)
    return str(path)


def run_export(tmp_path, profile: str = "desk") -> str:
    out = tmp_path / "out.yaml"
    call_command("export_rules", profile=profile, output=str(out))
    return out.read_text()


def test_the_seed_file_imports_into_the_mapped_fields(db, tmp_path):
    run_import(tmp_path, SEED)
    p = RiskProfile.objects.get(name="desk")
    assert p.max_leverage_critical == 20
    assert p.max_position_notional_critical == Decimal("1000000")
    assert p.margin_ratio_critical == Decimal("0.8")
    assert p.max_order_notional == Decimal("100000")
    assert p.max_price_deviation == Decimal("0.05")
    assert p.order_rate_per_second == 10
    assert p.max_daily_loss_critical == Decimal("50000")
    assert p.risk_degree_critical == Decimal("0.9")
    assert p.is_default, "the first profile becomes the default"


@pytest.mark.parametrize("source", [SEED, DEMO.read_text()])
def test_export_then_import_round_trips_exactly(db, tmp_path, source):
    run_import(tmp_path, source)
    first = run_export(tmp_path)
    before = RiskProfile.objects.get(name="desk").limit_values()
    run_import(tmp_path, first)
    assert RiskProfile.objects.get(name="desk").limit_values() == before
    assert run_export(tmp_path) == first
    for key in (
        "max_leverage: 20",
        "max_position_value: 1000000",
        "risk_ratio_threshold: 0.8",
        "max_single_order: 100000",
        "price_deviation_limit: 0.05",
        "order_frequency_limit: 10",
        "max_daily_loss: 50000",
        "risk_level_threshold: 0.9",
    ):
        assert key in first


def test_decimals_are_read_exactly_not_through_float(db, tmp_path):
    run_import(tmp_path, "risk_control:\n  order: {price_deviation_limit: 0.1, max_order_qty: 0.123456789012}\n")
    p = RiskProfile.objects.get(name="desk")
    assert p.max_price_deviation == Decimal("0.1")
    assert p.max_order_qty == Decimal("0.123456789012")


BAD_FILES = {
    "bad yaml": ("risk_control:\n  position: {max_leverage: 20\n", "line"),
    # good lines before the bad one must not be half-imported
    "unknown key": (
        "risk_control:\n  position:\n    max_leverage: 5\n    max_leverag: 20\n",
        "risk_control.position.max_leverag (line 4)",
    ),
    "unknown section": ("risk_control:\n  positions: {max_leverage: 20}\n", "risk_control.positions (line 2)"),
    "wrong type": (
        "risk_control:\n  order:\n    max_single_order: lots\n",
        "max_single_order (line 3): expected a number",
    ),
    "bool as number": ("risk_control:\n  order: {order_frequency_limit: yes}\n", "order_frequency_limit (line 2)"),
    "invalid value": (
        "risk_control:\n  funds: {min_equity_critical: 1}\n  position:\n    max_leverage: 500\n",
        "max_leverage (line 4)",
    ),
    "negative": (
        "risk_control:\n  account:\n\n    max_daily_loss: -5\n",
        "max_daily_loss (line 4): must not be negative",
    ),
    "nan": ("risk_control:\n  order: {price_deviation_limit: .nan}\n", "finite"),
    "warning beyond critical": (
        "risk_control:\n  position: {risk_ratio_threshold: 0.5, margin_ratio_warning: 0.7}\n",
        "margin_ratio_warning",
    ),
    "wrong root": ("rules:\n  position: {max_leverage: 20}\n", "risk_control"),
    "empty": ("", "risk_control"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_refused_whole_naming_the_key_and_line_and_nothing_changes(db, tmp_path, name):
    run_import(tmp_path, SEED)
    before = RiskProfile.objects.get(name="desk").limit_values()
    history = RiskProfile.history.count()
    text, expected = BAD_FILES[name]
    with pytest.raises(CommandError) as refused:
        run_import(tmp_path, text)
    assert expected in str(refused.value)
    assert "nothing imported" in str(refused.value)
    assert RiskProfile.objects.get(name="desk").limit_values() == before
    assert RiskProfile.history.count() == history


def test_every_problem_is_listed_not_only_the_first(db, tmp_path):
    with pytest.raises(CommandError) as refused:
        run_import(tmp_path, "risk_control:\n  position: {max_leverage: x, nope: 1}\n")
    assert "max_leverage" in str(refused.value) and "nope" in str(refused.value)
    assert not RiskProfile.objects.exists()


def test_export_of_an_unknown_profile_names_the_known_ones(db, tmp_path):
    run_import(tmp_path, SEED)
    with pytest.raises(CommandError, match="known profiles: desk"):
        call_command("export_rules", profile="nope")


def test_import_records_who_and_what_in_history(db, tmp_path):
    run_import(tmp_path, SEED)
    run_import(tmp_path, SEED.replace("max_leverage: 20", "max_leverage: 10"))
    latest = RiskProfile.objects.get(name="desk").history.first()
    assert latest.history_change_reason == "imported from rules.yaml"
    changes = latest.diff_against(latest.prev_record).changes
    assert [(c.field, c.old, c.new) for c in changes if c.field == "max_leverage_critical"] == [
        ("max_leverage_critical", 20, 10)
    ]
