"""Decisions on risk actions: who, when and why; expiry when the account is flat or liquidated."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules import services
from rules.models import RiskAction

PLAN = {"kind": "reduce_positions", "trigger": "liq_distance", "orders": [], "figures": {}}


@pytest.fixture
def proposed(account_a):
    return services.action_record(account_id=account_a.id, alert_id=None, plan=PLAN, act=False)


@pytest.fixture
def no_worker(monkeypatch):
    """The executor task is queued on commit; here it must not run (the state is what is checked)."""
    queued = []
    monkeypatch.setattr("rules.tasks.execute_risk_action_task.delay", queued.append)
    return queued


def test_approve_records_who_when_and_why(proposed, risk_manager, no_worker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        action = services.action_approve(action=proposed, by=risk_manager, reason="ratio still climbing")
    assert action.status == RiskAction.Status.APPROVED
    assert (action.decided_by, action.decision_reason) == (risk_manager, "ratio still climbing")
    assert action.decided_at is not None
    assert no_worker == [action.pk]


@pytest.mark.parametrize("service", [services.action_approve, services.action_dismiss])
@pytest.mark.parametrize("reason", ["", "   "])
def test_a_decision_needs_a_reason(proposed, risk_manager, service, reason):
    with pytest.raises(ValidationError):
        service(action=proposed, by=risk_manager, reason=reason)
    assert RiskAction.objects.get(pk=proposed.pk).status == RiskAction.Status.PROPOSED


def test_expire_takes_proposed_and_approved_not_running_or_decided(account_a, account_b, risk_manager):
    def make(account, status):
        return RiskAction.objects.create(account=account, trigger="liq_distance", kind="k", plan=PLAN, status=status)

    S = RiskAction.Status
    pending = [make(account_a, S.PROPOSED), make(account_a, S.APPROVED)]
    left = [make(account_a, s) for s in (S.RUNNING, S.EXECUTED, S.FAILED, S.DISMISSED)]
    other = make(account_b, S.PROPOSED)

    assert services.actions_expire(account_id=account_a.id, reason="position liquidated") == 2
    for action in pending:
        action.refresh_from_db()
        assert action.status == S.EXPIRED
        assert action.decided_by is None and action.decided_at is not None  # the desk decided
        assert action.decision_reason == "position liquidated"
    assert [RiskAction.objects.get(pk=a.pk).status for a in left] == [a.status for a in left]
    assert RiskAction.objects.get(pk=other.pk).status == S.PROPOSED
    assert services.actions_expire(account_id=account_a.id, reason="again") == 0


def test_an_expired_or_dismissed_action_cannot_execute_or_be_approved(proposed, account_a, risk_manager, no_worker):
    services.actions_expire(account_id=account_a.id, reason="account flat")
    # The executor claims APPROVED rows only: an expired one is returned untouched.
    assert services.action_execute(action_id=proposed.pk).status == RiskAction.Status.EXPIRED
    assert services.action_approve(action=proposed, by=risk_manager, reason="go").status == RiskAction.Status.EXPIRED
    dismissed = RiskAction.objects.create(
        account=account_a, trigger="t", kind="k", plan=PLAN, status=RiskAction.Status.DISMISSED
    )
    assert services.action_execute(action_id=dismissed.pk).status == RiskAction.Status.DISMISSED
    assert no_worker == []


def test_admin_decisions_ask_for_a_reason_first(proposed, risk_manager, client, no_worker):
    risk_manager.is_staff = risk_manager.is_superuser = True
    risk_manager.save()
    client.force_login(risk_manager)
    url = "/admin/rules/riskaction/"
    data = {"action": "dismiss", "_selected_action": [proposed.pk]}
    page = client.post(url, data)
    assert page.status_code == 200 and b'name="reason"' in page.content
    assert RiskAction.objects.get(pk=proposed.pk).status == RiskAction.Status.PROPOSED
    client.post(url, {**data, "decide": "1", "reason": "hedged elsewhere"})
    action = RiskAction.objects.get(pk=proposed.pk)
    assert action.status == RiskAction.Status.DISMISSED and action.decision_reason == "hedged elsewhere"
