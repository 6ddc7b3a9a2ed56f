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
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import access
from accounts.models import User
from alerts import broadcast, messages, outbox
from alerts.models import POSITION_GONE, Alert, AlertStatus, DeliveryEvent, Level, Resolution, decimal_str
from alerts.selectors import alerts_open_levels  # noqa: F401 (callers may take it from the services too)
from riskdesk import metrics

AUTO_RESOLVE_NOTE = "auto-resolved: back within limit"
# Notes are evidence, in English; the page shows the resolution in the reader's language.
RESOLVE_NOTES = {
    Resolution.CLEARED: AUTO_RESOLVE_NOTE,
    Resolution.POSITION_CLOSED: "resolved: the exchange closed the position",
    Resolution.LIQUIDATED: "resolved: the exchange liquidated the position",
    Resolution.LIMIT_CHANGED: "resolved: no longer breached under the changed limits",
    Resolution.RESTART_RECONCILED: "resolved: no longer held when the evaluator restarted",
    Resolution.MANUAL: "",
}
LIQUIDATED_RULE = "liquidated"
LIQUIDATED_CODE = "liquidated"
RAISE_FIELDS = [
    "level",
    "reason_code",
    "message",
    "message_code",
    "message_params",
    "peak_value",
    "notified_level",
    "open_key",
    "resolution",
    "resolved_at",
    "resolved_by",
    "reopen_count",
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
RESOLVE_FIELDS = ["status", "resolution", "resolved_at", "resolved_by", "open_key", "note", "updated_at"]


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
    message_code: str = "",
    message_params: dict | None = None,
    reopen_window_s: int | None = None,
    every_channel: bool = False,
) -> tuple[Alert, str]:
    """Open, escalate, de-escalate or refresh the one open alert of (account, rule, subject).

    `limit` is the limit of the present `level`: a milder level moves the row down with it,
    quietly. With no open row, a row of the same triple resolved `cleared` within
    `reopen_window_s` (default settings.ALERT_REOPEN_WINDOW_S) re-opens instead of a new one.

    Returns the alert and the event: "opened", "escalated", or "" when nobody is notified
    (numbers changed, a quiet de-escalation, a re-open at a level already notified).

    `every_channel`: to every enabled channel whatever its filters (STREAM_DOWN: the desk is blind)."""
    level = Level(level)
    reading = {"value": _stored(value), "limit": _stored(limit), "mark_price": _stored(mark_price)}
    params = _json_safe(message_params or {})
    if message_code and not message:
        # The stored column is English for search and the admin; readers get their own language.
        message = messages.render(message_code, params, "en")
    words = {"reason_code": reason_code, "message": message, "message_code": message_code, "message_params": params}
    window_s = settings.ALERT_REOPEN_WINDOW_S if reopen_window_s is None else reopen_window_s
    key = Alert.open_key_for(account_id, rule, subject)
    # Two evaluators may see the same breach at once. The unique open_key lets only one
    # INSERT win; the loser's savepoint rolls back and its next pass finds and locks the row.
    for attempt in range(3):
        try:
            with transaction.atomic():
                alert, event = _raise_in_slot(
                    key, account_id, rule, subject, level, reading, words, details, window_s, every_channel
                )
        except IntegrityError:
            if attempt == 2:
                raise
        else:
            if event in ("opened", "escalated"):  # committed: the stream's frame→alert time ends here
                metrics.alert_written(evaluated_ms=details.get("time_ms"))
            return alert, event
    raise AssertionError("unreachable")


def _raise_in_slot(
    key: str,
    account_id: int | None,
    rule: str,
    subject: str,
    level: int,
    reading: dict,
    words: dict,
    details: dict,
    window_s: int,
    every_channel: bool = False,
) -> tuple[Alert, str]:
    alert = Alert.objects.select_for_update().filter(open_key=key).first()
    if alert is None:
        alert = _reopenable(account_id, rule, subject, window_s)
        if alert is None:
            alert = Alert(account_id=account_id, rule=rule, subject=subject, open_key=key)
            alert.value_at_open = reading["value"]
            event = DeliveryEvent.OPENED
        else:
            _reopen_within_window(alert, key, level)
            # Nobody is paged twice for the same level: only a worse one than ever notified is news.
            event = _news(alert, level, DeliveryEvent.ESCALATED)
    elif level > alert.level:
        event = _news(alert, level, DeliveryEvent.ESCALATED)
        if event:
            _reopen_if_acknowledged(alert, level)
        alert.escalated_at = timezone.now()
    elif level == alert.level and all(getattr(alert, name) == new for name, new in reading.items()):
        return alert, ""  # the evaluator repeats a steady breach every tick: no write, no push
    else:
        event = ""  # same or milder: the row follows the present level and its limit, nobody paged
    alert.level = level
    for name, new in words.items():
        setattr(alert, name, new)
    for name, new in reading.items():
        setattr(alert, name, new)
    alert.details = _details(details, alert)
    alert.peak_value = _worse(alert, alert.peak_value, alert.value)
    if event:
        alert.notified_level = max(level, alert.notified_level or 0)
    alert.save(update_fields=None if alert.pk is None else RAISE_FIELDS)
    _changed(alert, event, every_channel=every_channel)
    return alert, event


def _news(alert: Alert, level: int, event: str) -> str:
    return event if alert.notified_level is None or level > alert.notified_level else ""


def _reopenable(account_id: int | None, rule: str, subject: str, window_s: int) -> Alert | None:
    """The triple's last row, when it cleared (by itself, not by a person or a closed position)
    less than the window ago: the same breach coming back, not a new one."""
    if window_s <= 0:
        return None
    last = (
        Alert.objects.select_for_update()
        .filter(account_id=account_id, rule=rule, subject=subject, status=AlertStatus.RESOLVED)
        .order_by("-resolved_at", "-pk")
        .first()
    )
    if last is None or last.resolution != Resolution.CLEARED or last.resolved_at is None:
        return None
    if last.resolved_at < timezone.now() - timedelta(seconds=window_s):
        return None
    return last


def _reopen_within_window(alert: Alert, key: str, level: int) -> None:
    gap_s = int((timezone.now() - alert.resolved_at).total_seconds())
    alert.status = AlertStatus.OPEN
    alert.open_key = key
    alert.resolution = ""
    alert.resolved_at = alert.resolved_by = None
    alert.acknowledged_at = alert.acknowledged_by = None
    alert.reopen_count += 1
    # Critical "since" now, not since the first opening: the unacknowledged-escalation clock restarts.
    alert.escalated_at = timezone.now()
    # Notes are evidence: English whatever language the request that caused this runs in.
    alert.note = _append(alert.note, f"re-opened at {Level(level).name.title()}: back {gap_s} s after it cleared")


def _reopen_if_acknowledged(alert: Alert, level: int) -> None:
    if alert.status != AlertStatus.ACKNOWLEDGED:
        return
    # A worse breach needs a fresh pair of eyes: the acknowledgement was for the milder level.
    # Notes are evidence: English whatever language the request that caused this runs in.
    was, now = Level(alert.level).name.title(), Level(level).name.title()
    alert.note = _append(alert.note, f"re-opened: escalated from {was} to {now}")
    alert.status = AlertStatus.OPEN
    alert.acknowledged_at = alert.acknowledged_by = None


def alert_refresh(
    *, account_id: int | None, rule: str, subject: str, value: Decimal | None, mark_price: Decimal | None = None
) -> Alert | None:
    """Keep an open row's `value` (and worst value, mark price) current: pushed to the desk,
    never delivered. Callers throttle (the evaluator: once per ALERT_VALUE_REFRESH_S per row)."""
    value, mark_price = _stored(value), _stored(mark_price)
    with transaction.atomic():
        key = Alert.open_key_for(account_id, rule, subject)
        alert = Alert.objects.select_for_update().filter(open_key=key).first()
        if alert is None:
            return None
        fields = {"value": value, "peak_value": _worse(alert, alert.peak_value, value)}
        if mark_price is not None:
            fields["mark_price"] = mark_price
        if all(getattr(alert, name) == new for name, new in fields.items()):
            return alert
        for name, new in fields.items():
            setattr(alert, name, new)
        alert.save(update_fields=[*fields, "updated_at"])
        _changed(alert, "")
        return alert


def alert_clear(
    *,
    account_id: int | None,
    rule: str,
    subject: str,
    details: dict | None = None,
    resolution: str = Resolution.CLEARED,
) -> Alert | None:
    """The condition no longer holds: resolve the open or acknowledged alert, if any, saying why.

    A liquidation is never cleared by a machine: only a person resolves it (alert_resolve)."""
    resolution = Resolution(resolution)
    if rule == LIQUIDATED_RULE:
        return None
    with transaction.atomic():
        key = Alert.open_key_for(account_id, rule, subject)
        alert = Alert.objects.select_for_update().filter(open_key=key).first()
        if alert is None:
            return None
        if details:
            alert.details = {**alert.details, "cleared": _json_safe(details)}
        _mark_resolved(alert, by=None, note=RESOLVE_NOTES[resolution], resolution=resolution)
        alert.save(update_fields=[*RESOLVE_FIELDS, "details"])
        _changed(alert, _resolved_event(alert))
        return alert


def alerts_resolve_for_position(*, account_id: int, symbol: str, side: str, resolution: str) -> list[Alert]:
    """The exchange closed (or liquidated) this position: every open alert about it ends with that
    reason, never "cleared", and without a "resolved" notification (the trader's own close or the
    LIQUIDATED alert says it). A liquidation also ends the symbol's margin calls."""
    resolution = Resolution(resolution)
    if resolution not in POSITION_GONE:
        raise ValueError(f"a position ends position_closed or liquidated, not {resolution}")
    about = Q(subject=f"{symbol}:{side}")
    if resolution == Resolution.LIQUIDATED:
        # The exchange's margin call names its own position side (BOTH in one-way mode).
        about |= Q(rule="margin_call", subject__startswith=f"{symbol}:")
    resolved = []
    with transaction.atomic():
        rows = (
            Alert.objects.select_for_update()
            .filter(about, account_id=account_id, open_key__isnull=False)
            .exclude(rule=LIQUIDATED_RULE)
            .order_by("pk")
        )
        for alert in rows:
            _mark_resolved(alert, by=None, note=RESOLVE_NOTES[resolution], resolution=resolution)
            alert.save(update_fields=RESOLVE_FIELDS)
            _changed(alert, "")
            # Rows already waiting in the outbox are skipped now; a worker holding one re-checks at send time.
            outbox.deliveries_skip_for_position(alert=alert)
            resolved.append(alert)
    return resolved


def alerts_reconcile(
    *, account_id: int, holding: set[tuple[str, str]], rules: set[str], resolution: str
) -> list[Alert]:
    """After a restart or a limit change: open alerts of these `rules` whose (rule, subject) the
    evaluator no longer holds end with `resolution` (restart_reconciled / limit_changed)."""
    resolution = Resolution(resolution)
    stale = (
        Alert.objects.filter(account_id=account_id, rule__in=set(rules) - {LIQUIDATED_RULE}, open_key__isnull=False)
        .values_list("rule", "subject")
        .order_by("pk")
    )
    resolved = []
    for rule, subject in stale:
        if (rule, subject) in holding:
            continue
        alert = alert_clear(account_id=account_id, rule=rule, subject=subject, resolution=resolution)
        if alert is not None:
            resolved.append(alert)
    return resolved


def alert_liquidated(
    *,
    account_id: int,
    symbol: str,
    side: str,
    order_id: str | int,
    qty: Decimal,
    price: Decimal,
    realized_pnl: Decimal | None,
    time_ms: int,
    last_liquidation_price: Decimal | None,
    last_distance: Decimal | None,
    mark_price: Decimal | None,
) -> Alert | None:
    """The exchange liquidated a position: an EMERGENCY to every enabled channel, whatever their
    filters. Idempotent per exchange order id (the stream and the REST reconciliation both report
    it): a second call for the same order returns None. A further liquidation order on a position
    whose LIQUIDATED alert is still open adds to that alert (quantity, loss) without a second page.
    Never cleared by a machine; a person resolves it (resolution manual)."""
    order_id = str(order_id)
    subject = f"{symbol}:{side}"
    key = Alert.open_key_for(account_id, LIQUIDATED_RULE, subject)
    fill = {
        "order_id": order_id,
        "qty": _json_safe(_dec(qty)),
        "price": _json_safe(_dec(price)),
        "realized_pnl": _json_safe(_dec(realized_pnl)),
        "time_ms": int(time_ms),
    }
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _liquidated_in_slot(
                    key, account_id, symbol, side, subject, fill, last_liquidation_price, last_distance, mark_price
                )
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _liquidated_in_slot(
    key: str,
    account_id: int,
    symbol: str,
    side: str,
    subject: str,
    fill: dict,
    last_liquidation_price: Decimal | None,
    last_distance: Decimal | None,
    mark_price: Decimal | None,
) -> Alert | None:
    alert = Alert.objects.select_for_update().filter(open_key=key).first()
    # The position's recent LIQUIDATED rows, resolved ones included: an order recorded on any of
    # them was announced already (a person may have resolved it before the reconciliation ran).
    recent = Alert.objects.filter(account_id=account_id, rule=LIQUIDATED_RULE, subject=subject).order_by("-pk")[:50]
    known = alert is not None and fill["order_id"] in alert.details.get("order_ids", [])
    if known:
        # The same order filling on (a liquidation is IOC and may fill in parts; each report carries
        # the order's cumulative quantity and realized PnL so far): the open alert takes the newer
        # figures, quietly. The same figures again are a repeat: nothing to do.
        if fill in alert.details.get("fills", []):
            return None
    elif any(fill["order_id"] in (row.details or {}).get("order_ids", []) for row in recent):
        return None
    if alert is not None:
        # Binance may liquidate one position in several orders: one event for a person, summed.
        others = [f for f in alert.details.get("fills", []) if f["order_id"] != fill["order_id"]]
        fills = [*others, fill]
        qty = sum((Decimal(f["qty"] or 0) for f in fills), Decimal(0))
        pnl = sum((Decimal(f["realized_pnl"] or 0) for f in fills), Decimal(0))
        alert.details = {**alert.details, "fills": fills, "order_ids": [f["order_id"] for f in fills]}
        alert.details.update({"qty": _json_safe(qty), "realized_pnl": _json_safe(pnl)})
        alert.message_params = {**alert.message_params, "qty": _json_safe(qty), "realized_pnl": _json_safe(pnl)}
        alert.message = messages.render(LIQUIDATED_CODE, alert.message_params, "en")
        alert.value = alert.peak_value = _stored(pnl)
        alert.save(update_fields=["details", "message_params", "message", "value", "peak_value", "updated_at"])
        _changed(alert, "")
        return alert
    params = {
        "symbol": symbol,
        "side": side,
        "qty": fill["qty"],
        "price": fill["price"],
        "realized_pnl": fill["realized_pnl"],
        "time_ms": fill["time_ms"],
        "last_liquidation_price": _json_safe(_dec(last_liquidation_price)),
        "last_distance": _json_safe(_dec(last_distance)),
        "tick": _json_safe(_tick(symbol)),  # prices in the message to the symbol's tick
    }
    pnl = _stored(_dec(fill["realized_pnl"]))
    alert = Alert(
        account_id=account_id,
        rule=LIQUIDATED_RULE,
        subject=subject,
        open_key=key,
        level=Level.EMERGENCY,
        reason_code="LIQUIDATED",
        value=pnl,
        value_at_open=pnl,
        peak_value=pnl,
        limit=None,
        mark_price=_stored(_dec(mark_price)),
        message_code=LIQUIDATED_CODE,
        message_params=params,
        message=messages.render(LIQUIDATED_CODE, params, "en"),
        notified_level=Level.EMERGENCY,
    )
    alert.details = {**params, "fills": [fill], "order_ids": [fill["order_id"]]}
    alert.save()
    _changed(alert, DeliveryEvent.OPENED, every_channel=True)
    return alert


def _tick(symbol: str) -> Decimal | None:
    from marketdata.models import Symbol

    return Symbol.objects.filter(name=symbol).values_list("tick_size", flat=True).first()


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
    _mark_resolved(alert, by=by, note=note, resolution=Resolution.MANUAL)
    alert.save(update_fields=RESOLVE_FIELDS)
    _changed(alert, _resolved_event(alert))
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
    alert.notified_level = Level.EMERGENCY
    alert.escalated_at = now
    alert.details = {**alert.details, "level": int(Level.EMERGENCY), "unacknowledged_for_s": waited_s}
    alert.note = _append(alert.note, f"escalated to Emergency: unacknowledged for {waited_s} s")
    alert.save(update_fields=["level", "notified_level", "escalated_at", "details", "note", "updated_at"])
    _changed(alert, DeliveryEvent.ESCALATED)
    return 1


# --- helpers ---------------------------------------------------------------------------


def _changed(alert: Alert, event: str, *, every_channel: bool = False) -> None:
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
        outbox.deliveries_route(alert=alert, event=event, every_channel=every_channel)


def _stored(value: Decimal | None) -> Decimal | None:
    """A number as its column stores it (12 decimal places, half away from zero as MariaDB rounds):
    the row in memory then equals the row in the database, and a steady breach whose value has
    more decimals than the column compares equal to what was saved (no write, no push)."""
    if value is None:
        return None
    return Decimal(value).quantize(STORED_PLACES, rounding=ROUND_HALF_UP, context=STORED_CONTEXT)


def _mark_resolved(alert: Alert, *, by: User | None, note: str, resolution: str) -> None:
    alert.status = AlertStatus.RESOLVED
    alert.resolution = resolution
    alert.resolved_at = timezone.now()
    alert.resolved_by = by
    alert.open_key = None  # frees the (account, rule, subject) slot for a future breach
    alert.note = _append(alert.note, note)


def _resolved_event(alert: Alert) -> str:
    """ "resolved" is news only after something was said since the last one: a row that
    re-opened quietly (same level as already notified) and clears again stays quiet too."""
    last = alert.deliveries.exclude(event=DeliveryEvent.DIGEST).order_by("-created_at", "-pk").first()
    if last is not None and last.event == DeliveryEvent.RESOLVED:
        return ""
    return DeliveryEvent.RESOLVED


def _worse(alert: Alert, peak: Decimal | None, value: Decimal | None) -> Decimal | None:
    """The worse of two readings for this row's rule: the lower one when lower is worse."""
    if value is None:
        return peak
    if peak is None:
        return value
    lower = messages.lower_is_worse(alert.rule, alert.details or {})
    return min(peak, value) if lower else max(peak, value)


def _dec(value) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


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
