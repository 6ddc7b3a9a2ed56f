"""Beat job (registered in riskdesk/celery.py by the lead: see /work/notes/h18c-requests.md)."""

from __future__ import annotations

from celery import shared_task

from rules.allocation import services


@shared_task(ignore_result=True)
def risk_refresh_task() -> None:
    """The desk's VaR/ES now, cached for the page, the API and the overview; today's history point."""
    services.risk_refresh()
