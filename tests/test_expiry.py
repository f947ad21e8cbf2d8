"""Decisions past their lifetime (issue 14): a decided escalation the agent never
acknowledged becomes `expired` through the periodic sweep, and a webhook answered after the
decision's valid_until does not mark it resumed. A real receiver on 127.0.0.1 answers the
webhook; the task is called directly and only the clock is moved (time-machine)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escalations import services
from escalations.models import Delivery, Escalation, Event, Policy
from escalations.services import periodic
from escalations.tasks import deliver_webhook_task, expire_decisions_task
from tests.conftest import index_plan, make_package, need

pytestmark = pytest.mark.django_db


def decided(api, reviewer, *, lifetime: int | None = 60, run: str = "run-1") -> Escalation:
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=lifetime)
    created = api.escalate(make_package(run_id=run))
    assert created.status_code == 201, created.content
    services.escalation_decide(
        escalation_id=created.json()["id"],
        request=services.DecisionRequest(kind="option", option="update-callers"),
        user=reviewer,
    )
    return Escalation.objects.select_related("decision").get(pk=created.json()["id"])


def test_the_sweep_expires_only_decisions_past_valid_until(api, reviewer):
    old = decided(api, reviewer, lifetime=60, run="r-old")
    acked = decided(api, reviewer, lifetime=60, run="r-acked")
    assert api.post_json(f"/api/v1/escalations/{acked.pk}/ack").status_code == 200
    lasting = decided(api, reviewer, lifetime=3600, run="r-lasting")
    forever = decided(api, reviewer, lifetime=None, run="r-forever")

    assert periodic.decisions_expire() == 0  # nothing is past its lifetime yet
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert expire_decisions_task() == 1
        assert periodic.decisions_expire() == 0  # once

    status = dict(Escalation.objects.values_list("pk", "status"))
    assert status[old.pk] == "expired"
    assert status[acked.pk] == "resumed"
    assert status[lasting.pk] == status[forever.pk] == "decided"
    (event,) = Event.objects.filter(kind="expired")
    assert (event.escalation_id, event.actor) == (old.pk, "decision lifetime")
    assert event.data == {"valid_until": old.decision.valid_until.isoformat()}
    # the agent learns it from its reads, and its late ack is refused
    assert api.get(f"/api/v1/escalations/{old.pk}").json()["status"] == "expired"
    late = api.post_json(f"/api/v1/escalations/{old.pk}/ack")
    assert late.status_code == 409
    assert late.json()["type"].endswith("/decision-expired")


def test_the_sweep_works_in_batches(api, reviewer, monkeypatch):
    for i in range(5):
        decided(api, reviewer, lifetime=60, run=f"r-{i}")
    monkeypatch.setattr(periodic, "BATCH_SIZE", 2)
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert periodic.decisions_expire() == 2  # one batch a call
        assert expire_decisions_task() == 3  # the task repeats while batches are full
    assert Escalation.objects.filter(status="expired").count() == 5


def test_a_webhook_answered_after_valid_until_does_not_resume(api, hooked, reviewer, receiver):
    escalation = decided(api, reviewer, lifetime=60)
    delivery = Delivery.objects.get(escalation=escalation)
    with time_machine.travel(escalation.decision.valid_until + timedelta(seconds=1), tick=False):
        deliver_webhook_task(str(delivery.id))
        receiver.wait_for(1)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED  # the agent answered 2xx...
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.EXPIRED  # ...too late to act on it
    assert not Event.objects.filter(escalation=escalation, kind="resumed").exists()
    assert Event.objects.get(escalation=escalation, kind="expired").actor == "webhook"


def test_a_webhook_answered_in_time_resumes(api, hooked, reviewer, receiver):
    escalation = decided(api, reviewer, lifetime=60)
    deliver_webhook_task(str(Delivery.objects.get(escalation=escalation).id))
    receiver.wait_for(1)
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.RESUMED
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert periodic.decisions_expire() == 0  # resumed in time: never expired


def test_the_decisions_lifetime_is_copied_to_its_escalation(api, reviewer):
    lasting = decided(api, reviewer, lifetime=3600, run="r-lasting")
    forever = decided(api, reviewer, lifetime=None, run="r-forever")

    assert lasting.expires_at == lasting.decision.valid_until is not None
    assert forever.expires_at is None


def test_the_sweeps_query_reads_its_partial_index_not_every_decision(api, reviewer):
    """Beat's expiry runs every 30 s: it reads the decided escalations that have a deadline
    (esc_expires_idx), not every decision ever made, which cost ~300 ms a run at 1,000,000
    (bench/README.md, "Beat's decision expiry at scale")."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    decided(api, reviewer, lifetime=60)
    with CaptureQueriesContext(connection) as queries:
        assert periodic.decisions_expire() == 0
    (query,) = queries.captured_queries

    plan = index_plan(query["sql"])
    assert "esc_expires_idx" in plan, plan
    assert "escalations_decision" not in plan, plan
