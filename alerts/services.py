"""The alert lifecycle: raise, escalate, clear, acknowledge, resolve.

Every change is written in the caller's transaction together with the outbox rows
it causes (alerts/outbox.py); the Celery hand-off (carrying ids) and the live push
(carrying the row as saved) run on commit, so nobody is told about a state that was
rolled back.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import access
from accounts.models import User
from alerts import broadcast, outbox
from alerts.models import Alert, AlertStatus, DeliveryEvent, Level, decimal_str

AUTO_RESOLVE_NOTE = "auto-resolved: back within limit"
RAISE_FIELDS = [
    "level",
    "reason_code",
    "message",
    "value",
    "limit",
    "mark_price",
    "details",
    "status",
    "acknowledged_at",
    "acknowledged_by",
    "escalated_at",
    "note",
    "updated_at",
]
STORED_PLACES = Decimal(1).scaleb(-Alert._meta.get_field("value").decimal_places)
# The column's own precision: the default context's 28 digits cannot hold 17 integer digits and 12
# decimals, and quantize would raise where the column stores the number.
STORED_CONTEXT = Context(prec=Alert._meta.get_field("value").max_digits)
RESOLVE_FIELDS = ["status", "resolved_at", "resolved_by", "open_key", "note", "updated_at"]


def alert_raise(
    *,
    account_id: int | None,
    rule: str,
    subject: str,
    level: int,
    reason_code: str,
    value: Decimal | None,
    limit: Decimal | None,
    mark_price: Decimal | None,
    details: dict,
    message: str = "",
) -> tuple[Alert, str]:
    """Open, escalate or refresh the one open alert of (account, rule, subject).

    Returns the alert and the event: "opened", "escalated", or "" when only the
    numbers changed (no notification for that)."""
    level = Level(level)
    reading = {"value": _stored(value), "limit": _stored(limit), "mark_price": _stored(mark_price)}
    words = {"reason_code": reason_code, "message": message}
    key = Alert.open_key_for(account_id, rule, subject)
    # Two evaluators may see the same breach at once. The unique open_key lets only one
    # INSERT win; the loser's savepoint rolls back and its next pass finds and locks the row.
    for attempt in range(3):
        try:
            with transaction.atomic():
                alert, event = _raise_in_slot(key, account_id, rule, subject, level, reading, words, details)
        except IntegrityError:
            if attempt == 2:
                raise
        else:
            return alert, event
    raise AssertionError("unreachable")


def _raise_in_slot(
    key: str, account_id: int | None, rule: str, subject: str, level: int, reading: dict, words: dict, details: dict
) -> tuple[Alert, str]:
    alert = Alert.objects.select_for_update().filter(open_key=key).first()
    if alert is None:
        alert, event = Alert(account_id=account_id, rule=rule, subject=subject, open_key=key), DeliveryEvent.OPENED
    elif level > alert.level:
        event = DeliveryEvent.ESCALATED
        _reopen_if_acknowledged(alert, level)
        alert.escalated_at = timezone.now()
    elif all(getattr(alert, name) == new for name, new in reading.items()):
        return alert, ""  # the evaluator repeats a steady breach every tick: no write, no push
    else:
        event = ""  # same or milder: fresher numbers, same level and reason, nobody paged
    if event:
        alert.level = level
        for name, new in words.items():
            setattr(alert, name, new)
    for name, new in reading.items():
        setattr(alert, name, new)
    alert.details = _details(details, alert)
    alert.save(update_fields=None if alert.pk is None else RAISE_FIELDS)
    _changed(alert, event)
    return alert, event


def _reopen_if_acknowledged(alert: Alert, level: int) -> None:
    if alert.status != AlertStatus.ACKNOWLEDGED:
        return
    # A worse breach needs a fresh pair of eyes: the acknowledgement was for the milder level.
    # Notes are evidence: English whatever language the request that caused this runs in.
    was, now = Level(alert.level).name.title(), Level(level).name.title()
    alert.note = _append(alert.note, f"re-opened: escalated from {was} to {now}")
    alert.status = AlertStatus.OPEN
    alert.acknowledged_at = alert.acknowledged_by = None


def alert_clear(*, account_id: int | None, rule: str, subject: str, details: dict | None = None) -> Alert | None:
    """The value is back within its limit: resolve the open or acknowledged alert, if any."""
    with transaction.atomic():
        key = Alert.open_key_for(account_id, rule, subject)
        alert = Alert.objects.select_for_update().filter(open_key=key).first()
        if alert is None:
            return None
        if details:
            alert.details = {**alert.details, "cleared": _json_safe(details)}
        _mark_resolved(alert, by=None, note=AUTO_RESOLVE_NOTE)
        alert.save(update_fields=[*RESOLVE_FIELDS, "details"])
        _changed(alert, DeliveryEvent.RESOLVED)
        return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: User, note: str = "") -> Alert:
    _require_risk_manager(by)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != AlertStatus.OPEN:
        return alert
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = by
    alert.note = _append(alert.note, note)
    alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "note", "updated_at"])
    _changed(alert, "")
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, by: User, note: str = "") -> Alert:
    _require_risk_manager(by)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        return alert
    _mark_resolved(alert, by=by, note=note)
    alert.save(update_fields=RESOLVE_FIELDS)
    _changed(alert, DeliveryEvent.RESOLVED)
    return alert


def alerts_escalate_unacknowledged(*, now: datetime | None = None) -> int:
    """An open critical alert nobody acknowledged within ALERT_ESCALATE_AFTER_S becomes an
    emergency. Beat may run this twice at once: the re-check under the row lock makes
    the second run a no-op."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.ALERT_ESCALATE_AFTER_S)
    # Critical since escalated_at when it got there by escalation, else since it opened.
    overdue = Alert.objects.annotate(critical_since=Coalesce("escalated_at", "opened_at")).filter(
        status=AlertStatus.OPEN, level=Level.CRITICAL, critical_since__lte=cutoff
    )
    escalated = 0
    for alert_id in overdue.values_list("id", flat=True):
        escalated += _escalate_one_unacknowledged(alert_id, now)
    return escalated


@transaction.atomic
def _escalate_one_unacknowledged(alert_id: int, now: datetime) -> int:
    alert = Alert.objects.select_for_update().filter(pk=alert_id, status=AlertStatus.OPEN, level=Level.CRITICAL).first()
    if alert is None:
        return 0
    waited_s = int((now - (alert.escalated_at or alert.opened_at)).total_seconds())
    alert.level = Level.EMERGENCY
    alert.escalated_at = now
    alert.details = {**alert.details, "level": int(Level.EMERGENCY), "unacknowledged_for_s": waited_s}
    alert.note = _append(alert.note, f"escalated to Emergency: unacknowledged for {waited_s} s")
    alert.save(update_fields=["level", "escalated_at", "details", "note", "updated_at"])
    _changed(alert, DeliveryEvent.ESCALATED)
    return 1


# --- helpers ---------------------------------------------------------------------------


def _changed(alert: Alert, event: str) -> None:
    """Outbox rows now, in this transaction; the push and the hand-off once it commits."""
    # The row as just saved is what the commit makes visible (its numbers are _stored() ones, its
    # times set by save()), so the push carries it as it is: re-reading it after the commit cost the
    # alert's way to the desk another round trip (bench/alerts.py).
    snapshot = alert.snapshot()
    # The push first: on-commit callbacks run in order, and the desk on screen is the
    # latency that matters; the channels' broker hand-off can wait a millisecond.
    # robust: the alert is committed; a broker or channel layer hiccup must not turn into
    # an exception in the evaluator. The deliver sweep picks up what was not handed off.
    transaction.on_commit(lambda: broadcast.alert_changed(snapshot), robust=True)
    if event:
        outbox.deliveries_route(alert=alert, event=event)


def _stored(value: Decimal | None) -> Decimal | None:
    """A number as its column stores it (12 decimal places, half away from zero as MariaDB rounds):
    the row in memory then equals the row in the database, and a steady breach whose value has
    more decimals than the column compares equal to what was saved (no write, no push)."""
    if value is None:
        return None
    return Decimal(value).quantize(STORED_PLACES, rounding=ROUND_HALF_UP, context=STORED_CONTEXT)


def _mark_resolved(alert: Alert, *, by: User | None, note: str) -> None:
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = timezone.now()
    alert.resolved_by = by
    alert.open_key = None  # frees the (account, rule, subject) slot for a future breach
    alert.note = _append(alert.note, note)


def _require_risk_manager(user: User) -> None:
    if not access.is_risk_manager(user):
        raise PermissionDenied("Only a risk manager may acknowledge or resolve alerts.")


def _append(existing: str, note: str) -> str:
    return f"{existing}\n{note}".strip() if note else existing


def _details(details: dict, alert: Alert) -> dict:
    """The caller's details plus the numbers the alert stands on, so the JSON alone tells the story."""
    return {
        **_json_safe(details),
        "reason_code": alert.reason_code,
        "value": decimal_str(alert.value),
        "limit": decimal_str(alert.limit),
        "level": int(alert.level),
        "mark_price": decimal_str(alert.mark_price),
        "at": timezone.now().isoformat(),
    }


def _json_safe(value):
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return value
