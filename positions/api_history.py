"""GET /api/v1/orders/log and GET /api/v1/alerts: history for any date range, hot rows and the
archive read as one (positions/archive/history.py, docs/ARCHIVE.md).

Filters: account, from / to (UTC days, inclusive; default the last 7 days), decision (order log),
level and reason_code (alerts), symbol; limit/offset pages. A trader sees only their accounts'
rows (accounts/access.py); rows of no account (desk-wide) only those who see every account."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import can_see_all_accounts, visible_account_ids
from accounts.permissions import IsDeskMember
from alerts.models import Level, decimal_str
from positions.archive.history import Query, history_page
from positions.models import OrderDecision
from riskdesk.drf import StrictIntegerField

MAX_DAYS = 366
MAX_LIMIT = 1000
MAX_OFFSET = 100_000


class HistoryInput(serializers.Serializer):
    account = StrictIntegerField(required=False, min_value=1, max_value=2**31 - 1)
    symbol = serializers.CharField(required=False, max_length=32)
    limit = StrictIntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=100)
    offset = StrictIntegerField(required=False, min_value=0, max_value=MAX_OFFSET, default=0)
    to = serializers.DateField(required=False)
    # "from" is a Python keyword: the field is declared below under its query-string name.

    def validate(self, attrs):
        day_to = attrs.get("to") or dt.datetime.now(dt.UTC).date()
        day_from = attrs.get("from") or day_to - dt.timedelta(days=6)
        if day_from > day_to:
            raise serializers.ValidationError({"from": _("The first day is after the last.")})
        if (day_to - day_from).days >= MAX_DAYS:
            raise serializers.ValidationError({"from": _("At most %(n)d days at a time.") % {"n": MAX_DAYS}})
        attrs["from"], attrs["to"] = day_from, day_to
        return attrs


HistoryInput._declared_fields["from"] = serializers.DateField(required=False)


class OrderLogInput(HistoryInput):
    decision = serializers.ChoiceField(choices=OrderDecision.choices, required=False)


class AlertInput(HistoryInput):
    level = serializers.ChoiceField(choices=Level.choices, required=False)
    reason_code = serializers.CharField(required=False, max_length=64)


def _plain(value):
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


def _account_scope(request, account: int | None) -> frozenset[int] | None:
    if can_see_all_accounts(request.user):
        return None if account is None else frozenset([account])
    visible = visible_account_ids(request.user)
    if account is not None:
        if account not in visible:
            raise Http404
        return frozenset([account])
    return frozenset(visible)


def _page(request, table: str, data: dict, equals: list, hidden: tuple[str, ...] = ()) -> Response:
    q = Query(
        table=table,
        day_from=data["from"],
        day_to=data["to"],
        account_ids=_account_scope(request, data.get("account")),
        equals=tuple(equals),
        limit=data["limit"],
        offset=data["offset"],
    )
    count, rows = history_page(q)
    results = [{k: _plain(v) for k, v in row.items() if k not in hidden} for row in rows]
    return Response({"count": count, "from": q.day_from, "to": q.day_to, "results": results})


COMMON = [
    OpenApiParameter("account", int),
    OpenApiParameter("from", dt.date, description="first UTC day (default: 6 days before `to`)"),
    OpenApiParameter("to", dt.date, description="last UTC day, inclusive (default: today)"),
    OpenApiParameter("symbol", str),
    OpenApiParameter("limit", int),
    OpenApiParameter("offset", int),
]


class OrderLogHistoryApi(APIView):
    """Every order checked or seen, for any date range: the database and the archive as one."""

    permission_classes = [IsDeskMember]

    @extend_schema(parameters=[*COMMON, OpenApiParameter("decision", str)], responses={200: dict})
    def get(self, request):
        form = OrderLogInput(data=request.query_params)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        equals = [(k, data[k]) for k in ("decision", "symbol") if data.get(k)]
        return _page(request, "orderlog", data, equals, hidden=("token_id",))


class AlertHistoryApi(APIView):
    """Alerts, open and resolved, for any date range (by the day they opened): database and archive."""

    permission_classes = [IsDeskMember]

    @extend_schema(
        parameters=[*COMMON, OpenApiParameter("level", int), OpenApiParameter("reason_code", str)],
        responses={200: dict},
    )
    def get(self, request):
        form = AlertInput(data=request.query_params)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        equals = [(k, data[k]) for k in ("level", "reason_code") if data.get(k)]
        if data.get("symbol"):
            equals.append(("subject", data["symbol"]))
        return _page(request, "alert", data, equals, hidden=("open_key",))
