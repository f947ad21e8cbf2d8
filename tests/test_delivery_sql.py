"""On PostgreSQL a delivery's 2xx is recorded in one hand-written statement
(deliveries.DELIVERED_SQL, the webhook's hot path). Held equal here to the ORM transaction
that records it elsewhere (deliveries._record_in_transaction, SQLite's embedded mode): the
escalation resumed by callbacks.mark_resumed's rule (decided, and its decision without
valid_until or not past it) or expired by callbacks.expire_if_past when answered too late,
and the attempt, the delivery and the timeline written alike."""

import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from escalations import services
from escalations.models import Decision, Delivery, DeliveryAttempt, Escalation, Event
from escalations.services import deliveries
from tests.conftest import make_package, need

pytestmark = pytest.mark.django_db

STATUSES = [Escalation.Status.DECIDED, Escalation.Status.RESUMED, Escalation.Status.EXPIRED, Escalation.Status.PENDING]
VALID_UNTIL = {"none": None, "past": timedelta(minutes=-1), "future": timedelta(minutes=1)}
EVENTS = [deliveries.DECIDED, deliveries.QUESTION]


def an_escalation(api, reviewer, status: str, valid_until: timedelta | None) -> Escalation:
    escalation_id = api.escalate(make_package(run_id=f"run-{uuid.uuid4()}")).json()["id"]
    services.escalation_decide(
        escalation_id=escalation_id, request=services.DecisionRequest(kind="option", option="shim"), user=reviewer
    )
    now = timezone.now()
    Decision.objects.filter(escalation_id=escalation_id).update(
        valid_until=None if valid_until is None else now + valid_until
    )
    Escalation.objects.filter(pk=escalation_id).update(status=status)
    return Escalation.objects.select_related("agent").get(pk=escalation_id)


def a_delivery(escalation: Escalation, event: str) -> Delivery:
    with transaction.atomic():
        return deliveries.queue_delivery(escalation, "http://127.0.0.1:9/", timezone.now(), event=event)


def record_2xx(delivery: Delivery, *, orm: bool) -> tuple[Delivery, datetime]:
    """Claim the delivery and record a 204, by the ORM transaction or as delivery_record_attempt
    does on PostgreSQL (the statement); (what it returned, when the attempt started)."""
    claimed = deliveries.delivery_claim(delivery_id=delivery.id)
    assert claimed is not None
    started = timezone.now()
    if orm:
        returned = deliveries._record_in_transaction(
            claimed, started_at=started, duration_ms=7, status_code=204, error="", response_excerpt="ok",
            now=timezone.now(),
        )
    else:
        returned = deliveries.delivery_record_attempt(
            delivery=claimed, started_at=started, duration_ms=7, status_code=204, response_excerpt="ok"
        )
    return returned, started


def outcome(escalation: Escalation, delivery: Delivery) -> tuple:
    """The escalation's status and latest event, the delivery's and its attempt's columns; and
    which of the escalation's and its latest event's times are the attempt's `now` (delivered_at)."""
    escalation.refresh_from_db()
    events = [(e.kind, e.actor, e.data, e.at) for e in Event.objects.filter(escalation=escalation).order_by("at", "id")]
    stored = Delivery.objects.get(pk=delivery.pk)
    attempts = [(a.number, a.duration_ms, a.status_code, a.error, a.response_excerpt)
                for a in DeliveryAttempt.objects.filter(delivery=delivery)]
    kind, actor, data, at = events[-1]
    last = (kind, actor, sorted(data), data.get("delivery") == str(delivery.pk))
    now = (escalation.updated_at == stored.delivered_at, at == stored.delivered_at)
    return (escalation.status, last, stored.status, stored.attempt_count, stored.lease_until, stored.last_error,
            stored.delivered_at is not None, attempts, now)


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("valid_until", sorted(VALID_UNTIL))
@pytest.mark.parametrize("status", STATUSES)
def test_a_2xx_resumes_or_expires_exactly_as_the_orm_transaction_does(api, reviewer, status, valid_until, event):
    # Elsewhere delivery_record_attempt is the ORM transaction too: both sides would be one code.
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL): DELIVERED_SQL runs there only")
    by_orm = an_escalation(api, reviewer, status, VALID_UNTIL[valid_until])
    orm_delivery = a_delivery(by_orm, event)
    record_2xx(orm_delivery, orm=True)

    by_sql = an_escalation(api, reviewer, status, VALID_UNTIL[valid_until])
    delivery = a_delivery(by_sql, event)
    returned, started = record_2xx(delivery, orm=False)

    assert outcome(by_sql, delivery) == outcome(by_orm, orm_delivery)
    stored = Delivery.objects.get(pk=delivery.pk)
    assert (stored.status, stored.attempt_count, stored.lease_until) == (Delivery.Status.DELIVERED, 1, None)
    assert (returned.status, returned.attempt_count, returned.delivered_at) == (
        stored.status, stored.attempt_count, stored.delivered_at
    )
    assert DeliveryAttempt.objects.get(delivery=delivery).started_at == started


def test_a_second_2xx_counts_a_second_attempt_and_resumes_once(api, reviewer):
    """Two senders (the first one's lease lapsed mid-attempt) both get a 2xx: two attempts
    numbered 1 and 2, one `resumed` event."""
    escalation = an_escalation(api, reviewer, Escalation.Status.DECIDED, None)
    delivery = a_delivery(escalation, deliveries.DECIDED)
    first = deliveries.delivery_claim(delivery_id=delivery.id)
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    second = deliveries.delivery_claim(delivery_id=delivery.id)
    for claimed in (second, first):
        deliveries.delivery_record_attempt(
            delivery=claimed, started_at=timezone.now(), duration_ms=1, status_code=200
        )
    numbers = sorted(DeliveryAttempt.objects.filter(delivery=delivery).values_list("number", flat=True))
    assert numbers == [1, 2]
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.RESUMED).count() == 1
    assert Delivery.objects.get(pk=delivery.pk).attempt_count == 2


def test_a_2xx_for_a_vanished_delivery_raises_does_not_exist(api, reviewer):
    escalation = an_escalation(api, reviewer, Escalation.Status.DECIDED, None)
    claimed = deliveries.delivery_claim(delivery_id=a_delivery(escalation, deliveries.DECIDED).id)
    Escalation.objects.filter(pk=escalation.pk).delete()
    with pytest.raises(Delivery.DoesNotExist):
        deliveries.delivery_record_attempt(delivery=claimed, started_at=timezone.now(), duration_ms=1, status_code=200)
