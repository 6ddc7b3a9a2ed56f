"""The three report schedules (daily, weekly, monthly) as django-celery-beat rows, in the desk's
time zone: risk managers change the time or switch one off in the admin (docs/REPORTS.md)."""

from django.conf import settings
from django.db import migrations

SCHEDULES = (
    # name, period, crontab: just after the trading day (week, month) closes
    ("Risk report: daily", "day", {"minute": "10", "hour": "0"}),
    ("Risk report: weekly", "week", {"minute": "20", "hour": "0", "day_of_week": "1"}),
    ("Risk report: monthly", "month", {"minute": "30", "hour": "0", "day_of_month": "1"}),
)


def create(apps, schema_editor):
    crontabs = apps.get_model("django_celery_beat", "CrontabSchedule")
    tasks = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, period, when in SCHEDULES:
        fields = {"minute": "0", "hour": "0", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **when}
        crontab, _ = crontabs.objects.get_or_create(timezone=settings.TRADING_DAY_TZ, **fields)
        tasks.objects.get_or_create(
            name=name,
            defaults={
                "task": "alerts.tasks.generate_report_task",
                "crontab": crontab,
                "kwargs": f'{{"period": "{period}"}}',
            },
        )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0004_report_and_channel_receives_reports"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
