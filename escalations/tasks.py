"""Celery tasks of the domain: webhook delivery and the periodic jobs. Ids in, services do the work."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import services, webhooks
from .models import Delivery

log = logging.getLogger(__name__)

# Short retries ride on Celery's countdown; longer waits are left to the sweep, so no
# message sits in the broker past its visibility timeout.
COUNTDOWN_LIMIT_SECONDS = 300


@shared_task(ignore_result=True)
def deliver_webhook_task(delivery_id: str) -> None:
    """Send one delivery if it is due and nobody else is sending it (idempotent)."""
    delivery = services.delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return
    started = timezone.now()
    outcome = webhooks.post(
        delivery.url,
        delivery.payload,
        delivery_id=str(delivery.id),
        secret=delivery.escalation.agent.signing_secret,
    )
    delivery = services.delivery_record_attempt(
        delivery=delivery,
        started_at=started,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        response_excerpt=outcome.excerpt,
    )
    if delivery.status == Delivery.Status.RETRYING:
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        if wait <= COUNTDOWN_LIMIT_SECONDS:
            deliver_webhook_task.apply_async((delivery_id,), countdown=max(0.0, wait))


@shared_task(ignore_result=True)
def sweep_deliveries_task() -> int:
    """Re-send deliveries that a lost message or a crashed worker left behind."""
    now = timezone.now()
    # Fresh pending rows belong to their on-commit task; give it a moment first.
    due = (
        Delivery.objects.due(now)
        .exclude(status=Delivery.Status.PENDING, created_at__gt=now - timedelta(seconds=10))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: services.BATCH_SIZE]
    )
    ids = [str(pk) for pk in due]
    for delivery_id in ids:
        deliver_webhook_task.delay(delivery_id)
    return len(ids)


@shared_task(ignore_result=True)
def apply_timeouts_task() -> int:
    return services.timeouts_apply()


@shared_task(ignore_result=True)
def expire_claims_task() -> int:
    return services.claims_expire()


@shared_task(ignore_result=True)
def refresh_priorities_task() -> int:
    return services.priorities_refresh()


@shared_task(ignore_result=True)
def purge_idempotency_keys_task() -> int:
    return services.idempotency_keys_purge()
