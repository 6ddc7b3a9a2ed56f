"""The admin's history search (issue 16, "in the admin or the API"): the order log and alerts for
any date range, hot rows and the archive read as one through history.history_page, the service
behind /api/v1/orders/log and /api/v1/alerts. Each row says where it was read (database or archive).

Reached from the OrderLog and Alert changelists ("History (hot + archive)"); registered by their
ModelAdmins' get_urls under the admin site's own login (staff only: risk managers and viewers;
traders have no admin). Which accounts a user sees is accounts/access.py's answer, as everywhere;
an account the user may not see answers 404. Bad input re-renders the form with its errors, 400."""

from __future__ import annotations

import datetime as dt
import math

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _

from accounts.access import can_see_all_accounts, visible_account_ids
from accounts.models import ExchangeAccount
from alerts.models import AlertStatus, Level, decimal_str
from positions.archive.history import ARCHIVE, HOT, Query, history_page
from positions.models import OrderDecision

PER_PAGE = 50
MAX_DAYS = 366  # as the API
MAX_OFFSET = 100_000  # as the API: deeper pages are a narrower search or DuckDB on the files
MAX_PAGE = MAX_OFFSET // PER_PAGE + 1
SOURCE = "_source"


class HistoryForm(forms.Form):
    day_from = forms.DateField(
        label=_("From (UTC day)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    day_to = forms.DateField(
        label=_("To (UTC day, inclusive)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    account = forms.IntegerField(label=_("Account"), required=False, min_value=1, max_value=2**31 - 1)
    symbol = forms.CharField(label=_("Symbol"), required=False, max_length=32)
    page = forms.IntegerField(label=_("Page"), required=False, min_value=1, max_value=MAX_PAGE)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        day_to = data.get("day_to") or dt.datetime.now(dt.UTC).date()
        day_from = data.get("day_from") or day_to - dt.timedelta(days=6)
        if day_from > day_to:
            raise forms.ValidationError(_("The first day is after the last."))
        if (day_to - day_from).days >= MAX_DAYS:
            raise forms.ValidationError(_("At most %(n)d days at a time.") % {"n": MAX_DAYS})
        data["day_from"], data["day_to"] = day_from, day_to
        data["symbol"] = (data.get("symbol") or "").strip().upper()
        return data


class OrderLogHistoryForm(HistoryForm):
    decision = forms.ChoiceField(
        label=_("Decision"), required=False, choices=[("", "---------"), *OrderDecision.choices]
    )


class AlertHistoryForm(HistoryForm):
    level = forms.TypedChoiceField(
        label=_("Level"), required=False, coerce=int, empty_value=None, choices=[("", "---------"), *Level.choices]
    )
    reason_code = forms.CharField(label=_("Reason code"), required=False, max_length=64)


def _money(value) -> str:
    return "" if value is None else decimal_str(value)


def _when(value) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _label(choices, value) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return str(value)


def _orderlog_cells(row: dict, names: dict[int, str]) -> list[str]:
    return [
        _when(row["created_at"]),
        names.get(row["account_id"], "—"),
        row["source"],
        row["symbol"],
        row["side"],
        row["order_type"],
        _money(row["quantity"]),
        _money(row["price"]),
        _label(OrderDecision, row["decision"]),
        ", ".join(row["reason_codes"] or []),
        row["client_order_id"],
    ]


def _alert_cells(row: dict, names: dict[int, str]) -> list[str]:
    return [
        _when(row["opened_at"]),
        _label(Level, row["level"]),
        _label(AlertStatus, row["status"]),
        names.get(row["account_id"], "—"),
        row["rule"],
        row["subject"],
        row["reason_code"],
        _money(row["value"]),
        _money(row["limit"]),
        _when(row["resolved_at"]),
    ]


TABLE_VIEWS = {
    "orderlog": {
        "form": OrderLogHistoryForm,
        "title": _("Order log history (database and archive)"),
        "columns": [
            _("Time (UTC)"),
            _("Account"),
            _("Source"),
            _("Symbol"),
            _("Side"),
            _("Type"),
            _("Quantity"),
            _("Price"),
            _("Decision"),
            _("Reason codes"),
            _("Client order id"),
        ],  # fmt: skip
        "cells": _orderlog_cells,
        "equals": lambda d: [(k, d[k]) for k in ("decision", "symbol") if d.get(k)],
    },
    "alert": {
        "form": AlertHistoryForm,
        "title": _("Alert history (database and archive)"),
        "columns": [
            _("Opened (UTC)"),
            _("Level"),
            _("Status"),
            _("Account"),
            _("Rule"),
            _("Subject"),
            _("Reason code"),
            _("Value"),
            _("Limit"),
            _("Resolved (UTC)"),
        ],  # fmt: skip
        "cells": _alert_cells,
        "equals": lambda d: [
            *[(k, d[k]) for k in ("level", "reason_code") if d.get(k) not in (None, "")],
            *([("subject", d["symbol"])] if d.get("symbol") else []),
        ],
    },
}


def _account_scope(user, account: int | None) -> frozenset[int] | None:
    """None: every account and the desk-wide rows (who sees every account); else these accounts."""
    if can_see_all_accounts(user):
        return None if account is None else frozenset([account])
    visible = visible_account_ids(user)
    if account is not None:
        if account not in visible:
            raise Http404(_t("No such account."))
        return frozenset([account])
    return frozenset(visible)


def _change_url(table: str, pk: int) -> str | None:
    app = "positions" if table == "orderlog" else "alerts"
    try:
        return reverse(f"admin:{app}_{table}_change", args=[pk])
    except NoReverseMatch:
        return None


def history_view(request, *, model_admin, table: str):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    conf = TABLE_VIEWS[table]
    form = conf["form"](request.GET)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": conf["title"],
        "form": form,
        "columns": conf["columns"],
        "rows": [],
        "HOT": HOT,
        "ARCHIVE": ARCHIVE,
    }
    if not form.is_valid():
        return TemplateResponse(request, "admin/history.html", context, status=400)
    data = form.cleaned_data
    scope = _account_scope(request.user, data.get("account"))
    page = data.get("page") or 1
    query = Query(
        table=table,
        day_from=data["day_from"],
        day_to=data["day_to"],
        account_ids=scope,
        equals=tuple(conf["equals"](data)),
        limit=PER_PAGE,
        offset=(page - 1) * PER_PAGE,
    )
    count, rows = history_page(query, source_key=SOURCE)
    pages = max(1, math.ceil(count / PER_PAGE))
    last_reachable = min(pages, MAX_PAGE)
    if page > last_reachable:  # past the end: the last page there is, not an empty one
        page = last_reachable
        query = Query(**{**query.__dict__, "offset": (page - 1) * PER_PAGE})
        count, rows = history_page(query, source_key=SOURCE)
    ids = {r["account_id"] for r in rows if r["account_id"] is not None}
    names = dict(ExchangeAccount.objects.filter(pk__in=ids).values_list("pk", "name"))

    def link(n: int) -> str:
        params = request.GET.copy()
        params["page"] = str(n)
        return "?" + params.urlencode()

    context.update(
        rows=[
            {
                "cells": conf["cells"](row, names),
                "source": row[SOURCE],
                "url": _change_url(table, row["id"]) if row[SOURCE] == HOT else None,
                "id": row["id"],
            }
            for row in rows
        ],
        count=count,
        page=page,
        pages=pages,
        last_reachable=last_reachable,
        first_row=(page - 1) * PER_PAGE + 1 if rows else 0,
        last_row=(page - 1) * PER_PAGE + len(rows),
        prev_url=link(page - 1) if page > 1 else None,
        next_url=link(page + 1) if page < last_reachable else None,
        first_url=link(1) if page > 1 else None,
        last_url=link(last_reachable) if page < last_reachable else None,
        day_from=data["day_from"],
        day_to=data["day_to"],
    )
    return TemplateResponse(request, "admin/history.html", context)
