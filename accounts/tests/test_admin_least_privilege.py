"""Admin least privilege (issue 14, item 9).

- A risk manager manages the desk's users (their role) but cannot make anyone a superuser, hand
  out permissions or groups, or edit a superuser (that would be taking the account over).
- Audit rows are read-only in the admin for everyone, superusers included: no add, change or
  delete, no revert from history. What moves them goes through a service, and those admin
  actions (acknowledge and resolve alerts, approve and dismiss risk actions, retry a delivery) stay.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory

from accounts.models import Role, User
from alerts import services as alert_services
from alerts.models import Alert, AlertStatus, Delivery, Level
from positions.models import AccountSnapshot, ClosedPosition, Fill, FundingFee, OrderLog
from rules import services as rule_services
from rules.models import RiskAction

AUDIT_MODELS = [OrderLog, Alert, Delivery, RiskAction, Fill, ClosedPosition, FundingFee, AccountSnapshot]
PLAN = {"kind": "reduce_positions", "trigger": "liq_distance", "orders": [], "figures": {}}


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser(username="root", password="x-very-long-password-1", email="r@x.io")


@pytest.fixture
def rm_client(risk_manager) -> Client:
    client = Client()
    client.force_login(risk_manager)
    return client


@pytest.fixture
def root_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _user_form(client: Client, user: User) -> dict:
    page = client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, datetime):  # the admin's split date and time widget
            data[f"{name}_0"], data[f"{name}_1"] = value.date().isoformat(), value.strftime("%H:%M:%S")
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif hasattr(value, "__iter__") and not isinstance(value, str):
            data[name] = [getattr(v, "pk", v) for v in value]
        else:
            data[name] = value
    return data


# --------------------------------------------------------------------------- users and permissions


def test_a_risk_manager_cannot_make_anyone_a_superuser_or_grant_permissions(rm_client, viewer):
    change_group = Permission.objects.get(codename="change_group")
    data = _user_form(rm_client, viewer)
    data.update(is_superuser="on", is_staff="on", user_permissions=[change_group.pk], role=Role.VIEWER)
    data["groups"] = [Group.objects.get_or_create(name="Risk managers")[0].pk]
    response = rm_client.post(f"/admin/accounts/user/{viewer.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    viewer.refresh_from_db()
    assert viewer.is_superuser is False
    assert not viewer.user_permissions.exists()
    assert list(viewer.groups.values_list("name", flat=True)) == ["Viewers"]  # the role's, nothing else


def test_a_risk_manager_does_not_see_the_privilege_fields_as_inputs(rm_client, viewer):
    form = rm_client.get(f"/admin/accounts/user/{viewer.pk}/change/").context["adminform"].form
    assert {"is_superuser", "user_permissions", "groups", "is_staff"}.isdisjoint(form.fields)


def test_a_risk_manager_may_still_change_a_users_role(rm_client, viewer):
    data = _user_form(rm_client, viewer)
    data["role"] = Role.TRADER
    assert rm_client.post(f"/admin/accounts/user/{viewer.pk}/change/", data).status_code == 302
    viewer.refresh_from_db()
    assert viewer.role == Role.TRADER and viewer.is_staff is False


def test_a_risk_manager_cannot_edit_or_take_over_a_superuser(rm_client, superuser):
    assert rm_client.post(f"/admin/accounts/user/{superuser.pk}/change/", {"username": "x"}).status_code == 403
    password = {"password1": "taken-over-password-9", "password2": "taken-over-password-9"}
    assert rm_client.post(f"/admin/accounts/user/{superuser.pk}/password/", password).status_code == 403
    assert rm_client.post(f"/admin/accounts/user/{superuser.pk}/delete/", {"post": "yes"}).status_code == 403
    superuser.refresh_from_db()
    assert superuser.username == "root" and superuser.check_password("x-very-long-password-1")


def test_a_risk_manager_cannot_edit_groups(rm_client):
    group = Group.objects.create(name="g")
    assert rm_client.get("/admin/auth/group/add/").status_code == 403
    assert rm_client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "g2"}).status_code == 403


def test_a_superuser_still_grants_superuser(root_client, viewer):
    data = _user_form(root_client, viewer)
    data["is_superuser"] = "on"
    assert root_client.post(f"/admin/accounts/user/{viewer.pk}/change/", data).status_code == 302
    viewer.refresh_from_db()
    assert viewer.is_superuser is True


# --------------------------------------------------------------------------- audit rows


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m.__name__)
def test_audit_rows_cannot_be_added_changed_or_deleted_even_by_a_superuser(superuser, model):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    model_admin = admin.site._registry[model]
    assert model_admin.has_view_permission(request) is True
    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False
    assert "delete_selected" not in model_admin.get_actions(request)


@pytest.fixture
def alert(account_a):
    raised, _event = alert_services.alert_raise(
        account_id=account_a.id,
        rule="margin_ratio",
        subject="account",
        level=Level.WARNING,
        reason_code="MARGIN_RATIO_WARNING",
        value=Decimal("0.85"),
        limit=Decimal("0.80"),
        mark_price=None,
        details={},
        message="margin ratio 0.85",
    )
    return raised


def test_an_alert_cannot_be_edited_or_deleted_in_the_admin(root_client, alert):
    url = f"/admin/alerts/alert/{alert.pk}/"
    assert root_client.get(url + "change/").status_code == 200  # viewable
    assert root_client.post(url + "change/", {"status": "resolved"}).status_code == 403
    assert root_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [alert.pk], "post": "yes"}
    root_client.post("/admin/alerts/alert/", bulk)
    assert Alert.objects.filter(pk=alert.pk, status=AlertStatus.OPEN).exists()


def test_alerts_are_still_acknowledged_through_the_service(rm_client, alert):
    rm_client.post("/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED


def test_a_viewer_sees_no_alert_actions(viewer, alert):
    client = Client()
    client.force_login(viewer)
    page = client.get("/admin/alerts/alert/")
    assert page.status_code == 200 and b'value="acknowledge"' not in page.content


def test_a_risk_action_cannot_be_reverted_from_its_history(root_client, account_a, risk_manager, monkeypatch):
    monkeypatch.setattr("rules.tasks.execute_risk_action_task.delay", lambda *a: None)
    action = rule_services.action_record(account_id=account_a.id, alert_id=None, plan=PLAN, act=False)
    first = action.history.earliest("history_date")
    rule_services.action_dismiss(action=action, by=risk_manager, reason="hedged elsewhere")
    url = f"/admin/rules/riskaction/{action.pk}/history/{first.history_id}/"
    page = root_client.get(url)
    assert page.status_code == 200 and b"Revert" not in page.content
    assert root_client.post(url, {}).status_code == 403
    action.refresh_from_db()
    assert action.status == RiskAction.Status.DISMISSED


def test_risk_actions_are_still_dismissed_through_the_service(rm_client, account_a):
    action = rule_services.action_record(account_id=account_a.id, alert_id=None, plan=PLAN, act=False)
    data = {"action": "dismiss", "_selected_action": [action.pk], "decide": "1", "reason": "hedged"}
    rm_client.post("/admin/rules/riskaction/", data)
    action.refresh_from_db()
    assert action.status == RiskAction.Status.DISMISSED and action.decision_reason == "hedged"
