"""The daily market-history refresh (the last days' klines over REST) as a django-celery-beat row,
like the report schedules: risk managers move or switch it off in the admin (docs/SIMULATOR.md,
marketdata/bars.py). In UTC: bars are UTC minutes, whatever the desk's trading day."""

from django.db import migrations

NAME = "Market history: daily klines refresh"


def create(apps, schema_editor):
    crontabs = apps.get_model("django_celery_beat", "CrontabSchedule")
    tasks = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = crontabs.objects.get_or_create(
        timezone="UTC", minute="15", hour="0", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    tasks.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "marketdata.tasks.refresh_klines_task",
            "crontab": crontab,
            "kwargs": '{"days": 2, "keep_days": 400}',
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0002_minutebar"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
