"""/alerts/: filters, history, acknowledge and resolve with a note (risk managers, via alerts.services)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from alerts import services
from alerts.models import Alert, AlertStatus
from riskdesk.tests import page_fixtures as pf

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def raise_alert(account_id: int | None, rule: str = "margin_ratio", level: int = 30) -> Alert:
    alert, _ = services.alert_raise(
        account_id=account_id,
        rule=rule,
        subject="account",
        level=level,
        reason_code=rule.upper(),
        value=D("0.9"),
        limit=D("0.8"),
        mark_price=None,
        details={},
    )
    return alert


@pytest.fixture
def alerts(desk):
    return {
        "a": raise_alert(desk["a"].id),
        "a_warn": raise_alert(desk["a"].id, rule="leverage", level=20),
        "b": raise_alert(desk["b"].id),
        "desk": raise_alert(None, rule="feed_stale"),
    }


def ids(html: str) -> set[int]:
    import re

    return {int(i) for i in re.findall(r'<tr id="alert-(\d+)"', html)}


def test_filters_by_level_account_and_status(client_for, risk_manager, alerts, desk):
    client = client_for(risk_manager)
    assert ids(client.get("/alerts/").content.decode()) == {a.id for a in alerts.values()}
    assert ids(client.get("/alerts/_table?level=20").content.decode()) == {alerts["a_warn"].id}
    assert ids(client.get(f"/alerts/_table?account={desk['b'].id}").content.decode()) == {alerts["b"].id}
    assert ids(client.get("/alerts/_table?status=resolved").content.decode()) == set()


def test_a_risk_manager_acknowledges_then_resolves_with_a_note(client_for, risk_manager, alerts):
    client = client_for(risk_manager)
    alert = alerts["a"]
    response = client.post(f"/alerts/{alert.id}/acknowledge", {"note": "looking"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and f'<tr id="alert-{alert.id}"' in response.content.decode()
    alert.refresh_from_db()
    assert (
        alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by == risk_manager and "looking" in alert.note
    )
    response = client.post(f"/alerts/{alert.id}/resolve", {"note": "cut the position", "next": "/alerts/?status=all"})
    assert response.status_code == 302 and response["Location"] == "/alerts/?status=all"
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and "cut the position" in alert.note
    history = client.get("/alerts/?status=resolved").content.decode()
    assert ids(history) == {alert.id} and "cut the position" in history


def test_a_trader_sees_their_alerts_and_desk_wide_ones_only(client_for, trader_a, alerts):
    html = client_for(trader_a).get("/alerts/").content.decode()
    assert ids(html) == {alerts["a"].id, alerts["a_warn"].id, alerts["desk"].id}
    assert "/acknowledge" not in html and "/resolve" not in html


def test_a_trader_may_not_act_and_gets_404_for_anothers_alert(client_for, trader_a, alerts, desk):
    client = client_for(trader_a)
    assert client.post(f"/alerts/{alerts['a'].id}/acknowledge", {"note": "x"}).status_code == 403
    assert client.post(f"/alerts/{alerts['b'].id}/acknowledge", {"note": "x"}).status_code == 404
    assert client.get(f"/alerts/_table?account={desk['b'].id}").status_code == 404
    assert Alert.objects.get(pk=alerts["a"].id).status == AlertStatus.OPEN


def test_an_outsider_is_refused(client_for, outsider, alerts):
    client = client_for(outsider)
    assert client.get("/alerts/").status_code == 403
    assert client.get("/alerts/_table").status_code == 403
    assert client.post(f"/alerts/{alerts['a'].id}/resolve", {"note": "x"}).status_code == 403


def test_a_redirect_after_acting_stays_on_this_site(client_for, risk_manager, alerts):
    response = client_for(risk_manager).post(f"/alerts/{alerts['a'].id}/acknowledge", {"next": "https://evil.example/"})
    assert response["Location"] == "/alerts/"


def test_times_are_shown_in_the_users_timezone_and_language(client_for, risk_manager, alerts):
    from datetime import UTC, datetime

    Alert.objects.filter(pk=alerts["a"].pk).update(opened_at=datetime(2026, 5, 19, 13, 5, tzinfo=UTC))
    risk_manager.timezone = "Asia/Shanghai"
    risk_manager.save(update_fields=["timezone"])
    english = client_for(risk_manager).get("/alerts/_table").content.decode()
    chinese = client_for(risk_manager, language="zh-hans").get("/alerts/_table").content.decode()
    assert 'datetime="2026-05-19T21:05:00+08:00"' in english and "9:05 p.m." in english
    assert "2026年5月19日 21:05" in chinese
