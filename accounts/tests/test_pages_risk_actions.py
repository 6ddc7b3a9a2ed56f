"""Proposed risk actions on /accounts/: risk managers approve or dismiss behind the plan and a
reason; traders see them read-only and are refused; the history keeps who, when and why."""

from __future__ import annotations

from unittest import mock

import pytest

from riskdesk.tests import page_fixtures as pf
from rules.models import RiskAction

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db

PLAN = {
    "kind": "reduce_positions",
    "trigger": "margin_ratio",
    "cancel_orders": True,
    "trading_state": None,
    "orders": [
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "position_side": "BOTH",
            "quantity": "0.2",
            "type": "MARKET",
            "reduce_only": True,
        }
    ],
    "figures": {"cross_margin_ratio_before": "0.85", "fraction_cut": "0.4", "target_ratio": "0.5"},
}


@pytest.fixture
def action(desk):
    return RiskAction.objects.create(account=desk["a"], trigger="margin_ratio", kind="reduce_positions", plan=PLAN)


def test_the_accounts_page_lists_proposed_actions_for_everyone_who_sees_the_account(
    client_for, risk_manager, trader_a, trader_b, action
):
    rm = client_for(risk_manager).get("/accounts/").content.decode()
    assert f'id="action-{action.id}"' in rm and f'data-testid="review-{action.id}"' in rm
    assert "cancel open orders; 1 closing order" in rm
    mine = client_for(trader_a).get("/accounts/").content.decode()
    assert f'id="action-{action.id}"' in mine and "review-" not in mine  # read-only
    assert f'id="action-{action.id}"' not in client_for(trader_b).get("/accounts/").content.decode()


def test_the_review_shows_the_plan_and_asks_for_a_reason(client_for, risk_manager, action):
    html = (
        client_for(risk_manager).get(f"/accounts/actions/{action.id}/review", HTTP_HX_REQUEST="true").content.decode()
    )
    assert 'data-testid="action-review"' in html and "<html" not in html
    assert "BTCUSDT" in html and "SELL MARKET reduceOnly" in html and "0.2" in html
    assert 'name="reason" required' in html


def test_a_risk_manager_dismisses_with_a_reason_and_the_history_says_who_when_why(client_for, risk_manager, action):
    client = client_for(risk_manager)
    response = client.post(f"/accounts/actions/{action.id}/dismiss", {"reason": "spike, already hedged"})
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, action.decided_by, action.decision_reason) == (
        "dismissed",
        risk_manager,
        "spike, already hedged",
    )
    assert action.decided_at is not None
    history = client.get("/accounts/_actions").content.decode()
    row = history.split(f'id="action-{action.id}"')[1].split("</tr>")[0]
    assert "Dismissed" in row and "rm" in row and "spike, already hedged" in row


def test_a_risk_manager_approves_and_the_plan_is_queued(client_for, risk_manager, action):
    with mock.patch("rules.tasks.execute_risk_action_task.delay") as delay:
        response = client_for(risk_manager).post(f"/accounts/actions/{action.id}/approve", {"reason": "agreed"})
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, action.decided_by, action.decision_reason) == ("approved", risk_manager, "agreed")
    assert delay.call_count <= 1  # queued after commit (the test transaction never commits)


def test_a_decision_needs_a_reason(client_for, risk_manager, action):
    client_for(risk_manager).post(f"/accounts/actions/{action.id}/approve", {"reason": "  "})
    action.refresh_from_db()
    assert action.status == "proposed"


def test_an_expired_action_cannot_be_approved(client_for, risk_manager, action):
    from rules.services import actions_expire

    actions_expire(account_id=action.account_id, reason="liquidated")
    client_for(risk_manager).post(f"/accounts/actions/{action.id}/approve", {"reason": "go"})
    action.refresh_from_db()
    assert action.status == "expired"


@pytest.mark.parametrize("who", ["trader_a", "viewer", "outsider"])
def test_traders_viewers_and_outsiders_are_refused(client_for, request, who, action):
    client = client_for(request.getfixturevalue(who))
    assert client.get(f"/accounts/actions/{action.id}/review").status_code in (403, 404)
    assert client.post(f"/accounts/actions/{action.id}/approve", {"reason": "mine"}).status_code in (403, 404)
    action.refresh_from_db()
    assert action.status == "proposed"


def test_an_unknown_decision_is_404(client_for, risk_manager, action):
    assert client_for(risk_manager).post(f"/accounts/actions/{action.id}/execute", {"reason": "x"}).status_code == 404
