"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler (schedules edited in the admin,
docs/REPORTS.md), keeping the `expires` of the fixed jobs in riskdesk/celery.py.

django-celery-beat stores an expiry in seconds as `expire_seconds` and drops an `expires` option
when it copies the fixed schedule in; without this, the sweeps (watch-stream, escalation, the
delivery sweep) that piled up while no worker ran would all run on the next start."""

from __future__ import annotations

from django_celery_beat.schedulers import DatabaseScheduler


def with_expire_seconds(mapping: dict) -> dict:
    fixed = {}
    for name, entry in mapping.items():
        options = dict(entry.get("options") or {})
        if isinstance(options.get("expires"), int | float):
            options["expire_seconds"] = int(options.pop("expires"))
        fixed[name] = {**entry, "options": options}
    return fixed


class DeskScheduler(DatabaseScheduler):
    def update_from_dict(self, mapping: dict) -> None:
        super().update_from_dict(with_expire_seconds(mapping))
