from __future__ import annotations

from celery import shared_task

from rules import services


@shared_task
def execute_risk_action_task(action_id: int) -> str:
    """Execute an approved automatic action. Idempotent: the service skips anything not EXECUTING."""
    return services.action_execute(action_id=action_id).status
