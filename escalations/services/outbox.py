"""The outbox both deliveries and notifications use: rows due again, their lease, the wait
before the next attempt."""

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from escalations import policy

from . import periodic


def outbox_sweep(model, *, now: datetime, grace_seconds: float) -> list[str]:
    """deliveries_sweep for any outbox model with the same life (pending, sending with a
    lease, retrying): Delivery here, notifications.Notification there."""
    marker = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    waiting = [model.Status.PENDING, model.Status.RETRYING]
    with transaction.atomic():
        ids = list(
            model.objects.due(now)
            .exclude(
                status=model.Status.PENDING, created_at__gt=now - timedelta(seconds=grace_seconds)
            )
            .exclude(status__in=waiting, lease_until__gt=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[: periodic.BATCH_SIZE]
        )
        if ids:
            model.objects.filter(pk__in=ids, status=model.Status.SENDING).update(
                status=model.Status.RETRYING, next_attempt_at=now
            )
            model.objects.filter(pk__in=ids).update(lease_until=marker)
    return [str(pk) for pk in ids]


def outbox_lease_left(model, row_id, *, now: datetime | None = None) -> float | None:
    """Seconds until the sending lease on an outbox row lapses (OutboxQuerySet.lease_left);
    None when the row is not being sent, is gone, or `row_id` is not an id at all."""
    try:
        return model.objects.lease_left(row_id, now or timezone.now())
    except (ValidationError, ValueError, TypeError):
        return None


def outbox_retry_wait(attempt: int) -> timedelta:
    """How long an outbox row waits after its `attempt`-th failure: exponential backoff with
    full jitter, from WEBHOOK_BACKOFF_BASE_SECONDS up to WEBHOOK_BACKOFF_MAX_SECONDS."""
    seconds = policy.backoff_seconds(
        attempt,
        base=settings.WEBHOOK_BACKOFF_BASE_SECONDS,
        cap=settings.WEBHOOK_BACKOFF_MAX_SECONDS,
        jitter=random.random(),  # jitter, not security
    )
    return timedelta(seconds=seconds)
