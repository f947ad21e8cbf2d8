"""A delivery's 2xx is recorded in one hand-written statement (deliveries.DELIVERED_SQL, the
webhook's hot path). Held equal here to what the ORM services mean by it: the escalation
resumed by callbacks.mark_resumed's rule (decided, and its decision without valid_until or
not past it), expired by callbacks.expire_if_past when answered too late, and the attempt,
the delivery and the timeline written as delivery_record_attempt wrote them."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from escalations import services
from escalations.models import Decision, Delivery, DeliveryAttempt, Escalation, Event
from escalations.services import callbacks, deliveries
from tests.conftest import make_package

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


def what_the_orm_meant(escalation: Escalation, delivery: Delivery) -> None:
    """delivery_record_attempt's 2xx before the statement, through the ORM services."""
    now = timezone.now()
    with transaction.atomic():
        if delivery.payload.get("event", deliveries.DECIDED) == deliveries.DECIDED and callbacks.mark_resumed(
            escalation, actor="webhook", now=now, data={"delivery": str(delivery.id)}
        ):
            return
        callbacks.expire_if_past(escalation, now, actor="webhook")


def outcome(escalation: Escalation) -> tuple[str, list[tuple[str, str]]]:
    escalation.refresh_from_db()
    events = [(e.kind, e.actor) for e in Event.objects.filter(escalation=escalation).order_by("at", "id")]
    return escalation.status, events[-1:]


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("valid_until", sorted(VALID_UNTIL))
@pytest.mark.parametrize("status", STATUSES)
def test_a_2xx_resumes_or_expires_exactly_as_the_orm_services_do(api, reviewer, status, valid_until, event):
    by_orm = an_escalation(api, reviewer, status, VALID_UNTIL[valid_until])
    what_the_orm_meant(by_orm, a_delivery(by_orm, event))

    by_sql = an_escalation(api, reviewer, status, VALID_UNTIL[valid_until])
    delivery = a_delivery(by_sql, event)
    claimed = deliveries.delivery_claim(delivery_id=delivery.id)
    started = timezone.now()
    returned = deliveries.delivery_record_attempt(
        delivery=claimed, started_at=started, duration_ms=7, status_code=204, response_excerpt="ok"
    )

    assert outcome(by_sql) == outcome(by_orm)
    stored = Delivery.objects.get(pk=delivery.pk)
    assert (stored.status, stored.attempt_count, stored.lease_until, stored.last_error) == (
        Delivery.Status.DELIVERED, 1, None, ""
    )
    assert stored.delivered_at is not None
    assert (returned.status, returned.attempt_count, returned.delivered_at) == (
        stored.status, stored.attempt_count, stored.delivered_at
    )
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.number, attempt.started_at, attempt.duration_ms, attempt.status_code, attempt.error,
            attempt.response_excerpt) == (1, started, 7, 204, "", "ok")
    if outcome(by_sql)[0] == Escalation.Status.RESUMED and status != Escalation.Status.RESUMED:
        resumed = Event.objects.get(escalation=by_sql, kind=Event.Kind.RESUMED)
        assert resumed.data == {"delivery": str(delivery.pk)}


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
