from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from alerts.models import Alert, AlertStatus


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: User, note: str = "") -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != AlertStatus.OPEN:
        return alert
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = by
    if note:
        alert.note = f"{alert.note}\n{note}".strip()
    alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "note", "updated_at"])
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, by: User | None, note: str = "") -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        return alert
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = timezone.now()
    alert.resolved_by = by
    alert.open_key = None  # frees the (account, rule, subject) slot for a future breach
    if note:
        alert.note = f"{alert.note}\n{note}".strip()
    alert.save(update_fields=["status", "resolved_at", "resolved_by", "open_key", "note", "updated_at"])
    return alert
