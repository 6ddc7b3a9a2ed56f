"""The notification outbox: which channels hear of an alert event, and how one Delivery
row is claimed, sent, retried, rate-limited and folded into a digest.

The rows are the queue; Celery only carries ids (see docs/NOTIFICATIONS.md for the
exactly-once argument). A worker owns a row from the conditional UPDATE that claims it
until it writes the outcome, fenced by the attempt number the claim produced: a worker
that lost its lease cannot overwrite its successor's result.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts import access, crypto
from accounts.models import User
from alerts import notifiers
from alerts.models import (
    POSITION_GONE,
    Alert,
    AlertStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Level,
    NotificationChannel,
)

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 5
BACKOFF_CAP_S = 600
RETRY_AFTER_CAP_S = 3600  # a receiver asking for more than an hour is asking to be paged, not obeyed blindly
DEFAULT_MAX_ATTEMPTS = 8
RATE_WINDOW = timedelta(seconds=60)
SWEEP_BATCH = 500
# No (account, rule, subject) sends more than this many messages to one channel in the window;
# the rest fold into the channel's digest. EMERGENCY rows are exempt (see _through_rate_limit).
SUBJECT_BUDGET = 2
SUBJECT_WINDOW = timedelta(minutes=10)
RATE_REASON = "held: the channel's messages-per-minute limit"
BUDGET_REASON = "held: this subject already sent 2 messages to the channel in 10 minutes"
# Events about a position that are moot once the exchange closed it ("resolved" is not: it is
# simply not routed for those resolutions).
SILENCED_EVENTS = (DeliveryEvent.OPENED, DeliveryEvent.ESCALATED)
POSITION_SUBJECT = re.compile(r"[A-Z0-9]+:(BOTH|LONG|SHORT)")


@dataclass(frozen=True)
class SendOutcome:
    status: str  # sent | retry | failed | deferred | skipped
    delivery_id: int | None = None  # the row that went out (a digest when the delivery was folded)
    retry_in_s: float | None = None


# --- routing ---------------------------------------------------------------------------


def deliveries_route(*, alert: Alert, event: str, every_channel: bool = False) -> list[Delivery]:
    """A pending row for every enabled channel that wants this alert event, written in the
    alert's transaction; the hand-off to a worker waits for the commit.

    `every_channel`: a liquidation goes to every enabled channel, whatever its minimum level and
    account filter say: nobody filtered out warnings meaning to miss a liquidated account."""
    channels = NotificationChannel.objects.filter(enabled=True)
    if not every_channel:
        channels = channels.filter(min_level__lte=alert.level)
        if alert.account_id is None:
            channels = channels.filter(accounts__isnull=True)
        else:
            channels = channels.filter(Q(accounts__isnull=True) | Q(accounts=alert.account_id)).distinct()
    channels = list(channels)
    if not channels:  # nothing to route: no snapshot, no account name to read
        return []
    now = timezone.now()
    due = now + timedelta(seconds=_settle_s(alert, event))
    snapshot = {
        **alert.snapshot(),
        "account": alert.account.name if alert.account_id else None,
        "event": event,
        "event_at": now.isoformat(),
    }
    deliveries = [
        Delivery.objects.create(
            alert=alert, channel=channel, event=event, level=alert.level, snapshot=snapshot, next_attempt_at=due
        )
        for channel in channels
    ]
    for delivery in deliveries:
        _hand_off_on_commit(delivery.pk, countdown_s=(due - now).total_seconds())
    return deliveries


def _settle_s(alert: Alert, event: str) -> float:
    """How long an opened/escalated message about a position waits before it goes out.

    The exchange's margin call, the desk's own critical and the liquidation that ends them can
    arrive within milliseconds of one another; sent at once, the first two page someone about a
    position that was already gone (seen twice in the crash replay, 3 to 23 ms after the exchange
    liquidated it). Held for ALERT_POSITION_SETTLE_S, such a row is skipped at send time once the
    liquidation (or close) has resolved its alert. The desk's pages get the alert at once; only
    channels wait. Emergencies never wait."""
    if event not in SILENCED_EVENTS or alert.level >= Level.EMERGENCY or not is_position_subject(alert.subject):
        return 0.0
    return float(settings.ALERT_POSITION_SETTLE_S)


def is_position_subject(subject: str) -> bool:
    """A position's subject ("BTCUSDT:BOTH", "ETHUSDT:LONG"), as the evaluator and the margin call name it."""
    return POSITION_SUBJECT.fullmatch(subject or "") is not None


def _hand_off_on_commit(delivery_id: int, *, countdown_s: float = 0.0) -> None:
    from alerts.tasks import deliver_delivery_task  # tasks import this module

    # robust: the row is committed and the sweep will find it; a broker outage must not
    # surface as an error in whoever raised the alert.
    if countdown_s > 0:
        transaction.on_commit(
            lambda: deliver_delivery_task.apply_async((delivery_id,), countdown=countdown_s), robust=True
        )
    else:
        transaction.on_commit(lambda: deliver_delivery_task.delay(delivery_id), robust=True)


def deliveries_skip_for_position(*, alert: Alert) -> int:
    """The exchange closed the alert's position: its opened/escalated rows still waiting are not
    sent (recorded as skipped, with the reason). A worker already holding one re-checks at send
    time (`_position_gone`), so the row it holds is skipped there."""
    return Delivery.objects.filter(
        alert=alert,
        event__in=SILENCED_EVENTS,
        status=DeliveryStatus.PENDING,
        claimed_at__isnull=True,
    ).update(
        status=DeliveryStatus.SKIPPED,
        held_reason=_gone_reason(alert),
        rate_limited=False,
        next_attempt_at=None,
    )


def _gone_reason(alert: Alert) -> str:
    return f"not sent: the alert was resolved {alert.resolution} before it went out"


def _position_gone(delivery: Delivery) -> bool:
    """True for an opened/escalated row about a position the exchange has since closed: saying
    "critical" about a position that no longer exists pages someone for nothing."""
    alert = delivery.alert
    if alert is None or delivery.event not in SILENCED_EVENTS:
        return False
    alert.refresh_from_db(fields=["status", "resolution"])
    return alert.status == AlertStatus.RESOLVED and alert.resolution in POSITION_GONE


# --- sending ---------------------------------------------------------------------------


def delivery_send(*, delivery_id: int, now: datetime | None = None) -> SendOutcome:
    """Claim the row, respect the channel's rate limit, send, and record what happened."""
    now = now or timezone.now()
    attempt = _claim(delivery_id, now)
    if attempt is None:
        return SendOutcome("skipped", delivery_id)
    delivery = Delivery.objects.select_related("channel", "alert").get(pk=delivery_id)
    if _position_gone(delivery):
        _finish(
            delivery,
            attempt,
            status=DeliveryStatus.SKIPPED,
            held_reason=_gone_reason(delivery.alert),
            rate_limited=False,
            next_attempt_at=None,
        )
        return SendOutcome("skipped", delivery_id)
    if attempt > _max_attempts(delivery.channel):
        # Only reachable when workers keep dying on this row (each death costs an attempt).
        _finish(delivery, attempt, status=DeliveryStatus.FAILED, last_error=f"gave up after {attempt - 1} attempts")
        return SendOutcome("failed", delivery_id)
    gate = _through_rate_limit(delivery, attempt, now)
    if isinstance(gate, SendOutcome):
        return gate
    delivery, attempt = gate
    try:
        notifiers.send(delivery.channel, _render(delivery), idempotency_key=str(delivery.idempotency_key))
    except notifiers.DeliveryError as exc:
        return _after_failure(delivery, attempt, exc, now)
    except Exception as exc:  # a formatter bug must not leave the row 'sending' until every lease runs out
        log.exception("delivery %s: unexpected error while sending", delivery.pk)
        return _after_failure(delivery, attempt, notifiers.DeliveryError(type(exc).__name__, retryable=True), now)
    _finish(delivery, attempt, status=DeliveryStatus.SENT, sent_at=now, last_error="", next_attempt_at=None)
    return SendOutcome("sent", delivery.pk)


def _claim(delivery_id: int, now: datetime) -> int | None:
    """Take the row with one conditional UPDATE; the attempt number it yields is the fencing
    token for every later write. None: done, not due, or another worker holds a live lease."""
    channel = NotificationChannel.objects.filter(deliveries=delivery_id).first()
    if channel is None:
        return None
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    waiting = Q(status=DeliveryStatus.PENDING, claimed_at__isnull=True) & due
    abandoned = Q(status=DeliveryStatus.SENDING, claimed_at__lt=now - timedelta(seconds=lease_s(channel)))
    claimed = Delivery.objects.filter(waiting | abandoned, pk=delivery_id).update(
        status=DeliveryStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1
    )
    if claimed != 1:
        return None
    return Delivery.objects.values_list("attempts", flat=True).get(pk=delivery_id)


def _finish(delivery: Delivery, attempt: int, **fields) -> bool:
    """Write the outcome only while the claim is still ours."""
    if "claimed_at" not in fields and fields.get("status") != DeliveryStatus.SENT:
        fields["claimed_at"] = None
    written = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=attempt).update(**fields)
    if not written:
        log.warning(
            "delivery %s: lease lost before attempt %s finished; the newer attempt decides", delivery.pk, attempt
        )
    return bool(written)


def _after_failure(delivery: Delivery, attempt: int, exc: notifiers.DeliveryError, now: datetime) -> SendOutcome:
    if not exc.retryable or attempt >= _max_attempts(delivery.channel):
        _finish(delivery, attempt, status=DeliveryStatus.FAILED, last_error=exc.message, next_attempt_at=None)
        log.warning("delivery %s to %s failed for good: %s", delivery.pk, delivery.channel, exc.message)
        return SendOutcome("failed", delivery.pk)
    delay_s = backoff_s(attempt)
    if exc.retry_after_s is not None:
        delay_s = min(max(exc.retry_after_s, 1.0), RETRY_AFTER_CAP_S)
    next_at = now + timedelta(seconds=delay_s)
    _finish(delivery, attempt, status=DeliveryStatus.PENDING, last_error=exc.message, next_attempt_at=next_at)
    return SendOutcome("retry", delivery.pk, delay_s)


def backoff_s(attempt: int) -> float:
    """5 s, 10 s, 20 s … capped at 10 minutes, after the given (1-based) failed attempt."""
    return float(min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_CAP_S))


def _render(delivery: Delivery) -> notifiers.Message:
    channel, reference = delivery.channel, str(delivery.idempotency_key)
    if delivery.event == DeliveryEvent.DIGEST:
        folded = [(d.snapshot, d.event, d.level) for d in delivery.folded.order_by("created_at", "pk")]
        return notifiers.render_digest(folded=folded, language=channel.language, reference=reference)
    return notifiers.render_alert(
        snapshot=delivery.snapshot,
        event=delivery.event,
        level=delivery.level,
        language=channel.language,
        reference=reference,
    )


# --- rate limit and digest -----------------------------------------------------------


def _through_rate_limit(delivery: Delivery, attempt: int, now: datetime) -> tuple[Delivery, int] | SendOutcome:
    """Room in the channel's minute and in the subject's budget: send this row, or a digest of it
    and the rows held before it. No room: hold it until the window opens. Digests pass unchecked;
    there is at most one per opening and it is what keeps the surplus from being lost.

    An EMERGENCY (a liquidation, a critical nobody acknowledged) is never held and goes out on its
    own: it passes both limits, and the rows held before it wait for the next ordinary send rather
    than bury it in a digest. It still counts as a send in the channel's minute."""
    channel = delivery.channel
    if delivery.event == DeliveryEvent.DIGEST or delivery.level >= Level.EMERGENCY:
        return delivery, attempt
    with transaction.atomic():
        # One decision per channel at a time, so two workers cannot both take the last slot.
        NotificationChannel.objects.select_for_update().filter(pk=channel.pk).first()
        opens_at, reason = None, ""
        if channel.rate_limit_per_minute:
            recent = _sends_in_window(channel, now, exclude_id=delivery.pk)
            if len(recent) >= channel.rate_limit_per_minute:
                opens_at, reason = min(recent) + RATE_WINDOW, RATE_REASON
        if opens_at is None and delivery.alert_id is not None:
            # The subject's own budget: a flapping breach must not page the same channel again and
            # again. Held until its window opens; any send on the channel before that folds it in.
            mine = _subject_sends(delivery, now)
            if len(mine) >= SUBJECT_BUDGET:
                opens_at, reason = min(mine) + SUBJECT_WINDOW, BUDGET_REASON
        if opens_at is not None:
            _finish(
                delivery,
                attempt,
                status=DeliveryStatus.PENDING,
                attempts=F("attempts") - 1,
                rate_limited=True,
                held_reason=reason,
                next_attempt_at=opens_at,
            )
            return SendOutcome("deferred", delivery.pk, max((opens_at - now).total_seconds(), 0.0))
        held = list(
            Delivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING, rate_limited=True)
            .exclude(pk=delivery.pk)
            .values_list("pk", flat=True)
        )
        # A row the budget held stands for what happened to its subject meanwhile: when its window
        # opens it goes out as a digest (of itself at least), never as a late lone "opened".
        if not held and delivery.held_reason != BUDGET_REASON:
            return delivery, attempt
        return _fold_into_digest(delivery, attempt, held, now), 1


def _subject_sends(delivery: Delivery, now: datetime) -> list[datetime]:
    """When the channel's messages about this delivery's (account, rule, subject) went out (or
    began to) in the last SUBJECT_WINDOW. Digests are the channel's, not a subject's."""
    alert = delivery.alert
    start = now - SUBJECT_WINDOW
    same = Delivery.objects.filter(
        channel_id=delivery.channel_id,
        alert__account_id=alert.account_id,
        alert__rule=alert.rule,
        alert__subject=alert.subject,
    ).exclude(pk=delivery.pk)
    sent = same.filter(status=DeliveryStatus.SENT, sent_at__gt=start).values_list("sent_at", flat=True)
    sending = same.filter(status=DeliveryStatus.SENDING, claimed_at__gt=start).values_list("claimed_at", flat=True)
    return [*sent, *sending]


def _sends_in_window(channel: NotificationChannel, now: datetime, *, exclude_id: int) -> list[datetime]:
    """When each message the channel sent, or is sending, in the last minute went out."""
    start = now - RATE_WINDOW
    mine = Delivery.objects.filter(channel=channel).exclude(pk=exclude_id)
    sent = mine.filter(status=DeliveryStatus.SENT, sent_at__gt=start).values_list("sent_at", flat=True)
    sending = mine.filter(status=DeliveryStatus.SENDING, claimed_at__gt=start).values_list("claimed_at", flat=True)
    return [*sent, *sending]


def _fold_into_digest(delivery: Delivery, attempt: int, held: list[int], now: datetime) -> Delivery:
    digest = Delivery.objects.create(
        alert=None,
        channel=delivery.channel,
        event=DeliveryEvent.DIGEST,
        level=delivery.level,
        status=DeliveryStatus.SENDING,
        claimed_at=now,
        attempts=1,
        next_attempt_at=now,
    )
    # Conditional again: a held row another worker claimed in the meantime goes out on its own.
    mine = Q(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=attempt)
    still_held = Q(pk__in=held, status=DeliveryStatus.PENDING, rate_limited=True)
    Delivery.objects.filter(mine | still_held).update(
        status=DeliveryStatus.DIGESTED, digest=digest, claimed_at=None, next_attempt_at=None
    )
    levels = list(digest.folded.values_list("level", flat=True))
    digest.level = max(levels, default=delivery.level)
    digest.snapshot = {"folded": len(levels)}
    digest.save(update_fields=["level", "snapshot"])
    return digest


# --- the sweep, manual retry, test message, secrets ------------------------------------


def deliveries_due(*, now: datetime | None = None) -> list[int]:
    """Rows a worker should try now: pending and due (a lost hand-off, a retry, a held
    row whose window opened) or 'sending' past its lease (a worker died mid-send)."""
    now = now or timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    pending = list(
        Delivery.objects.filter(due, status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    sending = Delivery.objects.filter(status=DeliveryStatus.SENDING).select_related("channel")
    abandoned = [d.pk for d in sending if d.claimed_at < now - timedelta(seconds=lease_s(d.channel))]
    return pending + abandoned


@transaction.atomic
def delivery_retry(*, delivery: Delivery, by: User) -> Delivery:
    """A person fixed what made the delivery fail: give it a fresh series of attempts."""
    if not access.is_risk_manager(by):
        raise PermissionDenied("Only a risk manager may retry deliveries.")
    updated = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, attempts=0, claimed_at=None, next_attempt_at=timezone.now()
    )
    if updated:
        _hand_off_on_commit(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def channel_send_test(*, channel: NotificationChannel, by: User) -> None:
    """Send a test message now, through the same sender; raises DeliveryError to show."""
    if not access.is_risk_manager(by):
        raise PermissionDenied("Only a risk manager may send test messages.")
    notifiers.send(channel, notifiers.render_test(channel=channel), idempotency_key=str(uuid.uuid4()))


def channel_set_secrets(
    *, channel: NotificationChannel, token: str = "", signing_secret: str = ""
) -> NotificationChannel:
    """Encrypt the channel's token and/or signing secret; an empty value keeps the stored one.
    The caller saves the channel (like accounts.services.account_set_credentials)."""
    secrets = channel.secrets()
    if token.strip():
        secrets["token"] = token.strip()
    if signing_secret.strip():
        secrets["signing_secret"] = signing_secret.strip()
    if secrets:
        channel.secret_encrypted = crypto.encrypt(json.dumps(secrets))
    return channel


def lease_s(channel: NotificationChannel) -> float:
    """How long a claim holds before another worker may take the row over: well past the
    request timeout, so a slow but live worker is not doubled."""
    options = channel.settings or {}
    return float(options.get("lease_s", max(60.0, 3 * notifiers.timeout_s(options))))


def _max_attempts(channel: NotificationChannel) -> int:
    return int((channel.settings or {}).get("max_attempts", DEFAULT_MAX_ATTEMPTS))
