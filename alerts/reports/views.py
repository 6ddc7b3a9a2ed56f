"""/reports/: the list, one report, its downloads, and "generate now" for risk managers."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import access
from alerts.models import Report, ReportPeriod
from alerts.reports import render, services
from riskdesk.views import desk_member_required, render_page

PAGE_SIZE = 50
MAX_RANGE_DAYS = 366


def get_report_for_user(user, report_id: int) -> Report:
    try:
        return services.reports_visible_to(user).get(pk=report_id)
    except Report.DoesNotExist:
        raise Http404("No such report.") from None


@desk_member_required
def report_list(request: HttpRequest) -> HttpResponse:
    reports = services.reports_visible_to(request.user).prefetch_related("accounts")[:PAGE_SIZE]
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    yesterday = (datetime.now(zone) - timedelta(days=1)).date()
    context = {
        "reports": reports,
        "can_generate": access.is_risk_manager(request.user),
        "account_choices": access.accounts_visible_to(request.user),
        "default_from": yesterday.isoformat(),
        "default_to": yesterday.isoformat(),
        "error": request.GET.get("error", ""),
    }
    return render_page(request, "reports/list.html", context)


@desk_member_required
def report_detail(request: HttpRequest, report_id: int) -> HttpResponse:
    report = get_report_for_user(request.user, report_id)
    body = render.html(report, language=translation.get_language() or report.language, standalone=False)
    return render_page(request, "reports/detail.html", {"report": report, "body": body})


DOWNLOADS = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@desk_member_required
def report_download(request: HttpRequest, report_id: int, fmt: str) -> HttpResponse:
    report = get_report_for_user(request.user, report_id)
    if fmt not in DOWNLOADS:
        raise Http404("No such format.")
    content = {"html": report.html, "csv": report.csv, "pdf": bytes(report.pdf)}[fmt]
    response = HttpResponse(content, content_type=DOWNLOADS[fmt])
    response["Content-Disposition"] = f'attachment; filename="risk-report-{report.id}.{fmt}"'
    return response


def parse_range(start_text: str, end_text: str) -> tuple[datetime, datetime]:
    """Two local dates (end included) as [start of the first, start of the day after the last)."""
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    first, last = date.fromisoformat(start_text), date.fromisoformat(end_text)
    if last < first or (last - first).days >= MAX_RANGE_DAYS:
        raise ValueError("range")
    return datetime.combine(first, time(), zone), datetime.combine(last + timedelta(days=1), time(), zone)


@require_POST
@desk_member_required
def report_generate(request: HttpRequest) -> HttpResponse:
    if not access.is_risk_manager(request.user):
        raise PermissionDenied("Risk managers only.")
    try:
        start, end = parse_range(request.POST.get("from", ""), request.POST.get("to", ""))
    except ValueError:
        return redirect(f"{request.path.rsplit('generate', 1)[0]}?error=range")
    ids = [int(i) for i in request.POST.getlist("account") if i.isdigit()]
    accounts = [access.get_account_for_user(request.user, i) for i in ids] or None
    language = request.POST.get("language") or translation.get_language() or settings.LANGUAGE_CODE
    if language not in dict(settings.LANGUAGES):
        language = settings.LANGUAGE_CODE
    report = services.report_generate(
        period=ReportPeriod.CUSTOM, start=start, end=end, accounts=accounts, language=language, by=request.user
    )
    return redirect("reports:detail", report_id=report.id)


__all__ = ["report_list", "report_detail", "report_download", "report_generate", "_"]
