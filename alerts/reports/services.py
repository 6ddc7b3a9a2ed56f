"""Generate a risk report and deliver it: one function per use case (beat, the page, the API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ExchangeAccount, User
from alerts.models import Report, ReportPeriod
from alerts.reports import figures as maths
from alerts.reports import gather, render
from rules.allocation.report import var_section

MAX_CHART_POINTS = 400


def period_bounds(period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last complete trading day, week (Monday first) or month before `now`, in TRADING_DAY_TZ."""
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    today = (now or timezone.now()).astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == ReportPeriod.DAY:
        end = today
        start = end - timedelta(days=1)
    elif period == ReportPeriod.WEEK:
        end = today - timedelta(days=today.weekday())
        start = end - timedelta(days=7)
    elif period == ReportPeriod.MONTH:
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
    else:
        raise ValueError(f"no fixed bounds for period {period!r}")
    # Re-attach the zone: a week across a DST change keeps local midnights.
    return start.replace(tzinfo=zone), end.replace(tzinfo=zone)


def _json(value):
    if isinstance(value, Decimal):
        return maths_str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def maths_str(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def _thin(points: list, limit: int = MAX_CHART_POINTS) -> list:
    step = max(1, len(points) // limit)
    return points[::step] + ([points[-1]] if points and (len(points) - 1) % step else [])


def report_figures(
    *, accounts: Iterable[ExchangeAccount], start: datetime, end: datetime, now: datetime | None = None
) -> dict:
    """Every figure of the report as JSON-safe values (money as exact decimal strings)."""
    now = now or timezone.now()
    inputs = []
    for account in accounts:
        one = gather.account_inputs(account, start, end)
        gather.positions_at_close(one, now)
        inputs.append(one)
    # A period still running (generate now for today) counts time in states up to now.
    until = min(end, max(now, start))
    per_account = [maths.account_figures(i, start, until) for i in inputs]
    desk = maths.desk_figures(inputs, per_account, start, until)
    risks = [r for i in inputs for r in i.risks]
    # The VaR section (issue 18): the beat job's latest figures for these accounts and the period's daily points.
    var = var_section(account_ids=[i.account_id for i in inputs], start=start, end=end)
    return _json(
        {
            "start": start,
            "end": end,
            "positions_as_of": now,
            "desk": dataclasses.asdict(desk),
            "accounts": [dataclasses.asdict(f) for f in per_account],
            "largest_risks": [
                dataclasses.asdict(r) | {"account": _name(inputs, r.account_id)} for r in maths.largest_risks(risks)
            ],
            "exposure_by_symbol": maths.exposure_by_symbol(risks),
            "equity_series": {i.name: _thin([(p.time, p.equity) for p in i.points]) for i in inputs},
            "margin_ratio_series": {
                i.name: _thin([(p.time, p.margin_ratio) for p in i.points if p.margin_ratio is not None])
                for i in inputs
            },
            "var": var,
        }
    )


def _name(inputs: list[maths.AccountInputs], account_id: int) -> str:
    return next(i.name for i in inputs if i.account_id == account_id)


@transaction.atomic
def report_generate(
    *,
    period: str,
    start: datetime,
    end: datetime,
    accounts: Iterable[ExchangeAccount] | None = None,
    language: str | None = None,
    by: User | None = None,
    now: datetime | None = None,
) -> Report:
    """Compute, render (HTML, CSV, PDF) and store one report. No accounts given: every enabled one."""
    chosen = list(accounts) if accounts is not None else list(ExchangeAccount.objects.filter(enabled=True))
    report = Report(period=period, start=start, end=end, language=language or settings.LANGUAGE_CODE, created_by=by)
    report.figures = report_figures(accounts=chosen, start=start, end=end, now=now)
    report.html = render.html(report, language=report.language)
    report.csv = render.csv_text(report)
    report.pdf = render.pdf(report, language=report.language)
    report.save()
    report.accounts.set(chosen)
    return report


def report_generate_scheduled(*, period: str, now: datetime | None = None) -> list[Report]:
    """The beat job: the last complete period for the desk and for each enabled account alone
    (a trader sees the reports of their own accounts), once each: beat may run a schedule twice."""
    start, end = period_bounds(period, now)
    done = Report.objects.filter(period=period, start=start, end=end, created_by=None)
    accounts = list(ExchangeAccount.objects.filter(enabled=True))
    reports = []
    for scope in [accounts] + [[a] for a in accounts]:
        ids = sorted(a.id for a in scope)
        existing = next(
            (r for r in done.prefetch_related("accounts") if sorted(a.id for a in r.accounts.all()) == ids), None
        )
        reports.append(existing or report_generate(period=period, start=start, end=end, accounts=scope, now=now))
    return reports


def reports_visible_to(user: User):
    """Reports whose every account the user may see (a trader: reports of their own accounts)."""
    from accounts import access

    if access.can_see_all_accounts(user):
        return Report.objects.all()
    if not access.is_desk_member(user):
        return Report.objects.none()
    hidden = ExchangeAccount.objects.exclude(id__in=access.visible_account_ids(user))
    return Report.objects.filter(accounts__in=access.accounts_visible_to(user)).exclude(accounts__in=hidden).distinct()
