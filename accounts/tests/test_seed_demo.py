"""seed_demo runs on every demo start: it must keep what a risk manager changed (issue 14 item 12)."""

from __future__ import annotations

import io

from django.core.management import call_command

from rules import services
from rules.models import RiskProfile


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_second_seed_keeps_the_demo_profile_edits_and_says_so(db):
    seed()
    profile = RiskProfile.objects.get(name="desk-default")
    services.profile_update(
        profile=profile, values={"max_leverage_warning": 5, "max_leverage_critical": 7}, by=None, reason="tighter"
    )

    said = seed()

    profile.refresh_from_db()
    assert profile.max_leverage_critical == 7
    assert "'desk-default' exists: kept as it is" in said and "--reset-rules" in said
    assert profile.history.first().history_change_reason == "tighter"  # no silent re-import on top


def test_reset_rules_re_imports_the_demo_file_over_the_edits(db):
    seed()
    imported = RiskProfile.objects.get(name="desk-default").max_leverage_critical
    profile = RiskProfile.objects.get(name="desk-default")
    services.profile_update(
        profile=profile, values={"max_leverage_warning": 5, "max_leverage_critical": 7}, by=None, reason="tighter"
    )

    seed("--reset-rules")

    profile.refresh_from_db()
    assert profile.max_leverage_critical == imported != 7
    assert profile.history.first().history_change_reason == "imported from demo_rules.yaml"
