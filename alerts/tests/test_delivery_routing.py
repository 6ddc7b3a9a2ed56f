"""outbox.deliveries_route: one pending row per enabled channel whose minimum level the
alert reaches and whose account list is empty or names the alert's account."""

from __future__ import annotations

from alerts.models import Delivery, DeliveryStatus, Level


def channels_notified() -> set[str]:
    return set(Delivery.objects.values_list("channel__name", flat=True))


def test_a_channel_hears_only_levels_at_or_above_its_minimum(make_channel, account_a, breach):
    make_channel("webhook", name="all", min_level=Level.INFO, options={"url": "http://x"}, signing_secret="s")
    make_channel("webhook", name="critical", min_level=Level.CRITICAL, options={"url": "http://x"}, signing_secret="s")

    breach(account_a, level=Level.WARNING)
    assert channels_notified() == {"all"}

    breach(account_a, level=Level.CRITICAL)
    assert sorted(Delivery.objects.values_list("channel__name", "event")) == [
        ("all", "escalated"),
        ("all", "opened"),
        ("critical", "escalated"),
    ]


def test_a_channel_limited_to_accounts_hears_only_those(make_channel, account_a, account_b, breach):
    make_channel("wecom", name="desk", token="t")
    make_channel("wecom", name="only-a", token="t", accounts=(account_a,))

    breach(account_b)
    assert channels_notified() == {"desk"}

    breach(account_a)
    assert set(Delivery.objects.filter(alert__account=account_a).values_list("channel__name", flat=True)) == {
        "desk",
        "only-a",
    }


def test_a_desk_wide_alert_goes_to_channels_for_all_accounts(make_channel, account_a, breach):
    make_channel("wecom", name="desk", token="t")
    make_channel("wecom", name="only-a", token="t", accounts=(account_a,))

    breach(None, rule="stream_stale")

    assert channels_notified() == {"desk"}


def test_a_disabled_channel_hears_nothing(make_channel, account_a, breach):
    make_channel("wecom", name="off", token="t", enabled=False)

    breach(account_a, level=Level.EMERGENCY)

    assert not Delivery.objects.exists()


def test_each_row_is_pending_due_now_and_freezes_the_alert_at_its_event(make_channel, account_a, breach):
    make_channel("wecom", token="t")

    alert, _ = breach(account_a, level=Level.WARNING, value="0.85")

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.event, delivery.level) == (
        DeliveryStatus.PENDING,
        0,
        "opened",
        Level.WARNING,
    )
    assert delivery.next_attempt_at is not None and delivery.claimed_at is None
    assert delivery.snapshot["id"] == alert.pk and delivery.snapshot["account"] == "acct-a"
    assert (delivery.snapshot["value"], delivery.snapshot["limit"]) == ("0.85", "0.8")
