"""The clearing dwell and re-open window of a profile: validated alike everywhere, in the API,
the YAML file and the rules page, and carried into the evaluator's Limits."""

from __future__ import annotations

import pytest

from rules import levels
from rules.limits import EVALUATED_RULES, validate_limits
from rules.models import RiskProfile
from rules.tests.test_import_export import run_export, run_import


def errors(**values):
    return validate_limits(values, exchange_max_leverage=125)


def test_the_catalogue_names_exactly_the_evaluators_rules():
    assert set(EVALUATED_RULES) == set(levels.RULES)


def test_dwell_and_window_are_whole_seconds_within_a_day():
    assert errors(clear_dwell_s=0, reopen_window_s=600, clear_dwell_by_rule={"drawdown": 120}) == {}
    found = errors(clear_dwell_s=-1, reopen_window_s=10**6)
    assert set(found) == {"clear_dwell_s", "reopen_window_s"}
    assert "seconds" in errors(clear_dwell_s=True)["clear_dwell_s"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["drawdown"], "map"),
        ({"drawdwn": 10}, "unknown rule 'drawdwn'"),
        ({"drawdown": -5}, "drawdown: must be a whole number"),
        ({"drawdown": "10"}, "drawdown: must be a whole number"),
    ],
)
def test_dwell_per_rule_names_known_rules_and_seconds(value, says):
    assert says in errors(clear_dwell_by_rule=value)["clear_dwell_by_rule"]


def test_profile_values_reach_the_evaluators_limits(db):
    profile = RiskProfile.objects.create(name="p", clear_dwell_by_rule={"leverage": 0}, reopen_window_s=120)
    assert (profile.clear_dwell_s, profile.reopen_window_s) == (30, 120)  # the model's defaults
    limits = levels.Limits.from_values(profile.limit_values())
    assert limits.dwell_ms("drawdown") == 30_000 and limits.dwell_ms("leverage") == 0
    assert limits.reopen_window_s == 120


def test_yaml_round_trips_the_evaluation_timings(db, tmp_path):
    text = """\
risk_control:
  evaluation: {breach_after_n: 2, clear_dwell_s: 45, reopen_window_s: 900, clear_dwell_by_rule: {drawdown: 120}}
"""
    run_import(tmp_path, text)
    profile = RiskProfile.objects.get(name="desk")
    assert (profile.clear_dwell_s, profile.reopen_window_s) == (45, 900)
    assert profile.clear_dwell_by_rule == {"drawdown": 120}
    exported = run_export(tmp_path)
    assert "clear_dwell_s: 45" in exported and "drawdown: 120" in exported
    run_import(tmp_path, exported)
    assert RiskProfile.objects.get(name="desk").limit_values() == profile.limit_values()


def test_a_yaml_file_with_a_bad_dwell_is_refused_naming_the_key(db, tmp_path):
    from django.core.management import CommandError

    with pytest.raises(CommandError) as refused:
        run_import(tmp_path, "risk_control:\n  evaluation: {clear_dwell_by_rule: {nosuchrule: 5}}\n")
    assert "clear_dwell_by_rule" in str(refused.value) and "line 2" in str(refused.value)


def test_the_api_reads_and_writes_the_timings(api_for, risk_manager):
    api = api_for(risk_manager)
    created = api.post(
        "/api/v1/profiles/",
        {"name": "p", "clear_dwell_s": 60, "clear_dwell_by_rule": {"liq_distance": 5}, "reopen_window_s": 300},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["clear_dwell_s"], body["clear_dwell_by_rule"], body["reopen_window_s"]) == (
        60,
        {"liq_distance": 5},
        300,
    )
    refused = api.patch(f"/api/v1/profiles/{body['id']}/", {"clear_dwell_by_rule": {"x": 1}}, format="json")
    assert refused.status_code == 400 and "clear_dwell_by_rule" in refused.json()
