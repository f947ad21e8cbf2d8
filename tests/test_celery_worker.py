"""A real Celery worker on Redis delivering decisions (issue 2 "Done when"; perf-reliability
§3.2 R3, R4; issue 9): a `celery worker -P prefork` subprocess on the test database, a real
HTTP receiver, a worker child or the whole worker killed with SIGKILL mid-POST (the delivery
is retried within 30 s), and a broker outage at commit time.

Needs Redis and PostgreSQL (REDIS_URL, DATABASE_URL): skipped locally without them, a
failure in CI. The processes come from tests/processes.py."""

import os
import signal
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from escalations.models import Delivery, DeliveryAttempt, Escalation, Event
from escalations.tasks import sweep_deliveries_task
from escalations.transport import webhooks
from reviews.services import reviewer_token_issue
from tests.conftest import free_port, make_package, need
from tests.processes import (
    Worker,
    celery,
    children_of,
    is_dead,
    production_env,
    purge_queue,
    socket_owner,
    wait_until,
)
from tests.receiver import TRICKLE, Reply

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Quick retries for the tests that script failures; the crash tests keep the defaults.
FAST_RETRIES = {"WEBHOOK_BACKOFF_BASE_SECONDS": "0.4", "WEBHOOK_BACKOFF_MAX_SECONDS": "2"}
# The issue's bound on crash -> retry.
CRASH_TO_RETRY_SECONDS = 30


@pytest.fixture(autouse=True)
def _services():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


@pytest.fixture
def workers(tmp_path):
    """A factory of worker subprocesses; every one is stopped at the end, whatever happens."""
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(tmp_path, {"DB_POOL": "0", **FAST_RETRIES, **env})
        started.append(worker)
        return worker

    purge_queue()
    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        purge_queue()


@pytest.fixture
def reviewer_api(reviewer, client):
    token = reviewer_token_issue(user=reviewer)

    def decide(escalation_id, option="shim"):
        return client.post(
            f"/api/v1/review/escalations/{escalation_id}/decision",
            {"kind": "option", "option": option},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    return decide


def escalate(api, run_id: str = "run-42") -> Escalation:
    response = api.escalate(make_package(run_id=run_id))
    assert response.status_code == 201, response.content
    return Escalation.objects.get(pk=response.json()["id"])


def status_of(escalation: Escalation) -> str:
    return Escalation.objects.values_list("status", flat=True).get(pk=escalation.pk)


# ---------------------------------------------------------------- tests


def test_a_real_worker_delivers_a_reviewers_decision(workers, api, hooked, reviewer_api, receiver):
    worker = workers()
    ready_in = worker.wait_ready()

    escalation = escalate(api)
    started = time.monotonic()
    response = reviewer_api(escalation.pk)
    assert response.status_code == 201, response.content
    (request,) = receiver.wait_for(1, timeout=10)
    latency_ms = (request.at - started) * 1000
    body = request.json()
    assert webhooks.verify(hooked.signing_secret, request.body, request.header("handoff-signature"))
    assert body["escalation"]["id"] == str(escalation.pk)
    assert body["escalation"]["decision"]["decided_by"] == {"type": "human", "name": "alice"}
    wait_until(lambda: status_of(escalation) == "resumed", timeout=10, what="resumed", log=worker.log)
    delivery = Delivery.objects.get(escalation=escalation)
    assert delivery.status == Delivery.Status.DELIVERED
    assert request.header("handoff-delivery") == str(delivery.id)

    # A 500 is retried by the worker on its own (a countdown), with the same delivery id.
    receiver.script(500)
    second = escalate(api, run_id="run-43")
    assert reviewer_api(second.pk).status_code == 201
    wait_until(lambda: status_of(second) == "resumed", timeout=15, what="the retry", log=worker.log)
    failed, ok = receiver.requests[1:]
    assert failed.answered == 500
    assert ok.answered == 200
    assert failed.header("handoff-delivery") == ok.header("handoff-delivery")
    attempts = DeliveryAttempt.objects.filter(delivery__escalation=second).order_by("number")
    assert [a.status_code for a in attempts] == [500, 200]

    # Warm: commit -> received, as the bench measures it (first one above was cold).
    third = escalate(api, run_id="run-44")
    started = time.monotonic()
    assert reviewer_api(third.pk).status_code == 201
    warm_ms = (receiver.wait_for(4, timeout=10)[3].at - started) * 1000
    print(
        f"\nworker ready in {ready_in:.2f} s; decision -> webhook received: "
        f"cold {latency_ms:.1f} ms, warm {warm_ms:.1f} ms"
    )


def hang_first_post(receiver, workers, api, reviewer_api, **worker_env):
    """A worker, a decision, and its first POST held open by the receiver: (worker, escalation,
    delivery, the held request)."""
    receiver.script(Reply(200, delay=120))  # the first POST hangs until its sender dies
    worker = workers(**worker_env)
    worker.wait_ready()
    escalation = escalate(api)
    assert reviewer_api(escalation.pk).status_code == 201
    (held,) = receiver.wait_for(1, timeout=10)
    delivery = Delivery.objects.get(escalation=escalation)
    assert delivery.status == Delivery.Status.SENDING
    return worker, escalation, delivery, held


def assert_delivered_once(receiver, escalation, delivery) -> None:
    receiver.release()
    wait_until(lambda: status_of(escalation) == "resumed", timeout=10, what="resumed")
    requests = receiver.requests
    assert len(requests) == 2, [r.answered for r in requests]
    assert {r.header("handoff-delivery") for r in requests} == {str(delivery.id)}
    assert {r.json()["delivery_id"] for r in requests} == {str(delivery.id)}
    assert [r.answered for r in requests] == [None, 200]
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.RESUMED).count() == 1
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery))
    assert [a.status_code for a in attempts] == [200]  # the killed attempt left no row


def test_a_worker_child_killed_mid_post_is_retried_within_30_s(
    workers, api, hooked, reviewer_api, receiver, settings
):
    """The default timeout (10 s) and lease, no beat: the message the dead child held comes
    back (reject_on_worker_lost), finds the row leased to the dead child, and returns when
    the lease lapses."""
    worker, escalation, delivery, held = hang_first_post(receiver, workers, api, reviewer_api)
    children = children_of(worker.pid)
    victim = socket_owner(held.client[1], receiver.port, children)
    assert victim in children, (victim, children, worker.log())
    os.kill(victim, signal.SIGKILL)
    crashed = time.monotonic()
    wait_until(lambda: is_dead(victim), timeout=5, what="the child to die")

    retry = receiver.wait_for(2, timeout=CRASH_TO_RETRY_SECONDS + 10)[1]
    crash_to_retry = retry.at - crashed
    assert_delivered_once(receiver, escalation, delivery)
    assert worker.alive()  # the parent replaced its child
    print(
        f"\nworker child SIGKILLed mid-POST -> retried in {crash_to_retry:.1f} s "
        f"(lease {settings.OUTBOX_LEASE_SECONDS:g} s, webhook timeout "
        f"{settings.WEBHOOK_TIMEOUT_SECONDS:g} s)"
    )
    assert crash_to_retry < CRASH_TO_RETRY_SECONDS
    assert crash_to_retry > settings.OUTBOX_LEASE_SECONDS - 3  # never before the lease lapsed


def test_a_whole_worker_killed_mid_post_is_retried_within_30_s(
    workers, api, hooked, reviewer_api, receiver, tmp_path, settings
):
    """The worker and its children SIGKILLed (its messages stay unacknowledged in Redis for
    the visibility timeout, an hour): a new worker (its supervisor's restart) and beat's
    sweep send the row once the lease lapses."""
    beat = celery("beat", production_env(redis_url=os.environ["REDIS_URL"], var_dir=tmp_path), tmp_path)
    try:
        worker, escalation, delivery, _ = hang_first_post(receiver, workers, api, reviewer_api)
        worker.kill()
        crashed = time.monotonic()
        workers().wait_ready()  # the supervisor starts a new one

        retry = receiver.wait_for(2, timeout=CRASH_TO_RETRY_SECONDS + 10)[1]
        crash_to_retry = retry.at - crashed
        assert_delivered_once(receiver, escalation, delivery)
        assert beat.alive(), beat.log()
    finally:
        beat.stop()
    print(f"\nwhole worker SIGKILLed mid-POST -> retried in {crash_to_retry:.1f} s (beat's sweep)")
    assert crash_to_retry < CRASH_TO_RETRY_SECONDS


def test_many_decisions_survive_a_whole_worker_killed_mid_batch(
    workers, api, hooked, reviewer_api, receiver, tmp_path, settings
):
    """Deliveries go out in one send task (deliver_due_task) for as many as are due. The
    worker is SIGKILLed while that task's first POST hangs, with more decisions made before
    (sent by a task of their own meanwhile) and while no worker runs (one task waits for
    them all, its mark up); a new worker and beat's sweep then send every one of them exactly
    once: the hung one when its lease lapses."""
    beat = celery("beat", production_env(redis_url=os.environ["REDIS_URL"], var_dir=tmp_path), tmp_path)
    try:
        worker, escalation, delivery, held = hang_first_post(receiver, workers, api, reviewer_api)
        before = [escalate(api, run_id=f"run-before-{n}") for n in range(4)]
        for each in before:
            assert reviewer_api(each.pk).status_code == 201
        wait_until(  # another child sends them meanwhile (a kill before the record resends)
            lambda: all(status_of(e) == "resumed" for e in before), timeout=10, what="the first ones",
            log=worker.log,
        )
        worker.kill()
        crashed = time.monotonic()
        during = [escalate(api, run_id=f"run-during-{n}") for n in range(8)]
        for each in during:
            assert reviewer_api(each.pk).status_code == 201
        workers().wait_ready()  # the supervisor starts a new one

        everything = [escalation, *before, *during]
        wait_until(
            lambda: all(status_of(e) == "resumed" for e in everything),
            timeout=CRASH_TO_RETRY_SECONDS + 10, what="every decision delivered",
        )
        recovered = time.monotonic() - crashed
        assert beat.alive(), beat.log()
    finally:
        beat.stop()
    receiver.release()
    ids = [r.header("handoff-delivery") for r in receiver.requests if r is not held]
    deliveries = {str(d.pk): d for d in Delivery.objects.filter(escalation__in=everything)}
    assert sorted(ids) == sorted(deliveries), "each delivered exactly once"
    assert len(receiver.requests) == len(everything) + 1  # and the hung POST
    for each in everything:
        assert Event.objects.filter(escalation=each, kind=Event.Kind.RESUMED).count() == 1
    assert {d.attempt_count for d in Delivery.objects.filter(escalation__in=everything)} == {1}
    assert list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("status_code", flat=True)) == [200]
    print(f"\nwhole worker SIGKILLed mid-batch, 8 decisions made while it was down: all sent once "
          f"{recovered:.1f} s later")


def test_an_attempt_is_cut_at_its_time_limit_so_a_live_worker_never_loses_its_lease(
    workers, api, hooked, reviewer_api, receiver, settings
):
    """A server that trickles its answer slips past every per-read timeout: the send task's
    soft time limit (timeout + 2 s) cuts the attempt, which is recorded and retried, before
    the lease (timeout + 5 s) could lapse and let a second worker send it at the same time."""
    receiver.script(TRICKLE)
    worker = workers()
    worker.wait_ready()
    escalation = escalate(api)
    assert reviewer_api(escalation.pk).status_code == 201
    (held,) = receiver.wait_for(1, timeout=10)

    attempt = wait_until(
        lambda: DeliveryAttempt.objects.filter(delivery__escalation=escalation).first(),
        timeout=settings.OUTBOX_LEASE_SECONDS + 5,
        what="the attempt to be cut and recorded",
        log=worker.log,
    )
    recorded = time.monotonic()
    assert attempt.status_code is None
    assert "the attempt's time limit" in attempt.error, attempt.error
    soft_limit_ms = settings.OUTBOX_SOFT_TIME_LIMIT * 1000
    assert soft_limit_ms - 500 <= attempt.duration_ms < soft_limit_ms + 2000, attempt.duration_ms
    assert recorded - held.at < settings.OUTBOX_LEASE_SECONDS  # the lease never lapsed
    assert Delivery.objects.get(escalation=escalation).status == Delivery.Status.RETRYING
    # Retried by its countdown (a 200 now) by the same live worker: one attempt at a time.
    wait_until(lambda: status_of(escalation) == "resumed", timeout=15, what="the retry", log=worker.log)
    first, second = receiver.requests
    assert first is held
    assert second.at > recorded - 1
    assert second.answered == 200
    assert worker.alive()
    receiver.release()
    print(f"\na trickling receiver's attempt was cut after {attempt.duration_ms / 1000:.1f} s")


def test_a_broker_outage_at_commit_degrades_but_never_loses(
    workers, api, hooked, reviewer_api, receiver
):
    escalation = escalate(api)
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CELERY_BROKER_URL=dead_broker):
        started = time.monotonic()
        response = reviewer_api(escalation.pk)
        took = time.monotonic() - started
    assert response.status_code == 201, response.content  # the decision committed
    assert took < 10
    delivery = Delivery.objects.get(escalation=escalation)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempt_count == 0
    assert status_of(escalation) == "decided"

    worker = workers()  # the broker is back, a worker runs: nothing was enqueued
    worker.wait_ready()
    time.sleep(0.5)
    assert receiver.requests == []

    # Beat's sweep, once the row is past the on-commit grace period, sends it.
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=True):
        assert sweep_deliveries_task() == 1
    (request,) = receiver.wait_for(1, timeout=10)
    assert request.header("handoff-delivery") == str(delivery.id)
    wait_until(lambda: status_of(escalation) == "resumed", timeout=10, what="resumed", log=worker.log)
    print(f"\ndecision with the broker down answered in {took * 1000:.0f} ms")
