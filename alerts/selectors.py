"""Which alerts a user may see, and the filtered lists the alerts page shows.

Visibility is the accounts' (accounts.access): an alert of an account you cannot see does not
exist for you (404). Desk-wide alerts (no account: a silent market feed) concern every desk
member, as on the socket, where every member joins the "desk" group.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from accounts import access
from accounts.models import User
from alerts.models import Alert, AlertStatus, Level

HISTORY_LIMIT = 200  # the page shows the newest; older ones are in the admin


def alerts_visible_to(user: User) -> QuerySet[Alert]:
    if not access.is_desk_member(user):
        return Alert.objects.none()
    if access.can_see_all_accounts(user):
        return Alert.objects.all()
    return Alert.objects.filter(Q(account__in=access.accounts_visible_to(user)) | Q(account__isnull=True))


def get_alert_for_user(user: User, alert_id: int | str) -> Alert:
    try:
        return alerts_visible_to(user).get(pk=int(alert_id))
    except (Alert.DoesNotExist, ValueError, TypeError):
        raise Http404("No such alert.") from None


@dataclass(frozen=True)
class AlertFilter:
    level: int | None = None
    account_id: int | None = None
    status: str = "active"  # active (open + acknowledged) | open | acknowledged | resolved | all


def alert_list(user: User, f: AlertFilter) -> list[Alert]:
    alerts = alerts_visible_to(user).select_related("account", "acknowledged_by", "resolved_by")
    if f.level is not None:
        alerts = alerts.filter(level=f.level)
    if f.account_id is not None:
        alerts = alerts.filter(account_id=f.account_id)
    if f.status == "active":
        alerts = alerts.exclude(status=AlertStatus.RESOLVED)
    elif f.status in AlertStatus.values:
        alerts = alerts.filter(status=f.status)
    # Worst and newest first while active; plain history (newest first) otherwise.
    order = ["-level", "-opened_at"] if f.status in ("active", AlertStatus.OPEN) else ["-opened_at"]
    return list(alerts.order_by(*order)[:HISTORY_LIMIT])


def open_counts_by_level(user: User) -> list[tuple[int, str, int]]:
    """(level, label, count) of open and acknowledged alerts, worst level first, zeros included."""
    rows = (
        alerts_visible_to(user)
        .exclude(status=AlertStatus.RESOLVED)
        .values("level")
        .annotate(n=Count("id"))
        .values_list("level", "n")
    )
    counts = dict(rows)
    return [(level.value, level.label, counts.get(level.value, 0)) for level in sorted(Level, reverse=True)]


def alerts_open_levels(*, account_ids) -> dict[int, dict[tuple[str, str], int]]:
    """{account_id: {(rule, subject): level}} of the open and acknowledged alerts: the evaluator
    seeds its latches from these at start, so a breach standing through a restart is not opened
    (and paged) again. Liquidations are not latches and are left out."""
    levels: dict[int, dict[tuple[str, str], int]] = {account_id: {} for account_id in account_ids}
    rows = (
        Alert.objects.filter(account_id__in=list(account_ids), open_key__isnull=False)
        .exclude(rule="liquidated")
        .values_list("account_id", "rule", "subject", "level")
    )
    for account_id, rule, subject, level in rows:
        levels.setdefault(account_id, {})[(rule, subject)] = int(level)
    return levels
