"""A decision's webhook is sent by the send task (escalations.tasks.deliver_due_task): one
broker message for all the deliveries that came while it waited, whatever their agents,
published only when none is waiting (the mark in Redis), each delivery claimed, sent and
recorded as deliver_webhook_task does. The kills and outages with a real worker are in
tests/test_celery_worker.py and tests/test_faults.py."""

import os
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from escalations import services, tasks
from escalations.models import Delivery, DeliveryAttempt, Escalation
from escalations.services import deliveries
from escalations.tasks import deliver_agent_task, deliver_due_task, enqueue_deliveries
from escalations.transport import webhooks
from tests.conftest import AgentClient, free_port, make_package, need

pytestmark = pytest.mark.django_db


def decide(api, reviewer, run_id: str) -> Delivery:
    response = api.escalate(make_package(run_id=run_id))
    assert response.status_code == 201, response.content
    escalation_id = response.json()["id"]
    services.escalation_decide(
        escalation_id=escalation_id,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=reviewer,
    )
    return Delivery.objects.get(escalation_id=escalation_id)


@pytest.fixture
def published(monkeypatch):
    """The send task's publishes, recorded instead of sent to the broker."""
    calls: list[tuple] = []
    monkeypatch.setattr(deliver_due_task, "apply_async", lambda args, **options: calls.append(args))
    return calls


@pytest.fixture(autouse=True)
def _no_task_waiting(monkeypatch):
    """No mark of a send task waiting, before and after: one test's mark (a real SET NX on
    the broker's Redis, whose task was never sent) would hold back the next test's publish.
    And a batch that a loaded machine cannot cut short (a test that wants it cut says so)."""
    monkeypatch.setattr(tasks, "BATCH_SECONDS", 60)
    tasks._unmark()
    yield
    tasks._unmark()


@pytest.fixture
def marks():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    client = tasks._marks()
    assert client is not None
    return client


def test_the_send_task_sends_every_agents_due_deliveries_oldest_due_first(
    api, hooked, reviewer, receiver, published
):
    rows = [decide(api, reviewer, f"run-{n}") for n in range(5)]
    now = timezone.now()
    # Oldest due first, whatever the order they were written in.
    for row, seconds in zip(rows[:3], (-1, -3, -2), strict=True):
        Delivery.objects.filter(pk=row.pk).update(next_attempt_at=now + timedelta(seconds=seconds))
    Delivery.objects.filter(pk=rows[3].pk).update(  # retrying later
        status=Delivery.Status.RETRYING, next_attempt_at=now + timedelta(minutes=1)
    )
    assert services.delivery_claim(delivery_id=rows[4].pk) is not None  # another sender has it
    other = services.agent_create(name="other", domain="default", resume_url=receiver.url).agent
    Escalation.objects.filter(pk=rows[2].escalation_id).update(agent=other)  # another agent's
    Delivery.objects.filter(pk=rows[2].pk).update(agent=other)

    deliver_due_task()

    sent = [r.header("handoff-delivery") for r in receiver.wait_for(3)]
    assert sent == [str(rows[1].pk), str(rows[2].pk), str(rows[0].pk)]
    for request, agent in zip(
        receiver.requests, (hooked, other, hooked), strict=True
    ):  # each its agent's secret
        assert webhooks.verify(
            agent.signing_secret, request.body, request.header("handoff-signature")
        )
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert [statuses[r.pk] for r in rows] == [
        "delivered",
        "delivered",
        "delivered",
        "retrying",
        "sending",
    ]
    assert Escalation.objects.filter(status=Escalation.Status.RESUMED).count() == 3
    assert published == [()]  # at its second delivery: another task for a share


def test_one_task_is_published_while_one_waits(
    api, hooked, reviewer, receiver, published, marks, django_capture_on_commit_callbacks
):
    other = services.agent_create(name="other", domain="default", resume_url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        decide(api, reviewer, "run-1")
    with django_capture_on_commit_callbacks(execute=True):
        decide(api, reviewer, "run-2")
        decide(AgentClient(other.token), reviewer, "run-3")  # another agent's: the same task
    assert published == [()]  # one task for the three

    deliver_due_task()  # it takes the mark down, then sends all three
    assert len(receiver.wait_for(3)) == 3
    assert published == [(), ()]  # at its second: another for a share
    with django_capture_on_commit_callbacks(execute=True):
        decide(api, reviewer, "run-4")
    assert len(published) == 2  # that one waits (its mark is up): it sends run-4 too
    assert 0 < marks.ttl(tasks.MARK_KEY) <= tasks.MARK_SECONDS
    deliver_due_task()
    with django_capture_on_commit_callbacks(execute=True):
        decide(api, reviewer, "run-5")
    assert len(published) == 3  # none waiting now: a new one


def test_past_its_batch_time_the_task_hands_the_rest_on(
    api, hooked, reviewer, receiver, published, monkeypatch
):
    rows = [decide(api, reviewer, f"run-{n}") for n in range(3)]
    monkeypatch.setattr(tasks, "BATCH_SECONDS", 0)

    deliver_due_task()

    (request,) = receiver.wait_for(1)
    assert request.header("handoff-delivery") == str(rows[0].pk)
    assert published == [()]  # the rest go to a task of their own
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 2


@pytest.mark.parametrize(
    ("error", "level"),
    # After commit the change is saved, so its answer must not become an error; the sweep
    # sends the row. A broker outage is a warning, anything else a bug to be seen.
    [
        (ConnectionError("the broker is down"), "WARNING"),
        (TypeError("a bug in the task's arguments"), "ERROR"),
    ],
)
def test_a_failed_publish_is_logged_not_raised_and_takes_the_mark_down(
    hooked, marks, monkeypatch, caplog, error, level
):
    def publish(*args, **options):
        raise error

    monkeypatch.setattr(deliver_due_task, "apply_async", publish)
    assert enqueue_deliveries() is False
    (record,) = [r for r in caplog.records if "not enqueued" in r.getMessage()]
    assert record.levelname == level
    assert (record.exc_info is not None) == (level == "ERROR")
    assert marks.get(tasks.MARK_KEY) is None  # the next one publishes


def test_with_the_broker_unreachable_the_enqueue_fails_quietly(hooked):
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"):
        assert enqueue_deliveries() is False


def test_retries_and_poison_rows_keep_their_rules_in_the_send_task(
    api, hooked, reviewer, receiver, published, monkeypatch
):
    retried: list[tuple] = []
    monkeypatch.setattr(
        tasks, "_enqueue", lambda delivery_id, countdown=0: retried.append((delivery_id, countdown))
    )
    poison, failing, fine = (decide(api, reviewer, f"run-{n}") for n in range(3))
    Delivery.objects.filter(pk=poison.pk).update(claim_count=deliveries.MAX_CRASHED_CLAIMS)
    receiver.script(500)

    deliver_due_task()

    poison.refresh_from_db()
    assert poison.status == Delivery.Status.FAILED
    assert "workers died" in poison.last_error
    failing.refresh_from_db()
    assert failing.status == Delivery.Status.RETRYING  # a countdown of its own, as before
    assert [delivery_id for delivery_id, _ in retried] == [str(failing.pk)]
    assert 0 < retried[0][1] <= tasks.COUNTDOWN_LIMIT_SECONDS
    fine.refresh_from_db()
    assert fine.status == Delivery.Status.DELIVERED
    assert [r.header("handoff-delivery") for r in receiver.requests] == [
        str(failing.pk),
        str(fine.pk),
    ]
    assert published == [()]
    assert DeliveryAttempt.objects.filter(delivery=poison).count() == 0


@pytest.mark.parametrize(
    "task", [deliver_due_task, deliver_agent_task], ids=["due", "the release before's"]
)
def test_a_redelivered_send_task_follows_the_leases_of_its_dead_child(
    task, api, hooked, reviewer, receiver, published, monkeypatch
):
    retried: list[tuple] = []
    monkeypatch.setattr(
        tasks, "_enqueue", lambda delivery_id, countdown=0: retried.append((delivery_id, countdown))
    )
    held, waiting = decide(api, reviewer, "run-1"), decide(api, reviewer, "run-2")
    assert services.delivery_claim(delivery_id=held.pk) is not None  # the child that died

    args = () if task is deliver_due_task else (hooked.pk,)  # the release before named an agent
    task.push_request(delivery_info={"redelivered": True})
    try:
        task.run(*args)
    finally:
        task.pop_request()

    (request,) = receiver.wait_for(1)
    assert request.header("handoff-delivery") == str(waiting.pk)
    (followed,) = retried
    assert followed[0] == str(held.pk)
    assert settings_lease() - 2 < followed[1] <= settings_lease() + tasks.LEASE_SLACK_SECONDS
    task(*args)  # a copy not put back follows nothing
    assert len(retried) == 1


def settings_lease() -> float:
    from django.conf import settings

    return settings.OUTBOX_LEASE_SECONDS
