"""The outbox both deliveries and notifications use: the claim of a due row, rows due again,
their lease, the wait before the next attempt and the one give-up rule.

An outbox model has a Status with PENDING, SENDING and RETRYING, next_attempt_at,
lease_until, created_at, and give_up_at() (the end of its retry window), and uses
OutboxQuerySet: Delivery here, notifications.Notification there.

The give-up rule, one for every outbox: a transient failure is retried with backoff
(outbox_retry_wait) while the next attempt still falls within the row's retry window
(created_at + WEBHOOK_RETRY_FOR_SECONDS for a delivery, + NOTIFICATION_RETRY_FOR_SECONDS for
a notification); the first failure whose next attempt would fall after it gives the row up.
A window of time, not a count of attempts: the agents' contract promises at least 24 hours
of retries, and with jittered backoff a count promises no length of time.
"""

import functools
import random
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from escalations import policy
from escalations.models.deliveries import OutboxQuerySet, OutboxStatus

from . import periodic


def _rows(model: type[Model]) -> OutboxQuerySet[Any]:
    """An outbox model's rows: its only manager, `objects`, is OutboxQuerySet.as_manager(),
    which a model class's type cannot say."""
    return cast(OutboxQuerySet[Any], model._default_manager.all())


def _status(model: type[Model]) -> OutboxStatus:
    status: OutboxStatus = model.Status  # type: ignore[attr-defined]  # each outbox model has its own
    return status


def claim(
    model: type[Model], row_id: object, *, now: datetime, lease_seconds: float | None = None,
    returning: tuple[str, ...] = ("id",), count_claim: bool = False,
) -> tuple[Any, ...] | None:
    """Take a due row for sending: the compare-and-swap of OutboxQuerySet.due() on one row
    (to SENDING, leased for `lease_seconds`, by default OUTBOX_LEASE_SECONDS), in one
    statement that returns the `returning` columns (or expressions over the row). None when
    the row is gone, sent or failed, not yet due, held by a live lease, or `row_id` is not
    an id at all.
    `count_claim` adds one to the row's claim_count (deliveries stop poison rows by it)."""
    try:
        row_id = uuid.UUID(str(row_id))
    except ValueError:
        return None
    return _claim_row(
        _claim_sql(model, returning, count_claim), model._meta.pk.get_db_prep_value(row_id, connection),
        now=now, lease_seconds=lease_seconds, nows=2,
    )


def _claim_row(sql: str, key: Any, *, now: datetime, lease_seconds: float | None, nows: int) -> tuple[Any, ...] | None:
    """Run a claim statement: its parameters are the lease's end (for `lease_seconds`, by
    default OUTBOX_LEASE_SECONDS), the row's `key` (unless None), then `now` `nows` times."""
    lease = now + timedelta(seconds=lease_seconds or settings.OUTBOX_LEASE_SECONDS)
    at = connection.ops.adapt_datetimefield_value
    keys = [] if key is None else [key]
    with connection.cursor() as cursor:
        cursor.execute(sql, [at(lease), *keys, *[at(now)] * nows])
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


@functools.cache
def _claim_sql(model: type[Model], returning: tuple[str, ...], count_claim: bool) -> str:
    """One hand-written statement (the claim is the webhook's hot path); it must select
    exactly what OutboxQuerySet.due() selects: tests/test_outbox.py holds them equal."""
    return f"""
UPDATE {model._meta.db_table}
SET {_claimed_sql(model, count_claim)}
WHERE id = %s AND {_due_sql(model)}
RETURNING {", ".join(returning)}
"""  # noqa: S608 (the table and columns are the model's own, never input)


def claim_next(
    model: type[Model], *, now: datetime, lease_seconds: float | None = None,
    returning: tuple[str, ...] = ("id",), count_claim: bool = False,
) -> tuple[Any, ...] | None:
    """claim() of the first due row (by next_attempt_at), skipping rows another transaction
    has locked (another sender claiming them): one statement. None when no row is due."""
    return _claim_row(
        _claim_next_sql(model, returning, count_claim), None, now=now, lease_seconds=lease_seconds, nows=3
    )


@functools.cache
def _claim_next_sql(model: type[Model], returning: tuple[str, ...], count_claim: bool) -> str:
    """claim()'s statement on the first due row. The status list and the next_attempt_at
    bound (every row due is due by then, sending ones too: they were due when claimed) let
    a partial index of next_attempt_at over the rows still to send answer it in one range,
    oldest due first, however long the history. tests/test_outbox.py holds it to due()."""
    status = _status(model)
    table = model._meta.db_table
    # SQLite (the embedded mode) has one writer at a time and no row locks.
    skip_locked = "\n    FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    return f"""
UPDATE {table}
SET {_claimed_sql(model, count_claim)}
WHERE id = (
    SELECT id FROM {table}
    WHERE next_attempt_at <= %s
      AND status IN ('{status.PENDING}', '{status.SENDING}', '{status.RETRYING}') AND {_due_sql(model)}
    ORDER BY next_attempt_at
    LIMIT 1{skip_locked}
)
RETURNING id, {", ".join(returning)}
"""  # noqa: S608 (the table and columns are the model's own, never input)


def _claimed_sql(model: type[Model], count_claim: bool) -> str:
    """A claim's SET: sending, leased until %s (its first parameter), claim_count counted."""
    return f"status = '{_status(model).SENDING}', lease_until = %s" + (
        ", claim_count = claim_count + 1" if count_claim else ""
    )


def _due_sql(model: type[Model]) -> str:
    """OutboxQuerySet.due() as SQL, its two parameters `now`."""
    status = _status(model)
    return f"""(
    (status IN ('{status.PENDING}', '{status.RETRYING}') AND next_attempt_at <= %s)
    OR (status = '{status.SENDING}' AND lease_until < %s)
)"""


def retry_at(attempt: int, *, now: datetime, give_up_at: datetime) -> datetime | None:
    """The one give-up rule (see the module's docstring): when a row that failed for the
    `attempt`-th time is tried again, or None when that would fall after `give_up_at`,
    the end of its retry window, and the row is given up."""
    next_at = now + outbox_retry_wait(attempt)
    return next_at if next_at <= give_up_at else None


def outbox_sweep(model: type[Model], *, now: datetime, grace_seconds: float) -> list[str]:
    """deliveries_sweep for any outbox model with the same life (pending, sending with a
    lease, retrying): Delivery here, notifications.Notification there."""
    marker = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    status = _status(model)
    waiting = [status.PENDING, status.RETRYING]
    with transaction.atomic():
        ids = list(
            _rows(model).due(now)
            .exclude(
                status=status.PENDING, created_at__gt=now - timedelta(seconds=grace_seconds)
            )
            .exclude(status__in=waiting, lease_until__gt=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[: periodic.BATCH_SIZE]
        )
        if ids:
            _rows(model).filter(pk__in=ids, status=status.SENDING).update(
                status=status.RETRYING, next_attempt_at=now
            )
            _rows(model).filter(pk__in=ids).update(lease_until=marker)
    return [str(pk) for pk in ids]


def outbox_lease_left(
    model: type[Model], row_id: object, *, now: datetime | None = None
) -> float | None:
    """Seconds until the sending lease on an outbox row lapses (OutboxQuerySet.lease_left);
    None when the row is not being sent, is gone, or `row_id` is not an id at all."""
    try:
        return _rows(model).lease_left(row_id, now or timezone.now())
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
