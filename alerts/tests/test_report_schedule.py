"""The scheduled reports: the last complete period in the desk's time zone, once however often
beat fires, and the schedules themselves as django-celery-beat rows in the admin."""

from __future__ import annotations

from datetime import UTC, datetime

from django_celery_beat.models import PeriodicTask

from alerts.models import Report, ReportPeriod
from alerts.reports import services
from alerts.tasks import generate_report_task


def test_the_periods_end_at_local_midnight_in_the_desks_time_zone(settings):
    settings.TRADING_DAY_TZ = "Asia/Shanghai"
    now = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)  # Wednesday 09:00 in Shanghai
    start, end = services.period_bounds(ReportPeriod.DAY, now)
    assert (start.isoformat(), end.isoformat()) == ("2026-12-08T00:00:00+08:00", "2026-12-09T00:00:00+08:00")
    start, end = services.period_bounds(ReportPeriod.WEEK, now)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-11-30", "2026-12-07")
    start, end = services.period_bounds(ReportPeriod.MONTH, now)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-11-01", "2026-12-01")


def test_the_task_makes_the_desk_report_and_one_per_account_once(account_a, account_b, settings):
    settings.TRADING_DAY_TZ = "UTC"
    first = generate_report_task("day")
    again = generate_report_task("day")  # beat fired twice
    assert first == again and len(first) == 3
    scopes = sorted(sorted(a.name for a in r.accounts.all()) for r in Report.objects.all())
    assert scopes == [["acct-a"], ["acct-a", "acct-b"], ["acct-b"]]


def test_the_three_schedules_are_periodic_tasks_in_the_desks_zone(db):
    tasks = PeriodicTask.objects.filter(task="alerts.tasks.generate_report_task").order_by("name")
    assert [(t.name, t.kwargs, str(t.crontab.timezone)) for t in tasks] == [
        ("Risk report: daily", '{"period": "day"}', "UTC"),
        ("Risk report: monthly", '{"period": "month"}', "UTC"),
        ("Risk report: weekly", '{"period": "week"}', "UTC"),
    ]
