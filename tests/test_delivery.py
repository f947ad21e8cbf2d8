"""Webhook delivery end to end (API.md "Webhook", DESIGN.md flow 5): a decision, the task,
and a real HTTP receiver on 127.0.0.1 that verifies the signature as an agent would.

The task is called directly (in this process); the sweep runs with Celery's eager mode so its
delay() runs the real task here too. Only the clock is moved (time-machine)."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from escalations import services
from escalations.errors import Conflict
from escalations.models import Decision, Delivery, DeliveryAttempt, Escalation, Event
from escalations.services import deliveries
from escalations.tasks import deliver_webhook_task, sweep_deliveries_task
from escalations.transport import webhooks
from escalations.wire import escalation_dict
from tests.conftest import free_port, make_package
from tests.receiver import CLOSE, Receiver, Reply

pytestmark = pytest.mark.django_db


def escalate(api, **overrides) -> Escalation:
    response = api.escalate(make_package(**overrides))
    assert response.status_code == 201, response.content
    return Escalation.objects.get(pk=response.json()["id"])


def decide(escalation: Escalation, user, option: str = "shim") -> Delivery:
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option=option),
        user=user,
    )
    return Delivery.objects.get(escalation=escalation)


def verified_json(request, secret: str, now: float | None = None) -> dict:
    """What an agent does: recompute the HMAC over the raw body with its signing secret."""
    header = request.header("handoff-signature")
    timestamp, mac = header.split(",")[0][2:], header.split("v1=")[1]
    assert webhooks.raw_mac(secret, f"{timestamp}.".encode() + request.body) == mac
    assert webhooks.verify(secret, request.body, header, now=now)
    return json.loads(request.body)


def test_a_decision_is_posted_signed_and_the_escalation_resumed(api, hooked, reviewer, receiver):
    escalation = escalate(api)
    delivery = decide(escalation, reviewer)
    decided = escalation_dict(
        Escalation.objects.select_related("run", "decision").get(pk=escalation.pk)
    )

    deliver_webhook_task(str(delivery.id))

    (request,) = receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/hooks/handoff"
    assert request.header("content-type") == "application/json"
    assert request.header("handoff-event") == "escalation.decided"
    assert request.header("handoff-delivery") == str(delivery.id)
    body = verified_json(request, hooked.signing_secret)
    assert set(body) == {"event", "delivery_id", "escalation"}
    assert body["event"] == "escalation.decided"
    assert body["delivery_id"] == str(delivery.id)
    assert body["escalation"] == decided
    assert body["escalation"]["status"] == "decided"
    assert body["escalation"]["decision"]["option"] == "shim"
    assert body["escalation"]["decision"]["decided_by"] == {"type": "human", "name": "alice"}

    escalation.refresh_from_db()
    delivery.refresh_from_db()
    assert escalation.status == Escalation.Status.RESUMED
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.delivered_at
    (attempt,) = delivery.attempts.all()
    assert attempt.number == 1
    assert attempt.status_code == 200
    assert attempt.ok
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.RESUMED).count() == 1
    # The agent sees it resumed through the API as well.
    assert api.get(f"/api/v1/escalations/{escalation.pk}").json()["status"] == "resumed"

    # A second run of the same message (at least once) sends nothing.
    deliver_webhook_task(str(delivery.id))
    assert len(receiver.requests) == 1


def test_500_then_200_retries_after_the_backoff_with_the_same_delivery_id(
    api, hooked, reviewer, receiver
):
    receiver.script(500)
    delivery = decide(escalate(api), reviewer)

    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.last_error == "HTTP 500"
    first_at = delivery.attempts.get().started_at
    wait = (delivery.next_attempt_at - first_at).total_seconds()
    base = settings.WEBHOOK_BACKOFF_BASE_SECONDS
    assert base / 2 <= wait <= base + 1  # attempt 1: about base, jittered

    deliver_webhook_task(str(delivery.id))  # not due yet: nothing is sent
    assert len(receiver.requests) == 1

    with time_machine.travel(delivery.next_attempt_at + timedelta(milliseconds=10), tick=False):
        deliver_webhook_task(str(delivery.id))
        first, second = receiver.wait_for(2)
        body = verified_json(second, hooked.signing_secret)

    assert first.header("handoff-delivery") == second.header("handoff-delivery") == str(delivery.id)
    assert json.loads(first.body)["delivery_id"] == body["delivery_id"] == str(delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    attempts = list(delivery.attempts.all())
    assert [a.status_code for a in attempts] == [500, 200]
    assert attempts[1].started_at >= delivery.next_attempt_at
    assert Escalation.objects.get(pk=delivery.escalation_id).status == Escalation.Status.RESUMED


def test_a_refused_connection_retries_until_a_server_listens(api, agent, reviewer):
    port = free_port()  # nobody listens here
    agent.resume_url = f"http://127.0.0.1:{port}/resume"
    agent.save(update_fields=["resume_url"])
    delivery = decide(escalate(api), reviewer)

    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    (attempt,) = delivery.attempts.all()
    assert attempt.status_code is None
    assert "Connect" in attempt.error
    assert delivery.last_error == attempt.error

    with Receiver(port=port) as receiver, time_machine.travel(
        delivery.next_attempt_at + timedelta(seconds=1), tick=False
    ):
        deliver_webhook_task(str(delivery.id))
        (request,) = receiver.wait_for(1)
        verified_json(request, agent.signing_secret)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.attempt_count == 2


def test_a_dropped_connection_is_an_attempt_and_retried(api, hooked, reviewer, receiver):
    receiver.script(CLOSE)
    delivery = decide(escalate(api), reviewer)
    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.attempts.get().error
    with time_machine.travel(delivery.next_attempt_at + timedelta(seconds=1), tick=False):
        deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_answers_are_retried(api, hooked, reviewer, receiver, status):
    receiver.script(status)
    delivery = decide(escalate(api), reviewer)
    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.next_attempt_at > timezone.now()
    assert not Event.objects.filter(kind=Event.Kind.DELIVERY_FAILED).exists()


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_stop_the_retries(api, hooked, reviewer, receiver, status):
    receiver.script(status)
    escalation = escalate(api)
    delivery = decide(escalation, reviewer)
    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == f"HTTP {status}"
    event = Event.objects.get(escalation=escalation, kind=Event.Kind.DELIVERY_FAILED)
    assert event.data["delivery"] == str(delivery.id)
    assert event.data["attempts"] == 1
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.DECIDED  # the agent may still poll it
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        deliver_webhook_task(str(delivery.id))
        assert sweep_deliveries_task() == 0
    assert len(receiver.requests) == 1


def test_gives_up_after_the_retry_window(api, hooked, reviewer):
    hooked.resume_url = f"http://127.0.0.1:{free_port()}/gone"
    hooked.save(update_fields=["resume_url"])
    escalation = escalate(api)
    delivery = decide(escalation, reviewer)
    deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING

    # Still retrying a day in (the contract says at least 24 hours) ...
    with time_machine.travel(delivery.created_at + timedelta(hours=24), tick=False):
        deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.give_up_at() >= delivery.created_at + timedelta(hours=24)

    # ... and failed once the window is over.
    past = delivery.give_up_at() + timedelta(seconds=1)
    with time_machine.travel(past, tick=False):
        deliver_webhook_task(str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempt_count == 3
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.DELIVERY_FAILED).count() == 1


def test_the_sweep_sends_a_delivery_whose_enqueue_was_lost(
    api, hooked, reviewer, receiver, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the sweep's delay() runs the task here
    escalation = escalate(api)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        delivery = decide(escalation, reviewer)
    assert callbacks  # the enqueue that never happened
    assert delivery.status == Delivery.Status.PENDING

    assert sweep_deliveries_task() == 0  # a fresh row belongs to its on-commit task
    assert receiver.requests == []
    with time_machine.travel(delivery.created_at + timedelta(seconds=11), tick=False):
        assert sweep_deliveries_task() == 1
        (request,) = receiver.wait_for(1)
        verified_json(request, hooked.signing_secret)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert Escalation.objects.get(pk=escalation.pk).status == Escalation.Status.RESUMED
    with time_machine.travel(timezone.now() + timedelta(minutes=5), tick=False):
        assert sweep_deliveries_task() == 0


def test_the_sweep_takes_back_a_lapsed_lease_of_a_crashed_worker(
    api, hooked, reviewer, receiver, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    delivery = decide(escalate(api), reviewer)
    # A worker claimed it and died before recording anything.
    assert services.delivery_claim(delivery_id=delivery.id) is not None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENDING
    deliver_webhook_task(str(delivery.id))  # another copy of the message: the lease holds
    with time_machine.travel(delivery.lease_until - timedelta(seconds=1), tick=False):
        assert sweep_deliveries_task() == 0  # the lease is live
    assert receiver.requests == []

    after_lease = delivery.lease_until + timedelta(seconds=1)
    with time_machine.travel(after_lease, tick=False):
        assert sweep_deliveries_task() == 1
        (request,) = receiver.wait_for(1)
        verified_json(request, hooked.signing_secret)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.attempt_count == 1


def test_the_sweep_does_not_flood_a_backed_up_queue(api, hooked, reviewer, receiver):
    # No worker runs (not eager): the sweep enqueues a due row once per lease, not per run.
    delivery = decide(escalate(api), reviewer)
    start = delivery.created_at + timedelta(seconds=11)
    with time_machine.travel(start, tick=False):
        assert sweep_deliveries_task() == 1
    lease = settings.OUTBOX_LEASE_SECONDS
    with time_machine.travel(start + timedelta(seconds=lease - 1), tick=False):
        assert sweep_deliveries_task() == 0
    with time_machine.travel(start + timedelta(seconds=lease + 1), tick=False):
        assert sweep_deliveries_task() == 1  # the message may be lost: once more
    with time_machine.travel(start + timedelta(seconds=lease + 2), tick=False):
        deliver_webhook_task(str(delivery.id))  # a worker finally gets to one copy
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert len(receiver.requests) == 1


def test_redeliver_creates_a_new_delivery_with_a_new_id(api, hooked, reviewer, receiver):
    escalation = escalate(api)
    first = decide(escalation, reviewer)
    deliver_webhook_task(str(first.id))
    second = services.delivery_redeliver(escalation=escalation, user=reviewer)
    assert second.id != first.id
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.REDELIVERY).count() == 1
    deliver_webhook_task(str(second.id))
    one, two = receiver.wait_for(2)
    assert one.header("handoff-delivery") == str(first.id)
    assert two.header("handoff-delivery") == str(second.id)
    body = verified_json(two, hooked.signing_secret)
    assert body["delivery_id"] == str(second.id)
    assert body["escalation"]["id"] == str(escalation.pk)
    second.refresh_from_db()
    assert second.status == Delivery.Status.DELIVERED


def test_redeliver_refuses_an_open_escalation(api, hooked, reviewer):
    escalation = escalate(api)
    with pytest.raises(Conflict):
        services.delivery_redeliver(escalation=escalation, user=reviewer)


def test_a_policy_decision_is_delivered(api, hooked, receiver):
    escalation = escalate(api, confidence=0.95)  # tier 1 in the default domain
    assert escalation.status == Escalation.Status.DECIDED
    delivery = Delivery.objects.get(escalation=escalation)
    deliver_webhook_task(str(delivery.id))
    (request,) = receiver.wait_for(1)
    body = verified_json(request, hooked.signing_secret)
    assert body["escalation"]["decision"]["decided_by"]["type"] == Decision.DecidedBy.POLICY
    assert body["escalation"]["decision"]["option"] == "update-callers"  # the recommended one
    assert Escalation.objects.get(pk=escalation.pk).status == Escalation.Status.RESUMED


def test_a_timeout_decision_is_delivered(api, hooked, receiver):
    respond_by = timezone.now() + timedelta(hours=1)
    escalation = escalate(
        api,
        timeout_option="shim",
        cost_of_delay={"blocking": True, "impact": "high", "respond_by": respond_by.isoformat()},
    )
    with time_machine.travel(respond_by + timedelta(seconds=1), tick=False):
        assert services.timeouts_apply() == 1
        delivery = Delivery.objects.get(escalation=escalation)
        deliver_webhook_task(str(delivery.id))
        (request,) = receiver.wait_for(1)
        body = verified_json(request, hooked.signing_secret)
    decision = body["escalation"]["decision"]
    assert decision["decided_by"]["type"] == "timeout"
    assert decision["option"] == "shim"
    assert Escalation.objects.get(pk=escalation.pk).status == Escalation.Status.RESUMED


def test_no_resume_url_means_no_delivery(api, agent, reviewer):
    escalation = escalate(api)
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="halt"),
        user=reviewer,
    )
    assert not Delivery.objects.filter(escalation=escalation).exists()


@pytest.mark.parametrize("delivery_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid", ""])
def test_the_task_ignores_unknown_or_malformed_ids(delivery_id):
    assert deliver_webhook_task(delivery_id) is None


def test_a_late_failure_does_not_undo_a_delivery_finished_by_another_worker(
    api, hooked, reviewer, receiver
):
    # Worker A's lease lapsed mid-attempt; worker B delivered; then A's timeout comes in.
    delivery = decide(escalate(api), reviewer)
    claimed = services.delivery_claim(delivery_id=delivery.id)
    deliver_after = claimed.lease_until + timedelta(seconds=1)
    with time_machine.travel(deliver_after, tick=False):
        deliver_webhook_task(str(delivery.id))  # worker B
        services.delivery_record_attempt(
            delivery=claimed, started_at=claimed.created_at, duration_ms=10_000,
            status_code=None, error="timed out",
        )
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.attempt_count == 2
    assert not Event.objects.filter(kind=Event.Kind.DELIVERY_FAILED).exists()


@pytest.mark.django_db(transaction=True)
def test_the_task_survives_its_row_vanishing_mid_attempt(api, agent, reviewer):
    from django.db import connection

    def delete_escalation(request):  # the escalation (and its delivery) is deleted meanwhile
        try:
            Escalation.objects.filter(pk=request.json()["escalation"]["id"]).delete()
        finally:
            connection.close()  # this server thread's own connection

    with Receiver(on_request=delete_escalation) as receiver:
        agent.resume_url = receiver.url
        agent.save(update_fields=["resume_url"])
        escalation = escalate(api)
        with_delivery = decide(escalation, reviewer)
        assert deliver_webhook_task(str(with_delivery.id)) is None
        assert len(receiver.requests) == 1
    assert not Delivery.objects.filter(pk=with_delivery.pk).exists()
    assert not DeliveryAttempt.objects.exists()


def test_a_delivery_that_kills_every_worker_is_given_up_as_poison(api, hooked, reviewer, receiver):
    """Celery keeps no redelivery count: the row does. Claims that never recorded an attempt
    are workers that died mid-send."""
    delivery = decide(escalate(api), reviewer)
    for _ in range(deliveries.MAX_CRASHED_CLAIMS):
        assert services.delivery_claim(delivery_id=delivery.id) is not None
        Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert services.delivery_claim(delivery_id=delivery.id) is None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "workers died" in delivery.last_error
    assert Event.objects.filter(escalation=delivery.escalation, kind="delivery_failed").exists()
    assert receiver.requests == []


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_holding_a_nul_byte_is_recorded(api, hooked, reviewer, receiver, status):
    """PostgreSQL text cannot hold U+0000: a 2xx whose body has one was never recorded (the
    task raised, the decision was sent again and again, then given up as poison)."""
    receiver.script(Reply(status, body=b"ok\x00binary"))
    escalation = escalate(api)
    delivery = decide(escalation, reviewer)

    deliver_webhook_task(str(delivery.id))

    receiver.wait_for(1)
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.status_code, attempt.response_excerpt) == (status, "ok\ufffdbinary")
    escalation.refresh_from_db()
    resumed = status == 200
    assert (escalation.status == Escalation.Status.RESUMED) is resumed
