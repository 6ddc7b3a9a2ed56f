"""Desk pages for alerts: filter, acknowledge and resolve with a note (risk managers), history."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import access
from alerts import selectors, services
from alerts.models import AlertStatus, Level
from riskdesk.views import desk_member_required, render_page

STATUSES = ("active", *AlertStatus.values, "all")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _filters(request: HttpRequest) -> selectors.AlertFilter:
    q = request.GET
    level = _int(q.get("level"))
    account_id = _int(q.get("account"))
    if account_id is not None:
        access.get_account_for_user(request.user, account_id)  # 404 for an account that is not theirs
    status = q.get("status", "active")
    return selectors.AlertFilter(
        level=level if level in Level.values else None,
        account_id=account_id,
        status=status if status in STATUSES else "active",
    )


def _table_context(request: HttpRequest) -> dict[str, Any]:
    f = _filters(request)
    return {
        "alerts": selectors.alert_list(request.user, f),
        "filters": f,
        "can_act": access.is_risk_manager(request.user),
        "query": request.GET.urlencode(),
    }


@desk_member_required
def alert_list(request: HttpRequest) -> HttpResponse:
    context = _table_context(request)
    context["levels"] = sorted(Level, reverse=True)
    context["statuses"] = STATUSES
    context["account_choices"] = access.accounts_visible_to(request.user).order_by("name")
    return render_page(request, "alerts/list.html", context)


@desk_member_required
def alert_table(request: HttpRequest) -> HttpResponse:
    return render(request, "alerts/_table.html", _table_context(request))


def _act(request: HttpRequest, alert_id: int, service) -> HttpResponse:
    alert = selectors.get_alert_for_user(request.user, alert_id)
    note = (request.POST.get("note") or "").strip()[:1000]
    alert = service(alert=alert, by=request.user, note=note)  # PermissionDenied (403) unless a risk manager
    if request.headers.get("HX-Request"):
        return render(request, "alerts/_row.html", {"alert": alert, "can_act": True})
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("alerts:list")


@require_POST
@desk_member_required
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(request, alert_id, services.alert_acknowledge)


@require_POST
@desk_member_required
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(request, alert_id, services.alert_resolve)
