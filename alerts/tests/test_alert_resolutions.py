"""Alerts end for the right reason (issue 13): re-open within the window, the present level's
limit, quiet value refreshes, positions closed or liquidated, reconciliation, and the
LIQUIDATED emergency that only a person resolves."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts import outbox, selectors, services
from alerts.models import Alert, AlertStatus, Delivery, DeliveryEvent, DeliveryStatus, Level, Resolution


@pytest.fixture
def channel(make_channel, receiver):
    return make_channel("webhook", options={"url": receiver.url}, signing_secret="s3cret", min_level=Level.WARNING)


def position_breach(account, *, rule="liq_distance", side="LONG", level=Level.WARNING, value="0.04", limit="0.05"):
    return services.alert_raise(
        account_id=account.id,
        rule=rule,
        subject=f"BTCUSDT:{side}",
        level=level,
        reason_code="LIQUIDATION_NEAR",
        value=Decimal(value),
        limit=Decimal(limit),
        mark_price=Decimal("64000"),
        details={"lower_is_worse": True},
        message_code="limit_breach",
        message_params={"rule": rule, "subject": f"BTCUSDT:{side}", "value": value, "limit": limit, "level": level},
    )


def liquidate(account, *, order_id="9001", side="LONG", qty="0.5", pnl="-812.345678"):
    return services.alert_liquidated(
        account_id=account.id,
        symbol="BTCUSDT",
        side=side,
        order_id=order_id,
        qty=Decimal(qty),
        price=Decimal("61234.5"),
        realized_pnl=Decimal(pnl),
        time_ms=1_779_000_000_000,
        last_liquidation_price=Decimal("61200"),
        last_distance=Decimal("0.0123"),
        mark_price=Decimal("61240"),
    )


# --- re-open window ------------------------------------------------------------------


def test_a_breach_back_within_the_window_reopens_the_same_row_without_a_second_page(account_a, channel, breach):
    first, _ = breach(account_a, level=Level.WARNING, value="0.85")
    services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account")

    again, event = breach(account_a, level=Level.WARNING, value="0.86")

    assert event == "" and again.pk == first.pk
    again.refresh_from_db()
    assert (again.status, again.resolution, again.reopen_count, again.open_key) == (
        AlertStatus.OPEN,
        "",
        1,
        Alert.open_key_for(account_a.id, "margin_ratio", "account"),
    )
    assert again.resolved_at is None and "re-opened at Warning" in again.note
    assert list(Delivery.objects.order_by("pk").values_list("event", "level")) == [("opened", 20), ("resolved", 20)]
    # Clearing again says nothing: nobody was told it came back.
    services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account")
    assert Delivery.objects.count() == 2
    assert Alert.objects.count() == 1


def test_a_reopen_at_a_level_above_the_one_notified_is_news(account_a, channel, breach):
    first, _ = breach(account_a, level=Level.WARNING, value="0.85")
    services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account")

    again, event = breach(account_a, level=Level.CRITICAL, value="0.95")

    assert (again.pk, event, again.reopen_count, again.notified_level) == (first.pk, "escalated", 1, Level.CRITICAL)
    assert Delivery.objects.filter(event="escalated", level=Level.CRITICAL).count() == 1


def test_a_row_resolved_longer_ago_than_the_window_is_not_reopened(account_a, channel, breach):
    first, _ = breach(account_a)
    services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account")
    Alert.objects.filter(pk=first.pk).update(resolved_at=timezone.now() - timedelta(seconds=601))

    second, event = breach(account_a)

    assert event == "opened" and second.pk != first.pk and second.reopen_count == 0


@pytest.mark.parametrize("resolution", [Resolution.MANUAL, Resolution.POSITION_CLOSED, Resolution.LIMIT_CHANGED])
def test_only_a_row_that_cleared_by_itself_reopens(account_a, risk_manager, channel, breach, resolution):
    first, _ = breach(account_a)
    if resolution == Resolution.MANUAL:
        services.alert_resolve(alert=first, by=risk_manager, note="handled")
    else:
        services.alert_clear(account_id=account_a.id, rule="margin_ratio", subject="account", resolution=resolution)
    assert Alert.objects.get(pk=first.pk).resolution == resolution

    second, event = breach(account_a)

    assert event == "opened" and second.pk != first.pk


# --- present level, value at open, worst, refresh -------------------------------------


def test_the_row_keeps_its_opening_value_and_its_worst_for_a_lower_is_worse_rule(account_a, channel):
    position_breach(account_a, value="0.04", limit="0.05")
    position_breach(account_a, level=Level.CRITICAL, value="0.018", limit="0.02")
    alert, event = position_breach(account_a, level=Level.WARNING, value="0.03", limit="0.05")

    assert event == ""
    alert.refresh_from_db()
    assert (alert.level, alert.limit, alert.value) == (Level.WARNING, Decimal("0.05"), Decimal("0.03"))
    assert (alert.value_at_open, alert.peak_value) == (Decimal("0.04"), Decimal("0.018"))


def test_a_refresh_updates_the_value_quietly_and_pushes_it(
    account_a, channel, breach, django_capture_on_commit_callbacks
):
    alert, _ = breach(account_a, level=Level.WARNING, value="0.85")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        refreshed = services.alert_refresh(
            account_id=account_a.id, rule="margin_ratio", subject="account", value=Decimal("0.8912345"), mark_price=None
        )

    refreshed.refresh_from_db()
    assert (refreshed.value, refreshed.peak_value, refreshed.mark_price) == (
        Decimal("0.8912345"),
        Decimal("0.8912345"),
        Decimal("64123.5"),
    )
    assert len(callbacks) == 1  # the push; no hand-off to a worker
    assert Delivery.objects.count() == 1
    assert services.alert_refresh(account_id=account_a.id, rule="leverage", subject="account", value=Decimal(1)) is None


# --- positions the exchange closed ----------------------------------------------------


def test_a_closed_position_resolves_its_alerts_position_closed_without_a_resolved_page(account_a, channel, breach):
    near, _ = position_breach(account_a)
    other_side, _ = position_breach(account_a, side="SHORT")
    account_wide, _ = breach(account_a)

    resolved = services.alerts_resolve_for_position(
        account_id=account_a.id, symbol="BTCUSDT", side="LONG", resolution="position_closed"
    )

    assert [a.pk for a in resolved] == [near.pk]
    near.refresh_from_db()
    assert (near.status, near.resolution, near.open_key) == (AlertStatus.RESOLVED, Resolution.POSITION_CLOSED, None)
    assert not Delivery.objects.filter(alert=near, event=DeliveryEvent.RESOLVED).exists()
    assert Alert.objects.get(pk=other_side.pk).status == AlertStatus.OPEN
    assert Alert.objects.get(pk=account_wide.pk).status == AlertStatus.OPEN


def test_waiting_pages_about_a_closed_position_are_skipped_with_the_reason(account_a, channel):
    near, _ = position_breach(account_a)
    pending = Delivery.objects.get(alert=near)

    services.alerts_resolve_for_position(
        account_id=account_a.id, symbol="BTCUSDT", side="LONG", resolution="position_closed"
    )

    pending.refresh_from_db()
    assert pending.status == DeliveryStatus.SKIPPED
    assert "position_closed" in pending.held_reason
    assert outbox.delivery_send(delivery_id=pending.pk).status == "skipped"


def test_the_race_a_page_claimed_before_the_close_is_not_sent_after_it(account_a, channel, receiver):
    """The evaluator's critical is written 3 ms before the exchange's close; a worker has already
    claimed its delivery when the close lands. The send-time check must stop it."""
    near, _ = position_breach(account_a, level=Level.CRITICAL, value="0.01", limit="0.02")
    delivery = Delivery.objects.get(alert=near)
    # A worker's claim: out of reach of the close's "skip what is waiting".
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, claimed_at=timezone.now())

    services.alerts_resolve_for_position(
        account_id=account_a.id, symbol="BTCUSDT", side="LONG", resolution="liquidated"
    )
    # The worker's lease runs out and the row is taken over, as after a crash; or the first worker
    # reaches its send: either way the row goes through delivery_send's check.
    Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    outcome = outbox.delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == "skipped"
    assert delivery.status == DeliveryStatus.SKIPPED and "liquidated" in delivery.held_reason
    assert receiver.requests == []


def test_a_delivery_created_before_the_close_and_sent_after_it_is_skipped(account_a, channel, receiver):
    near, _ = position_breach(account_a, level=Level.CRITICAL, value="0.01", limit="0.02")
    delivery = Delivery.objects.get(alert=near)
    # As if the close landed while this row was in a worker's hands: resolved, row still pending.
    Alert.objects.filter(pk=near.pk).update(
        status=AlertStatus.RESOLVED, resolution=Resolution.POSITION_CLOSED, open_key=None
    )

    # Sent when due: a position's row waits ALERT_POSITION_SETTLE_S before it may go out.
    assert outbox.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at).status == "skipped"
    assert receiver.requests == []
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SKIPPED


def test_a_position_breach_waits_the_settle_time_before_it_goes_out_but_an_emergency_does_not(
    account_a, channel, receiver, settings
):
    settings.ALERT_POSITION_SETTLE_S = 1.0
    near, _ = position_breach(account_a, level=Level.CRITICAL, value="0.01", limit="0.02")
    delivery = Delivery.objects.get(alert=near)
    waits_s = (delivery.next_attempt_at - delivery.created_at).total_seconds()
    assert 0.9 <= waits_s <= 1.1
    assert outbox.delivery_send(delivery_id=delivery.pk, now=delivery.created_at).status == "skipped"  # not due
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING and receiver.requests == []
    assert outbox.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at).status == "sent"

    emergency = services.alert_liquidated(
        account_id=account_a.id,
        symbol="ETHUSDT",
        side="BOTH",
        order_id="77",
        qty=Decimal("1"),
        price=Decimal("3000"),
        realized_pnl=Decimal("-100"),
        time_ms=1_700_000_000_000,
        last_liquidation_price=None,
        last_distance=None,
        mark_price=None,
    )
    [page] = Delivery.objects.filter(alert=emergency)
    assert page.next_attempt_at <= page.created_at + timedelta(milliseconds=50)  # at once


def test_a_liquidation_also_ends_the_symbols_margin_calls(account_a, channel):
    call, _ = services.alert_raise(
        account_id=account_a.id,
        rule="margin_call",
        subject="BTCUSDT:BOTH",
        level=Level.CRITICAL,
        reason_code="EXCHANGE_MARGIN_CALL",
        value=Decimal("12.5"),
        limit=None,
        mark_price=Decimal("61000"),
        details={},
    )

    services.alerts_resolve_for_position(
        account_id=account_a.id, symbol="BTCUSDT", side="LONG", resolution="liquidated"
    )

    call.refresh_from_db()
    assert (call.status, call.resolution) == (AlertStatus.RESOLVED, Resolution.LIQUIDATED)


# --- LIQUIDATED -----------------------------------------------------------------------


def test_a_liquidation_is_an_emergency_to_every_enabled_channel_whatever_its_filters(
    account_a, account_b, make_channel, receiver
):
    picky = make_channel(
        "webhook", name="b-only", options={"url": receiver.url}, signing_secret="s", accounts=(account_b,)
    )
    critical_only = make_channel(
        "webhook", name="crit", options={"url": receiver.url}, signing_secret="s", min_level=Level.CRITICAL
    )
    make_channel("webhook", name="off", options={"url": receiver.url}, signing_secret="s", enabled=False)

    alert = liquidate(account_a)

    assert (alert.rule, alert.reason_code, alert.level, alert.subject) == (
        "liquidated",
        "LIQUIDATED",
        Level.EMERGENCY,
        "BTCUSDT:LONG",
    )
    assert alert.value == Decimal("-812.345678") and alert.details["last_liquidation_price"] == "61200"
    assert {d.channel for d in Delivery.objects.filter(alert=alert)} == {picky, critical_only}
    assert "BTCUSDT long was liquidated" in alert.message and "-812.35 USDT" in alert.message


def test_the_same_liquidation_order_twice_raises_one_alert(account_a, channel):
    first = liquidate(account_a, order_id="9001")

    assert liquidate(account_a, order_id="9001") is None
    assert Alert.objects.filter(rule="liquidated").count() == 1
    assert Delivery.objects.filter(alert=first).count() == 1


def test_a_second_liquidation_order_adds_to_the_open_alert_without_a_second_page(account_a, channel):
    first = liquidate(account_a, order_id="9001", qty="0.5", pnl="-800")

    second = liquidate(account_a, order_id="9002", qty="0.25", pnl="-400")

    assert second.pk == first.pk
    second.refresh_from_db()
    assert second.details["order_ids"] == ["9001", "9002"] and second.details["qty"] == "0.75"
    assert second.value == Decimal("-1200")
    assert Delivery.objects.filter(alert=first).count() == 1


def test_a_liquidation_resolved_by_a_person_is_not_raised_again_by_the_reconciliation(account_a, risk_manager, channel):
    alert = liquidate(account_a, order_id="9001")
    services.alert_resolve(alert=alert, by=risk_manager, note="looked at it")

    assert liquidate(account_a, order_id="9001") is None


def test_a_liquidation_never_resolves_by_itself(account_a, channel, risk_manager):
    alert = liquidate(account_a)

    assert services.alert_clear(account_id=account_a.id, rule="liquidated", subject="BTCUSDT:LONG") is None
    services.alerts_resolve_for_position(
        account_id=account_a.id, symbol="BTCUSDT", side="LONG", resolution="liquidated"
    )
    services.alerts_reconcile(
        account_id=account_a.id, holding=set(), rules={"liquidated", "liq_distance"}, resolution="restart_reconciled"
    )
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN

    services.alert_resolve(alert=alert, by=risk_manager, note="called the trader")
    alert.refresh_from_db()
    assert (alert.status, alert.resolution, alert.resolved_by) == (
        AlertStatus.RESOLVED,
        Resolution.MANUAL,
        risk_manager,
    )


# --- reconciliation and latch seeds ---------------------------------------------------


def test_reconcile_resolves_what_the_evaluator_no_longer_holds(account_a, account_b, channel, breach):
    held, _ = breach(account_a, rule="margin_ratio")
    gone, _ = breach(account_a, rule="drawdown")
    not_a_rule_of_its, _ = breach(account_a, rule="position_drift")
    others, _ = breach(account_b, rule="drawdown")

    resolved = services.alerts_reconcile(
        account_id=account_a.id,
        holding={("margin_ratio", "account")},
        rules={"margin_ratio", "drawdown"},
        resolution="limit_changed",
    )

    assert [a.pk for a in resolved] == [gone.pk]
    assert Alert.objects.get(pk=gone.pk).resolution == Resolution.LIMIT_CHANGED
    assert Delivery.objects.filter(alert=gone, event=DeliveryEvent.RESOLVED).count() == 1
    for alert in (held, not_a_rule_of_its, others):
        assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN


def test_open_levels_seed_the_latches(account_a, account_b, channel, breach, risk_manager):
    breach(account_a, rule="margin_ratio", level=Level.CRITICAL)
    acked, _ = breach(account_a, rule="drawdown", level=Level.WARNING)
    services.alert_acknowledge(alert=acked, by=risk_manager)
    breach(account_a, rule="leverage")
    services.alert_clear(account_id=account_a.id, rule="leverage", subject="account")
    liquidate(account_a)

    levels = selectors.alerts_open_levels(account_ids=[account_a.id, account_b.id])

    assert levels == {
        account_a.id: {("margin_ratio", "account"): Level.CRITICAL, ("drawdown", "account"): Level.WARNING},
        account_b.id: {},
    }


def test_a_liquidation_order_filling_in_parts_updates_its_alert_quietly(account_a, channel, receiver):
    def report(cumulative_qty: str, pnl: str):
        return services.alert_liquidated(
            account_id=account_a.id,
            symbol="BTCUSDT",
            side="BOTH",
            order_id="991",
            qty=Decimal(cumulative_qty),
            price=Decimal("30000"),
            realized_pnl=Decimal(pnl),
            time_ms=1_700_000_000_000,
            last_liquidation_price=Decimal("30100"),
            last_distance=Decimal("0.01"),
            mark_price=Decimal("30000"),
        )

    first = report("0.2", "-400")
    second = report("0.5", "-1000")  # the same IOC order, filled on: cumulative figures
    assert second is not None and second.pk == first.pk
    assert report("0.5", "-1000") is None  # a repeat changes nothing
    [alert] = Alert.objects.filter(account=account_a, rule="liquidated")
    assert alert.details["qty"] == "0.5" and alert.value == Decimal("-1000")
    assert Delivery.objects.filter(alert=alert).count() == 1  # one page for one liquidation
