"""One outbox mechanism (escalations.services.outbox) for the agents' webhook deliveries and
the people's notifications: the same claim, held equal to OutboxQuerySet.due(), and the same
give-up rule (a window of time after the row was written, not a count of attempts)."""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from escalations.models import Delivery
from escalations.services import deliveries, outbox
from notifications import services as notify
from notifications.models import Notification
from tests.conftest import make_package

pytestmark = pytest.mark.django_db


def a_delivery(api) -> Delivery:
    escalation_id = api.escalate(make_package()).json()["id"]
    return Delivery.objects.create(escalation_id=escalation_id, url="http://127.0.0.1:9/", payload={})


def a_notification(api) -> Notification:
    return Notification.objects.create(
        key="test-key", kind="test", channel="email", recipient="alice", target="alice@example.com",
        subject="s", text="t", link="/",
    )


MAKERS = {"delivery": a_delivery, "notification": a_notification}
SECOND = timedelta(seconds=1)
STATES = {
    "pending, due": lambda s: {"status": s.PENDING, "next_attempt_at": -SECOND},
    "pending, not yet due": lambda s: {"status": s.PENDING, "next_attempt_at": SECOND},
    "retrying, due": lambda s: {"status": s.RETRYING, "next_attempt_at": -SECOND},
    "retrying, not yet due": lambda s: {"status": s.RETRYING, "next_attempt_at": SECOND},
    "sending, lease lapsed": lambda s: {"status": s.SENDING, "lease_until": -SECOND},
    "sending, lease live": lambda s: {"status": s.SENDING, "lease_until": SECOND},
    "sent": lambda s: {"status": s.DELIVERED if hasattr(s, "DELIVERED") else s.SENT},
    "failed": lambda s: {"status": s.FAILED, "next_attempt_at": -SECOND},
}


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_claim_takes_exactly_the_rows_due_selects(api, kind, state):
    row = MAKERS[kind](api)
    now = timezone.now()
    changes = {
        field: now + value if isinstance(value, timedelta) else value
        for field, value in STATES[state](type(row).Status).items()
    }
    type(row).objects.filter(pk=row.pk).update(**changes)
    due = type(row).objects.due(now).filter(pk=row.pk).exists()

    claimed = outbox.claim(type(row), row.pk, now=now)

    assert (claimed is not None) is due
    if due:
        row.refresh_from_db()
        assert row.status == type(row).Status.SENDING
        assert row.lease_until > now


def test_a_claim_of_something_that_is_not_an_id_takes_nothing():
    assert outbox.claim(Delivery, "not-an-id", now=timezone.now()) is None
    assert outbox.claim(Notification, 42, now=timezone.now()) is None


def record_failure(row, now):
    if isinstance(row, Delivery):
        claimed = deliveries.delivery_claim(delivery_id=row.pk, now=now)
        return deliveries.delivery_record_attempt(
            delivery=claimed, started_at=now, duration_ms=1, status_code=503, now=now
        )
    claimed = notify.notification_claim(notification_id=row.pk, now=now)
    return notify.notification_record(notification=claimed, ok=False, retryable=True, error="503", now=now)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_both_outboxes_give_up_by_the_window_not_by_a_count(api, kind, settings):
    """Twelve transient failures inside the window keep the row retrying (a count of 8 gave a
    notification up); the first failure whose next attempt falls past it gives the row up."""
    settings.WEBHOOK_RETRY_FOR_SECONDS = settings.NOTIFICATION_RETRY_FOR_SECONDS = 3600
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = settings.WEBHOOK_BACKOFF_MAX_SECONDS = 1
    row = MAKERS[kind](api)
    for _ in range(12):
        with time_machine.travel(row.next_attempt_at + SECOND, tick=False):
            row = record_failure(row, timezone.now())
        assert row.status == type(row).Status.RETRYING
    row = type(row).objects.get(pk=row.pk)
    with time_machine.travel(row.give_up_at() + SECOND, tick=False):
        row = record_failure(row, timezone.now())
    assert row.status == type(row).Status.FAILED


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_send_tasks_claim_takes_exactly_the_rows_due_selects(api, state):
    """outbox.claim_next (the send task's: the first due row) against due()."""
    row = a_delivery(api)
    now = timezone.now()
    changes = {
        field: now + value if isinstance(value, timedelta) else value
        for field, value in STATES[state](Delivery.Status).items()
    }
    Delivery.objects.filter(pk=row.pk).update(**changes)
    due = Delivery.objects.due(now).filter(pk=row.pk).exists()

    claimed = outbox.claim_next(Delivery, now=now)

    assert (claimed is not None) is due
    if due:
        assert uuid.UUID(str(claimed[0])) == row.pk  # the id first, then what `returning` asks
        assert Delivery.objects.get(pk=row.pk).status == Delivery.Status.SENDING
        assert outbox.claim_next(Delivery, now=now) is None  # taken


def test_on_postgresql_the_send_tasks_claim_reads_its_index_in_order():
    """The send task's claim (outbox.claim_next) is one range of the partial index over the
    rows still to send (models.SENDABLE: its condition is the claim's status list word for
    word), in due order: with sequential scans, bitmaps and sorts off, that index is the
    planner's only way short of a disabled path, and the due bound is its Index Cond."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    sql = outbox._claim_next_sql(Delivery, deliveries.CLAIMED, True)
    now = timezone.now()
    with connection.cursor() as cursor:
        for path in ("seqscan", "sort", "bitmapscan"):
            cursor.execute(f"SET LOCAL enable_{path} = off")
        cursor.execute(f"EXPLAIN {sql}", [now, now, now, now])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Scan using delivery_sendable_idx on escalations_delivery" in plan, plan
    assert "next_attempt_at <= " in plan.split("Index Cond:")[1].split("\n")[0], plan
    assert "Sort" not in plan, plan
