from __future__ import annotations

from celery import shared_task

from rules import services


@shared_task
def execute_risk_action_task(action_id: int) -> str:
    """Execute an approved automatic action. Idempotent: the service skips anything not EXECUTING."""
    return services.action_execute(action_id=action_id).status


@shared_task
def desk_concentration_task() -> dict[str, int]:
    """Desk-wide concentration: each symbol's share of the desk's gross notional against the desk
    limits (rules.concentration). Idempotent: alert_raise refreshes the one open row per symbol."""
    from rules.concentration import desk_concentration_check

    return desk_concentration_check()


@shared_task
def baselines_recompute_task() -> int:
    """The anomaly detectors' per-account baselines from the last 30 days (rules.baselines)."""
    from rules.baselines import baselines_recompute

    return baselines_recompute()


@shared_task
def key_permissions_task() -> int:
    """KEY_PERMISSIONS: every account's API key read with GET /sapi/v1/account/apiRestrictions."""
    from rules.anomaly_alerts import key_permissions_check

    return key_permissions_check()
