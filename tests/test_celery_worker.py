"""A real Celery worker on Redis delivering decisions (issue 2 "Done when"; perf-reliability
§3.2 R3, R4): a `celery worker -P prefork` subprocess on the test database, a real HTTP
receiver, a worker child killed with SIGKILL mid-POST, and a broker outage at commit time.

Needs Redis and PostgreSQL (REDIS_URL, DATABASE_URL): skipped locally without them, a
failure in CI."""

import contextlib
import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from conftest import free_port, make_package, need
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from processes import Process, children_of, test_database_url
from receiver import Reply

from escalations import webhooks
from escalations.models import Delivery, DeliveryAttempt, Escalation, Event
from escalations.tasks import sweep_deliveries_task
from handoff_site.celery import app
from reviews.services import reviewer_token_issue

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(settings.BASE_DIR)
CELERY = Path(sys.executable).with_name("celery")
LEASE_SECONDS = 4
WORKER_ENV = {
    "WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS),
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "WEBHOOK_BACKOFF_BASE_SECONDS": "0.4",
    "WEBHOOK_BACKOFF_MAX_SECONDS": "2",
}


@pytest.fixture(autouse=True)
def _services(settings):
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    settings.WEBHOOK_LEASE_SECONDS = LEASE_SECONDS  # the sweep here agrees with the worker


# ---------------------------------------------------------------- the worker subprocess


def purge_queue() -> None:
    """Stale messages of other tests (their ids are not in this database) go first."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def socket_owner(local_port: int, remote_port: int, pids: list[int]) -> int | None:
    """The pid among `pids` holding the TCP connection 127.0.0.1:local_port -> :remote_port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if int(local.rsplit(":", 1)[1], 16) == local_port and int(
                    remote.rsplit(":", 1)[1], 16
                ) == remote_port:
                    inodes.add(f"socket:[{inode}]")
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


class Worker(Process):
    """`celery -A handoff_site worker -P prefork -c 2` on the test database and Redis."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.node = f"test-{uuid.uuid4().hex[:8]}@%h"
        environment = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": os.environ["REDIS_URL"],
            "DB_POOL": "0",
            "SECRET_KEY": "test-worker-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_EMBEDDED_WORKER": "0",
            # production settings refuse loopback webhooks; the tests' receivers are on it
            "OUTBOUND_ALLOW_PRIVATE": "1",
            "PYTHONUNBUFFERED": "1",
            **WORKER_ENV,
            **(env or {}),
        }
        super().__init__(
            f"worker-{self.node.split('@')[0]}",
            [
                str(CELERY), "-A", "handoff_site", "worker", "-P", "prefork", "-c", "2",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-Q", "celery", "-n", self.node, "--loglevel", "INFO",
            ],
            environment,
            log_dir,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30) -> float:
        """Until the worker answers a ping over the broker; returns how long it took."""
        started = time.monotonic()
        hostname = self.node.replace("%h", os.uname().nodename)
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.log()}")
            if app.control.ping(destination=[hostname], timeout=0.5):
                return time.monotonic() - started
        raise AssertionError(f"the worker was not ready within {timeout:g} s:\n{self.log()}")


@pytest.fixture
def workers(tmp_path):
    """A factory of worker subprocesses; every one is stopped at the end, whatever happens."""
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(tmp_path, env)
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


def wait_until(condition, *, timeout: float, what: str, worker: Worker | None = None, tick=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            log = f"\nworker log:\n{worker.log()}" if worker else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{log}")
        if tick:
            tick()
        time.sleep(0.05)


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
    wait_until(lambda: status_of(escalation) == "resumed", timeout=10, what="resumed", worker=worker)
    delivery = Delivery.objects.get(escalation=escalation)
    assert delivery.status == Delivery.Status.DELIVERED
    assert request.header("handoff-delivery") == str(delivery.id)

    # A 500 is retried by the worker on its own (a countdown), with the same delivery id.
    receiver.script(500)
    second = escalate(api, run_id="run-43")
    assert reviewer_api(second.pk).status_code == 201
    wait_until(lambda: status_of(second) == "resumed", timeout=15, what="the retry", worker=worker)
    failed, ok = receiver.requests[1:]
    assert failed.answered == 500 and ok.answered == 200
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


def test_a_worker_child_killed_mid_post_loses_nothing(workers, api, hooked, reviewer_api, receiver):
    receiver.script(Reply(200, delay=60))  # the first POST hangs until its sender dies
    first = workers()
    first.wait_ready()
    escalation = escalate(api)
    assert reviewer_api(escalation.pk).status_code == 201
    (held,) = receiver.wait_for(1, timeout=10)
    delivery = Delivery.objects.get(escalation=escalation)
    assert delivery.status == Delivery.Status.SENDING

    children = children_of(first.pid)
    victim = socket_owner(held.client[1], receiver.port, children)
    assert victim in children, (victim, children, first.log())
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: not Path(f"/proc/{victim}").exists()
        or "Z" in Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[0],
        timeout=5,
        what="the child to die",
    )
    t0 = time.monotonic()
    first.stop()  # and a new worker takes over
    stopped_in = time.monotonic() - t0
    second = workers()
    second.wait_ready()
    t1 = time.monotonic()

    # As beat would: the sweep takes the row back once the dead child's lease lapses.
    wait_until(
        lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.DELIVERED,
        timeout=LEASE_SECONDS + 20,
        what="the delivery to complete after the crash",
        worker=second,
        tick=sweep_deliveries_task,
    )
    recovered_in = time.monotonic() - t1
    receiver.release()
    wait_until(lambda: status_of(escalation) == "resumed", timeout=5, what="resumed")
    print(
        f"\nkilled child {victim}; old worker stopped in {stopped_in:.1f} s; delivered "
        f"{recovered_in:.1f} s after the new worker was ready (lease {LEASE_SECONDS} s)"
    )

    requests = receiver.requests
    assert 1 < len(requests) <= 2, [r.answered for r in requests]
    assert {r.header("handoff-delivery") for r in requests} == {str(delivery.id)}
    assert {r.json()["delivery_id"] for r in requests} == {str(delivery.id)}
    assert [r.answered for r in requests].count(200) == 1
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.RESUMED).count() == 1
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery))
    assert [a.status_code for a in attempts] == [200]  # the killed attempt left no row


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
    assert delivery.status == Delivery.Status.PENDING and delivery.attempt_count == 0
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
    wait_until(lambda: status_of(escalation) == "resumed", timeout=10, what="resumed", worker=worker)
    print(f"\ndecision with the broker down answered in {took * 1000:.0f} ms")
