"""alert_raise / alert_clear / alert_acknowledge / alert_resolve: one open alert per
(account, rule, subject), escalated in place, auto-resolved, handled by risk managers."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction

from alerts import services
from alerts.models import Alert, AlertStatus, Delivery, Level
from conftest import require_service


@pytest.fixture
def channel(make_channel, receiver):
    return make_channel("webhook", options={"url": receiver.url}, signing_secret="s3cret", min_level=Level.INFO)


def test_a_breach_opens_an_alert_carrying_its_numbers_in_the_row_and_in_details(account_a, channel, breach):
    alert, event = breach(account_a, level=Level.WARNING, value="0.85")

    assert event == "opened"
    assert (alert.status, alert.level, alert.reason_code) == (AlertStatus.OPEN, Level.WARNING, "MARGIN_RATIO_WARNING")
    assert (alert.value, alert.limit, alert.mark_price) == (Decimal("0.85"), Decimal("0.80"), Decimal("64123.5"))
    assert alert.details["window"] == "1m"
    assert {k: alert.details[k] for k in ("reason_code", "value", "limit", "level", "mark_price")} == {
        "reason_code": "MARGIN_RATIO_WARNING",
        "value": "0.85",
        "limit": "0.8",
        "level": 20,
        "mark_price": "64123.5",
    }
    assert alert.details["at"]
    assert list(Delivery.objects.values_list("event", "level")) == [("opened", 20)]


def test_the_same_level_again_updates_the_numbers_and_notifies_nobody(account_a, channel, breach):
    first, _ = breach(account_a, level=Level.WARNING, value="0.85")

    again, event = breach(account_a, level=Level.WARNING, value="0.87")

    assert event == ""
    assert again.pk == first.pk
    first.refresh_from_db()
    assert first.value == Decimal("0.87") and first.details["value"] == "0.87"
    assert Alert.objects.count() == 1
    assert Delivery.objects.count() == 1


def test_a_milder_level_moves_the_row_down_with_its_limit_quietly(account_a, channel, breach):
    breach(account_a, level=Level.CRITICAL, value="0.95", limit=Decimal("0.90"))

    alert, event = breach(account_a, level=Level.WARNING, value="0.84", limit=Decimal("0.80"))

    assert event == ""
    alert.refresh_from_db()
    # The row says what holds now: a Critical row showing the warning limit was issue 13's complaint.
    assert (alert.level, alert.limit, alert.value) == (Level.WARNING, Decimal("0.80"), Decimal("0.84"))
    assert alert.details["level"] == Level.WARNING
    assert (alert.notified_level, alert.peak_value, alert.value_at_open) == (
        Level.CRITICAL,
        Decimal("0.95"),
        Decimal("0.95"),
    )
    assert list(Delivery.objects.values_list("event", "level")) == [("opened", 30)]


def test_a_worse_level_escalates_the_same_row_with_one_more_delivery(account_a, channel, breach):
    opened, _ = breach(account_a, level=Level.WARNING, value="0.85")

    escalated, event = breach(account_a, level=Level.CRITICAL, value="0.93")

    assert event == "escalated"
    assert escalated.pk == opened.pk
    escalated.refresh_from_db()
    assert (escalated.level, escalated.value, escalated.reason_code) == (
        Level.CRITICAL,
        Decimal("0.93"),
        "MARGIN_RATIO_CRITICAL",
    )
    assert escalated.escalated_at is not None
    assert Alert.objects.count() == 1
    assert sorted(Delivery.objects.values_list("event", "level")) == [("escalated", 30), ("opened", 20)]


def test_back_to_normal_auto_resolves_the_alert_and_notifies(account_a, channel, breach):
    alert, _ = breach(account_a, level=Level.WARNING)

    cleared = services.alert_clear(
        account_id=account_a.id, rule="margin_ratio", subject="account", details={"value": Decimal("0.5")}
    )

    assert cleared.pk == alert.pk
    cleared.refresh_from_db()
    assert cleared.status == AlertStatus.RESOLVED
    assert cleared.resolved_by is None and cleared.resolved_at is not None
    assert cleared.note == "auto-resolved: back within limit"
    assert cleared.open_key is None
    assert cleared.details["cleared"] == {"value": "0.5"}
    assert sorted(Delivery.objects.values_list("event", flat=True)) == ["opened", "resolved"]


def test_clearing_with_nothing_open_does_nothing(account_a, channel):
    assert services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account") is None
    assert not Delivery.objects.exists()


def test_a_new_breach_after_the_reopen_window_opens_a_new_alert(account_a, channel, breach):
    first, _ = breach(account_a)
    services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account")

    second, event = breach(account_a, reopen_window_s=0)

    assert event == "opened"
    assert second.pk != first.pk
    assert Alert.objects.filter(status=AlertStatus.OPEN).get() == second


def test_each_account_rule_and_subject_has_its_own_slot(account_a, account_b, channel, breach):
    breach(account_a)
    breach(account_b)
    breach(account_a, rule="leverage")
    breach(account_a, subject="BTCUSDT")
    breach(None, rule="stream_stale")

    assert Alert.objects.filter(status=AlertStatus.OPEN).count() == 5


def test_a_risk_manager_acknowledges_with_a_note(account_a, channel, breach, risk_manager):
    alert, _ = breach(account_a, level=Level.CRITICAL)

    services.alert_acknowledge(alert=alert, by=risk_manager, note="calling the trader")

    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED
    assert alert.acknowledged_by == risk_manager and alert.acknowledged_at is not None
    assert alert.note == "calling the trader"
    assert Delivery.objects.count() == 1  # acknowledging pages nobody


def test_a_risk_manager_resolves_with_a_note_and_channels_hear_of_it(account_a, channel, breach, risk_manager):
    alert, _ = breach(account_a, level=Level.CRITICAL)

    services.alert_resolve(alert=alert, by=risk_manager, note="position closed by hand")

    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by) == (AlertStatus.RESOLVED, risk_manager)
    assert alert.note == "position closed by hand"
    assert alert.open_key is None
    assert sorted(Delivery.objects.values_list("event", flat=True)) == ["opened", "resolved"]


def test_back_to_normal_resolves_an_acknowledged_alert_too(account_a, channel, breach, risk_manager):
    alert, _ = breach(account_a)
    services.alert_acknowledge(alert=alert, by=risk_manager)

    assert services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account").pk == alert.pk
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


def test_an_acknowledged_alert_that_gets_worse_is_open_again(account_a, channel, breach, risk_manager):
    alert, _ = breach(account_a, level=Level.WARNING)
    services.alert_acknowledge(alert=alert, by=risk_manager)

    _, event = breach(account_a, level=Level.CRITICAL)

    alert.refresh_from_db()
    assert event == "escalated"
    assert alert.status == AlertStatus.OPEN and alert.acknowledged_by is None
    assert "re-opened: escalated from Warning to Critical" in alert.note


@pytest.mark.parametrize("who", ["trader_a", "viewer", "outsider"])
def test_only_a_risk_manager_may_acknowledge_or_resolve(request, who, account_a, channel, breach):
    user = request.getfixturevalue(who)
    alert, _ = breach(account_a)

    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(alert=alert, by=user, note="mine")
    with pytest.raises(PermissionDenied):
        services.alert_resolve(alert=alert, by=user, note="mine")

    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN and alert.note == ""


def test_the_hand_off_and_the_push_wait_for_the_commit(account_a, channel, breach, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        breach(account_a)
    # One deliver task for the one channel, one push to the live desk.
    assert len(callbacks) == 2


def test_the_push_carries_the_row_exactly_as_committed(
    account_a, channel, breach, monkeypatch, django_capture_on_commit_callbacks
):
    """The push is the alert as saved, not re-read: it must equal what a re-read would give,
    numbers with more decimals than the column included (rounded as the column rounds). Within
    15 significant digits: SQLite keeps a REAL."""
    from alerts import broadcast

    pushed = []
    monkeypatch.setattr(broadcast, "alert_changed", pushed.append)
    for value in ("0.8500000000005", "0.9123456789012345", "-0.0000000000005"):
        with django_capture_on_commit_callbacks(execute=True):
            alert, _ = breach(account_a, level=Level.CRITICAL, value=value, mark_price=Decimal("123.4567890123456"))
        assert pushed[-1] == Alert.objects.get(pk=alert.pk).snapshot()
    assert [p["value"] for p in pushed] == ["0.850000000001", "0.912345678901", "-0.000000000001"]


def test_a_value_as_large_as_the_column_holds_is_written(account_a, channel, breach):
    # 17 integer digits and 12 decimals: more than the default context's 28 digits.
    alert, event = breach(account_a, value="12345678901234567.12345678901234")
    assert event == "opened" and alert.value == Decimal("12345678901234567.123456789012")
    assert Alert.objects.filter(pk=alert.pk).exists()  # (SQLite keeps a REAL: its digits are not compared)


def test_a_steady_breach_with_more_decimals_than_the_column_writes_nothing(account_a, channel, breach):
    alert, _ = breach(account_a, value="0.91234567890123456")
    before = Alert.objects.get(pk=alert.pk).updated_at
    again, event = breach(account_a, value="0.91234567890123456")
    assert event == "" and Alert.objects.get(pk=alert.pk).updated_at == before


def test_a_rolled_back_breach_leaves_no_alert_no_delivery_and_no_callback(
    account_a, channel, breach, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        breach(account_a)
        raise RuntimeError("the evaluator's transaction fails after raising the alert")
    assert not Alert.objects.exists() and not Delivery.objects.exists()
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_raising_the_same_breach_at_once_make_one_alert(account_a, breach):
    if connection.vendor != "mysql":
        require_service("MariaDB (DATABASE_URL): SQLite serialises writers, so there is no race to test")
    barrier = threading.Barrier(4)
    events: list[str] = []

    def evaluator(level: int) -> None:
        barrier.wait()
        try:
            events.append(breach(account_a, level=level)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluator, args=(lvl,)) for lvl in (20, 20, 30, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert Alert.objects.count() == 1
    assert events.count("opened") == 1
    # The row's level is the present one, the last writer's (a milder latch steps it down quietly),
    # and the critical is announced once at most: opened at it, or escalated to it once.
    assert Alert.objects.get().level in (Level.WARNING, Level.CRITICAL)
    assert events.count("escalated") <= 1
