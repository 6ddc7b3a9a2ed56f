"""Thin Celery tasks: ids in, one service call, the schedule of the next try.

All three are idempotent: the outbox row's conditional claim makes a duplicate
deliver task a no-op, and the escalation re-checks each alert under its lock."""

from __future__ import annotations

from celery import shared_task

from alerts import outbox, services

# Retries due within this many seconds get their own countdown task; later ones (and any
# countdown lost with a worker) are picked up by deliver_pending_task every 10 s.
COUNTDOWN_UP_TO_S = 60


@shared_task
def deliver_delivery_task(delivery_id: int) -> str:
    outcome = outbox.delivery_send(delivery_id=delivery_id)
    if outcome.retry_in_s is not None and outcome.retry_in_s <= COUNTDOWN_UP_TO_S:
        deliver_delivery_task.apply_async((delivery_id,), countdown=outcome.retry_in_s)
    return outcome.status


@shared_task
def deliver_pending_task() -> int:
    due = outbox.deliveries_due()
    for delivery_id in due:
        deliver_delivery_task.delay(delivery_id)
    return len(due)


@shared_task
def escalate_alerts_task() -> int:
    return services.alerts_escalate_unacknowledged()


@shared_task
def generate_report_task(period: str) -> list[int]:
    """Beat's report schedules (django-celery-beat rows, alerts migration 0005): the last complete
    period, generated once and delivered once, however often beat fires."""
    from alerts.reports import delivery
    from alerts.reports import services as reports

    done = reports.report_generate_scheduled(period=period)
    for report in done:
        if report.delivered_at is None:
            delivery.report_deliver(report=report)
    return [r.id for r in done]
