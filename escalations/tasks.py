"""Celery tasks of the domain: webhook delivery and the periodic jobs. Ids in, services do the work.

Every task is safe to run twice, late, or on a row that is gone (at least once: acks_late
and reject_on_worker_lost put a killed worker's message back). None raises for bad input or
a vanished row; state lives in the database, never in the message.
"""

# celery-types makes Task generic for the checker only: annotations stay unevaluated.
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

import redis
from celery import Task, shared_task
from django.conf import settings
from django.db.models import Model
from django.utils import timezone
from kombu.exceptions import OperationalError

from escalations.transport import webhooks
from escalations.transport.wakeup import REDIS_UNAVAILABLE
from operations.redis_clients import redis_client

from . import services
from .models import Delivery, MachineOffer
from .services import outbox, periodic

log = logging.getLogger(__name__)

# Short retries ride on Celery's countdown; longer waits are left to the sweep, so no
# message sits in the broker near its visibility timeout.
COUNTDOWN_LIMIT_SECONDS = 300
# Fresh pending deliveries belong to their on-commit task; the sweep gives them this long.
SWEEP_GRACE_SECONDS = 10
# A periodic job repeats its batch while full batches come, for at most this long.
PERIODIC_BUDGET_SECONDS = 30


# A message that comes back to a row still leased to its dead sender returns this long
# after the lease lapses.
LEASE_SLACK_SECONDS = 0.5

# The options of a task sending one outbox row. At least once whatever the settings say:
# acknowledged after it ran, and put back when the child running it dies (the DB claim
# makes a second run harmless). One attempt is bounded (settings, "one attempt of the
# outboxes"), so the claim's lease outlasts it.
OUTBOX_SEND_TASK: dict[str, Any] = {
    "bind": True,
    "ignore_result": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": settings.OUTBOX_SOFT_TIME_LIMIT,
    "time_limit": settings.OUTBOX_TIME_LIMIT,
}

_P = ParamSpec("_P")


def outbox_send_task(fun: Callable[Concatenate[Task[_P, None], _P], None]) -> Task[_P, None]:
    """shared_task(**OUTBOX_SEND_TASK) with its type: a bound task (it takes itself first).
    celery-types types shared_task's options one by one (the time limits as int; ours are
    seconds as float), so the options spelt as a dict match no overload and give Any."""
    task: Task[_P, None] = shared_task(**OUTBOX_SEND_TASK)(fun)
    return task


@outbox_send_task
def deliver_webhook_task(self: Task[[str], None], delivery_id: str) -> None:
    """Send one delivery (one attempt) if it is due and nobody else is sending it: a retry's
    countdown, the sweep's copy, a lease followed (a decision's first attempt is sent by its
    send task, deliver_due_task).

    Claims the row by compare-and-swap (pending/retrying and due, or a lapsed lease ->
    sending with a lease), POSTs the signed payload, records the attempt (send_delivery). A message
    put back because the worker child sending it died finds the row still leased: it comes
    back when the lease lapses (follow_lease). Not ours, not due, gone, or a malformed id:
    returns without doing anything. Only a database outage raises (the row stays due, and
    the sweep sends it).
    """
    delivery = services.delivery_claim(delivery_id=delivery_id, lease_seconds=lease_seconds(self))
    if delivery is None:
        follow_lease(self, Delivery, delivery_id)
        return
    send_delivery(delivery)


# A send task goes on claiming the next due delivery while it has run for less than this;
# past it, the rest go to a task of their own (one attempt's bound stays as it was).
BATCH_SECONDS = 1.0
# The mark "a deliver_due_task is waiting" (Redis, beside the broker's queue). It lapses on
# its own, so a task lost with its worker holds nobody back longer than this; the rows it
# would have sent are the sweep's.
MARK_KEY = "handoff:deliveries:queued"
MARK_SECONDS = SWEEP_GRACE_SECONDS


def batch_send_task(fun: Callable[Concatenate[Task[_P, None], _P], None]) -> Task[_P, None]:
    """outbox_send_task for a task that goes on claiming rows for BATCH_SECONDS: its time
    limits are one attempt's plus that (so its last attempt still has the whole bound)."""
    task: Task[_P, None] = shared_task(
        **{
            **OUTBOX_SEND_TASK,
            "soft_time_limit": settings.OUTBOX_SOFT_TIME_LIMIT + BATCH_SECONDS,
            "time_limit": settings.OUTBOX_TIME_LIMIT + BATCH_SECONDS,
        }
    )(fun)
    return task


@batch_send_task
def deliver_due_task(self: Task[[], None]) -> None:
    """Send the due deliveries, any agents', oldest due first, one attempt each, in one task:
    one broker message (and Celery's cost of one) for all the decisions made while it waited,
    however many agents they are for.

    It takes down the mark first: from then on a new delivery publishes a task of its own,
    so a delivery committed after this task's last claim is never left waiting
    (enqueue_deliveries). Each delivery is claimed as deliver_webhook_task claims one (a
    compare-and-swap with a lease; rows another sender is claiming are passed over), then
    sent and recorded (send_delivery). Past BATCH_SECONDS it stops claiming and hands the
    rest to a task of its own; the time limits are one attempt's plus that, so the last
    attempt still has its whole bound and every lease outlives the task. When a second
    delivery is due it makes sure another task waits, so that a stream or a backlog (a
    worker back from an outage, a burst) is shared by the worker's children; their POSTs
    overlap, so two decisions of one agent may reach it in either order, as the contract
    allows (each carries its escalation). A message put back because the child running it
    died follows the leases that child may have left (follow_leases).
    """
    _send_due(self)


@batch_send_task
def deliver_agent_task(self: Task[[int], None], agent_id: int) -> None:
    """The send task of the release before, which named one agent: its messages still in
    the broker when this release starts are sent as deliver_due_task sends (any agent's due
    rows). Nothing publishes it any more; it can go once no such release runs."""
    _send_due(self)


def _send_due(task: Task[Any, None]) -> None:
    """deliver_due_task's work, for the message of `task`."""
    _unmark()
    follow_leases(task)
    deadline = time.monotonic() + BATCH_SECONDS
    sent = 0
    while delivery := services.delivery_claim_next(lease_seconds=lease_seconds(task)):
        if sent == 1:
            enqueue_deliveries()  # more than one due: another worker child may take a share
        send_delivery(delivery)
        sent += 1
        if time.monotonic() > deadline:
            enqueue_deliveries()
            return


def send_delivery(delivery: Delivery) -> None:
    """POST a claimed delivery, signed, and record the attempt. A failure that will be
    retried within COUNTDOWN_LIMIT_SECONDS is re-enqueued with a countdown; later retries
    are the sweep's."""
    delivery_id = str(delivery.id)
    started = timezone.now()
    outcome = webhooks.post(
        delivery.url,
        delivery.payload,
        delivery_id=delivery_id,
        secret=delivery.escalation.agent.signing_secret,
    )
    try:
        delivery = services.delivery_record_attempt(
            delivery=delivery,
            started_at=started,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error,
            response_excerpt=outcome.excerpt,
        )
    except Delivery.DoesNotExist:
        log.info("delivery %s vanished during its attempt", delivery_id)
        return
    log.info(
        "delivery %s attempt %d: %s, now %s",
        delivery_id, delivery.attempt_count, outcome.status_code or outcome.error, delivery.status,
        extra={
            "delivery_id": delivery_id,
            "escalation_id": str(delivery.escalation_id),
            "http_status": outcome.status_code,
            "delivery_status": delivery.status,
        },
    )
    if delivery.status == Delivery.Status.RETRYING:
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        if wait <= COUNTDOWN_LIMIT_SECONDS:
            _enqueue(delivery_id, countdown=max(0.0, wait))


def enqueue_deliveries() -> bool:
    """After a delivery commits: make sure a send task is waiting to send it. Publishes
    deliver_due_task only when the mark was not set (a Redis SET NX with an expiry: one
    round trip, cheaper than the publish it saves); when it was, the waiting task will
    claim this delivery too, since it takes the mark down before its first claim. Without
    Redis (the embedded mode's in-memory broker) it always publishes. A failure is logged,
    not raised (publish; the mark is taken down again): the sweep sends the rows. Returns
    whether a task is waiting."""
    marks = _marks()
    missed = "due deliveries; the sweep will send them"
    try:
        if marks is not None and not marks.set(MARK_KEY, 1, nx=True, ex=MARK_SECONDS):
            return True
    except REDIS_UNAVAILABLE as exc:
        log.warning("not enqueued: %s (%s: %s)", missed, type(exc).__name__, exc)
    else:
        if publish(deliver_due_task, (), missed=missed):
            return True
    _unmark()
    return False


def _unmark() -> None:
    marks = _marks()
    if marks is not None:
        with contextlib.suppress(*REDIS_UNAVAILABLE):  # it lapses on its own
            marks.delete(MARK_KEY)


def _marks() -> redis.Redis | None:
    """A client of the broker's Redis, or None when the broker is not Redis. The timeouts are
    the broker's own (settings)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    return redis_client(
        url, timeout=options["socket_timeout"], connect_timeout=options["socket_connect_timeout"]
    )


@outbox_send_task
def offer_first_look_task(self: Task[[str], None], offer_id: str) -> None:
    """Send one first-look offer to a machine reviewer (one attempt), signed with the
    machine's secret; a failure is retried by countdown while the look lasts."""
    row = services.offer_claim(offer_id=offer_id)
    if row is None:
        return
    outcome = webhooks.post(row.url, row.payload, delivery_id=offer_id, secret=row.secret)  # type: ignore[attr-defined]
    row = services.offer_record(row=row, status_code=outcome.status_code, error=outcome.error)
    log.info("first-look offer %s attempt %d: %s, now %s", offer_id, row.attempt_count,
             outcome.status_code or outcome.error, row.status)
    if row.status == MachineOffer.Status.RETRYING:
        wait = (row.next_attempt_at - timezone.now()).total_seconds()
        enqueue_send(offer_first_look_task, offer_id, countdown=max(0.0, wait))


def _enqueue(delivery_id: str, countdown: float = 0) -> bool:
    """Enqueue a delivery; a broker error is logged, not raised: the sweep catches up."""
    return enqueue_send(deliver_webhook_task, delivery_id, countdown=countdown)


def enqueue_send(task: Task[[str], None], row_id: str, *, countdown: float = 0) -> bool:
    """Enqueue the sending of an outbox row (publish): the sweep catches up on one missed.
    Returns whether it was enqueued."""
    return publish(task, (row_id,), countdown=countdown, missed=f"{task.name} {row_id}; the sweep will retry")


# What publishing a task raises when the broker is unreachable (kombu's, or the Redis
# client's when it escapes kombu).
BROKER_UNAVAILABLE = (OperationalError, *REDIS_UNAVAILABLE)


def publish(task: Task[Any, Any], args: tuple[Any, ...], *, missed: str, countdown: float = 0) -> bool:
    """Publish `task` after a commit, whose row a beat sweep sends if no task does: so it
    never raises (the caller's change is saved; its answer must not turn into an error). A
    broker outage is a warning; anything else is a bug, logged with its traceback. `missed`
    names what was not enqueued and what catches up. Returns whether it was published."""
    try:
        task.apply_async(args, countdown=countdown)
    except BROKER_UNAVAILABLE as exc:
        log.warning("not enqueued: %s (%s: %s)", missed, type(exc).__name__, exc)
        return False
    except Exception:
        log.exception("not enqueued, by an unexpected error: %s", missed)
        return False
    return True


def lease_seconds(task: Task[Any, Any]) -> float:
    """The lease for this attempt: past its hard time limit as its message carries it (the
    sender's settings stamp it), so a live worker never loses its lease even where the
    sender and this worker were configured differently."""
    hard = (task.request.timelimit or (None, None))[0] or settings.OUTBOX_TIME_LIMIT
    return max(settings.OUTBOX_LEASE_SECONDS, float(hard) + 1)


def follow_lease(task: Task[[str], None], model: type[Model], row_id: str) -> None:
    """After a refused claim: if this message was put back (its worker child died while
    sending, acks_late + reject_on_worker_lost) and the row is still leased to that dead
    sender, send it again as soon as the lease lapses rather than at the next sweep.

    Only a redelivered message follows the lease: a duplicate (say, the sweep's copy of a
    row its own task is sending) is dropped as before, so copies never multiply.
    """
    delivery_info = task.request.delivery_info or {}
    if not delivery_info.get("redelivered"):
        return
    left = outbox.outbox_lease_left(model, row_id)
    if left is not None:
        log.info("%s %s: its sender died; again in %.1f s, when its lease lapses", task.name, row_id, left)
        enqueue_send(task, row_id, countdown=left + LEASE_SLACK_SECONDS)


def follow_leases(task: Task[Any, None]) -> None:
    """follow_lease for a send task put back after its child died: each delivery still
    leased (the dead child's, or a live sender's: its copy then finds the row sent, and is
    dropped) is sent again as soon as its lease lapses."""
    delivery_info = task.request.delivery_info or {}
    if not delivery_info.get("redelivered"):
        return
    for delivery_id, left in services.delivery_leases().items():
        log.info("delivery %s: its sender may have died; again in %.1f s, when its lease lapses", delivery_id, left)
        _enqueue(delivery_id, countdown=left + LEASE_SLACK_SECONDS)


@shared_task(ignore_result=True)
def sweep_deliveries_task() -> int:
    """Re-enqueue deliveries that a lost message or a crashed worker left behind.

    Due pending/retrying rows (pending ones once older than SWEEP_GRACE_SECONDS) and
    sending rows whose lease lapsed, at most BATCH_SIZE per run, each marked so that the
    next runs leave it alone for one lease. Returns how many were enqueued.
    """
    enqueued = 0
    for delivery_id in services.deliveries_sweep(grace_seconds=SWEEP_GRACE_SECONDS):
        if not _enqueue(delivery_id):
            break  # the broker is down: stop; the marks lapse and the next sweep retries
        enqueued += 1
    return enqueued


def repeat(job: Callable[[], int], name: str, batch_size: int | None = None) -> int:
    """Run a batch job while it returns full batches (of `batch_size`, by default
    periodic.BATCH_SIZE), within PERIODIC_BUDGET_SECONDS."""
    deadline = time.monotonic() + PERIODIC_BUDGET_SECONDS
    total = 0
    while True:
        count = job()
        total += count
        if count < (batch_size or periodic.BATCH_SIZE) or time.monotonic() > deadline:
            break
    if total:
        log.info("%s: %d", name, total)
    return total


@shared_task(ignore_result=True)
def apply_timeouts_task() -> int:
    """Decide, by "timeout", open escalations past respond_by with their timeout_option
    (services.timeouts_apply, repeated while batches are full). Returns how many."""
    return repeat(services.timeouts_apply, "timeouts applied")


@shared_task(ignore_result=True)
def expire_claims_task() -> int:
    """Return lapsed claims to the queue (services.claims_expire). Returns how many."""
    return repeat(services.claims_expire, "claims expired")


@shared_task(ignore_result=True)
def expire_decisions_task() -> int:
    """Expire decided escalations left unacknowledged past their decision's valid_until
    (services.decisions_expire, repeated while batches are full). Returns how many."""
    return repeat(services.decisions_expire, "decisions expired")


@shared_task(ignore_result=True)
def advance_levels_task() -> int:
    """Move open escalations up the escalation levels whose delay has passed
    (services.levels_advance, repeated while batches are full). Returns how many moved."""
    return repeat(services.levels_advance, "escalation levels raised")


@shared_task(ignore_result=True)
def refresh_priorities_task() -> int:
    """Recompute open escalations' priorities, batch by batch. Returns how many changed."""
    return services.priorities_refresh()


@shared_task(ignore_result=True)
def purge_idempotency_keys_task() -> int:
    """Forget idempotency keys past IDEMPOTENCY_RETENTION_SECONDS. Returns how many."""
    return repeat(services.idempotency_keys_purge, "idempotency keys purged")
