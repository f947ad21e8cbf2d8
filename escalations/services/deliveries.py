"""Webhook deliveries of decisions: queued in the decision's transaction, claimed by a worker,
each attempt recorded, retried with backoff, given up on, redelivered by hand."""

import logging
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.utils import timezone

from escalations import selectors, signals
from escalations.errors import Conflict
from escalations.models import Agent, Decision, Delivery, DeliveryAttempt, Escalation, Event
from escalations.transport import events
from escalations.wire import escalation_dict
from operations import metrics

from . import callbacks, outbox, timeline

log = logging.getLogger(__name__)


DECIDED = "escalation.decided"
QUESTION = "escalation.question"


def queue_delivery(
    escalation: Escalation, url: str, now: datetime, *, event: str = DECIDED
) -> Delivery:
    """An outbox row, written in the transaction of the change it tells (a decision, or a
    reviewer's question: `event`), and after commit, the send task unless one is already
    waiting (it will send this row too: tasks.enqueue_deliveries).

    If the enqueue is lost (broker down, crash after commit), the periodic sweep sends it.
    """
    delivery = Delivery(
        escalation=escalation, agent_id=escalation.agent_id, url=url, payload={}, next_attempt_at=now,
        created_at=now,
    )
    delivery.payload = {
        "event": event,
        "delivery_id": str(delivery.id),
        "escalation": escalation_dict(escalation),
    }
    delivery.save(force_insert=True)
    transaction.on_commit(_enqueue_deliveries)
    return delivery


def _enqueue_deliveries() -> None:
    """After commit: the fast path. A broker outage is logged, never raised: the decision
    has committed, and the sweep sends the outbox row once the broker is back."""
    from escalations.tasks import enqueue_deliveries

    enqueue_deliveries()


def delivery_claim(
    *, delivery_id: object, lease_seconds: float | None = None, now: datetime | None = None
) -> Delivery | None:
    """Take a due delivery for sending (compare-and-swap), or None if it is not ours to send.

    None when the row is gone, already delivered or failed, not yet due, or held by a live
    lease (another worker is sending it). The lease (`lease_seconds`, by default
    OUTBOX_LEASE_SECONDS) outlives one attempt; when it lapses, the row is sent again.
    """
    now = now or timezone.now()
    claimed = outbox.claim(
        Delivery, delivery_id, now=now, lease_seconds=lease_seconds, returning=CLAIMED, count_claim=True
    )
    return None if claimed is None else _claimed(delivery_id, claimed, now)


def delivery_claim_next(*, lease_seconds: float | None = None, now: datetime | None = None) -> Delivery | None:
    """delivery_claim of the first due delivery, any agent's (oldest due first), passing over
    rows another sender is claiming; None when no delivery is due."""
    while True:
        at = now or timezone.now()
        claimed = outbox.claim_next(
            Delivery, now=at, lease_seconds=lease_seconds, returning=CLAIMED, count_claim=True
        )
        if claimed is None:
            return None
        delivery = _claimed(claimed[0], claimed[1:], at)
        if delivery is not None:
            return delivery
        # a poison row, given up: the next one


def delivery_leases(*, now: datetime | None = None) -> dict[str, float]:
    """The deliveries being sent (a live lease): id -> seconds until the lease lapses."""
    now = now or timezone.now()
    leased = Delivery.objects.filter(status=Delivery.Status.SENDING, lease_until__gte=now).values_list(
        "pk", "lease_until"
    )
    return {str(pk): (until - now).total_seconds() for pk, until in leased if until is not None}


def _claimed(delivery_id: object, claimed: tuple[Any, ...], now: datetime) -> Delivery | None:
    """The claimed row as a Delivery to send; None (the row given up) when it is poison."""
    url, payload, attempt_count, claim_count, created_at, escalation_id, lease, agent_id, secret = claimed
    escalation = Escalation(
        id=selectors.as_uuid(escalation_id), agent=Agent(id=agent_id, signing_secret=secret)
    )
    delivery = Delivery(
        id=uuid.UUID(str(delivery_id)),
        escalation=escalation,
        url=url,
        payload=selectors.as_json(payload),
        status=Delivery.Status.SENDING,
        attempt_count=attempt_count,
        claim_count=claim_count,
        created_at=selectors.as_time(created_at),
        lease_until=selectors.as_time(lease),
    )
    delivery._state.adding = False  # built from its row: a save() updates, never inserts
    if claim_count - attempt_count > MAX_CRASHED_CLAIMS:
        _fail_poison_delivery(delivery, now)
        return None
    return delivery


# What the claim (the webhook's hot path, one statement: outbox.claim) returns for sending:
# the row's columns, and its agent and signing secret (subqueries over the escalation).
CLAIMED = (
    "url", "payload", "attempt_count", "claim_count", "created_at", "escalation_id", "lease_until",
    "(SELECT e.agent_id FROM escalations_escalation e WHERE e.id = escalation_id)",
    "(SELECT a.signing_secret FROM escalations_escalation e JOIN escalations_agent a"
    " ON a.id = e.agent_id WHERE e.id = escalation_id)",
)


# What recording an attempt changes (the payload is never rewritten).
ATTEMPT_FIELDS = (
    "status",
    "attempt_count",
    "lease_until",
    "last_error",
    "next_attempt_at",
    "delivered_at",
)


# Workers that may die sending one delivery before it is given up as poison.
MAX_CRASHED_CLAIMS = 5


def _fail_poison_delivery(delivery: Delivery, now: datetime) -> None:
    crashed = delivery.claim_count - delivery.attempt_count - 1
    with transaction.atomic():
        delivery.status, delivery.lease_until = Delivery.Status.FAILED, None
        delivery.last_error = f"given up: {crashed} workers died while sending it"
        delivery.save(update_fields=["status", "lease_until", "last_error"])
        escalation = Escalation.objects.only("id", "agent_id", "status", "priority").get(
            pk=delivery.escalation_id
        )
        _delivery_failed(escalation, delivery, now)


def deliveries_sweep(*, now: datetime | None = None, grace_seconds: float = 10) -> list[str]:
    """The ids of deliveries to (re-)enqueue: due ones a lost message or a crashed worker
    left behind. At most periodic.BATCH_SIZE, oldest due first.

    Fresh pending rows (younger than `grace_seconds`) are left to their on-commit task. Each
    row returned is marked as enqueued for one lease (lease_until), so a backed-up queue is
    not flooded with copies every sweep; a lapsed SENDING lease goes back to retrying.
    """
    return outbox.outbox_sweep(Delivery, now=now or timezone.now(), grace_seconds=grace_seconds)


RETRYABLE = {408, 429}


def delivery_record_attempt(
    *,
    delivery: Delivery,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str = "",
    response_excerpt: str = "",
    now: datetime | None = None,
) -> Delivery:
    """Record one attempt and move the delivery on: delivered, retrying or failed.

    A 2xx marks the escalation resumed, unless it came after the decision's valid_until:
    then the escalation is expired instead (the agent must not act on it). Network errors, 408, 429 and 5xx retry with
    exponential backoff and jitter within the retry window (outbox's give-up rule:
    WEBHOOK_RETRY_FOR_SECONDS after the delivery was queued); other
    4xx stop. Returns the delivery; `next_attempt_at` tells when to try again.
    Raises Delivery.DoesNotExist if the row is gone.
    """
    now = now or timezone.now()
    if status_code is not None and 200 <= status_code < 300 and connection.vendor == "postgresql":
        return _record_delivered(
            delivery, started_at=started_at, duration_ms=duration_ms, status_code=status_code,
            response_excerpt=response_excerpt, now=now,
        )
    return _record_in_transaction(
        delivery, started_at=started_at, duration_ms=duration_ms, status_code=status_code, error=error,
        response_excerpt=response_excerpt, now=now,
    )


def _record_in_transaction(
    delivery: Delivery, *, started_at: datetime, duration_ms: int, status_code: int | None, error: str,
    response_excerpt: str, now: datetime,
) -> Delivery:
    """delivery_record_attempt through the ORM, in one transaction: every failure, and a 2xx
    where the database is not PostgreSQL (DELIVERED_SQL is the same 2xx in one statement)."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .only("id", "escalation_id", "created_at", "payload", *ATTEMPT_FIELDS)
            .get(pk=delivery.pk)
        )
        # Someone else finished it meanwhile (our lease lapsed mid-attempt): record the
        # attempt, and only a success may still change the outcome.
        finished = delivery.status in (Delivery.Status.DELIVERED, Delivery.Status.FAILED)
        number = delivery.attempt_count + 1
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error[:500],
            response_excerpt=response_excerpt[:500],
        )
        delivery.attempt_count = number
        delivery.lease_until = None
        escalation = Escalation.objects.only(
            "id", "agent_id", "status", "updated_at", "priority"
        ).get(pk=delivery.escalation_id)
        ok = status_code is not None and 200 <= status_code < 300
        metrics.count_on_commit(metrics.WEBHOOK_ATTEMPTS, result="success" if ok else "failure")
        if ok:
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            # Only the decision's 2xx means the agent has it; a question's changes no status.
            if delivery.payload.get("event", DECIDED) == DECIDED and callbacks.mark_resumed(
                escalation, actor="webhook", now=now, data={"delivery": str(delivery.id)}
            ):
                decision = Decision.objects.only("decided_at").get(escalation_id=escalation.pk)
                latency = (now - decision.decided_at).total_seconds()
                metrics.observe_on_commit(metrics.DECISION_TO_WEBHOOK, latency)
            else:
                # Answered after the decision's valid_until: not resumed, expired.
                callbacks.expire_if_past(escalation, now, actor="webhook")
        elif not finished:
            retryable = status_code is None or status_code >= 500 or status_code in RETRYABLE
            delivery.last_error = (error or f"HTTP {status_code}")[:500]
            next_at = outbox.retry_at(number, now=now, give_up_at=delivery.give_up_at())
            if retryable and next_at is not None:
                delivery.status = Delivery.Status.RETRYING
                delivery.next_attempt_at = next_at
            else:
                delivery.status = Delivery.Status.FAILED
                _delivery_failed(escalation, delivery, now)
        delivery.save(update_fields=ATTEMPT_FIELDS)
    return delivery


def _record_delivered(
    delivery: Delivery, *, started_at: datetime, duration_ms: int, status_code: int,
    response_excerpt: str, now: datetime,
) -> Delivery:
    """A 2xx on PostgreSQL, in one statement (DELIVERED_SQL, the webhook's hot path): what
    _record_in_transaction does with a 2xx (tests/test_delivery_sql.py holds them equal)."""
    params = {
        "id": delivery.pk, "now": now, "started": started_at, "duration": duration_ms,
        "code": status_code, "excerpt": response_excerpt[:500],
        **timeline.record_params(Event.Kind.RESUMED, actor="webhook", now=now, data={"delivery": str(delivery.pk)}),
    }
    with connection.cursor() as cursor:
        cursor.execute(DELIVERED_SQL, params)
        row = cursor.fetchone()
    if row is None:
        raise Delivery.DoesNotExist(f"delivery {delivery.pk} is gone")
    escalation_id, number, agent_id, priority, decided_at = row
    metrics.count(metrics.WEBHOOK_ATTEMPTS, result="success")
    if agent_id is not None:  # resumed
        escalation = Escalation(
            id=escalation_id, agent_id=agent_id, priority=priority, status=Escalation.Status.RESUMED, updated_at=now
        )
        events.announce(escalation, Event.Kind.RESUMED, actor="webhook")
        if decided_at is not None:
            metrics.observe_on_commit(metrics.DECISION_TO_WEBHOOK, (now - decided_at).total_seconds())
    else:  # a question's delivery, resumed already, or answered after the decision's valid_until
        escalation = Escalation.objects.select_related("agent").only(
            "id", "agent_id", "status", "updated_at", "priority", "agent__name"
        ).get(pk=escalation_id)
        callbacks.expire_if_past(escalation, now, actor="webhook")
    delivery.status, delivery.attempt_count, delivery.delivered_at = Delivery.Status.DELIVERED, number, now
    delivery.lease_until, delivery.last_error = None, ""
    return delivery


# The delivery delivered (its attempt counted) and the attempt's row; for a decision's delivery,
# the escalation resumed when it is decided and its decision still valid (no valid_until, or
# not past it: callbacks.mark_resumed's rule; tests/test_delivery_sql.py holds the statement
# equal to _record_in_transaction),
# with its `resumed` event. Returns the escalation's agent, priority and decision time when
# it resumed (NULLs otherwise), or no row when the delivery is gone.
DELIVERED_SQL = f"""
WITH d AS (
    UPDATE escalations_delivery
    SET status = '{Delivery.Status.DELIVERED}', attempt_count = attempt_count + 1, lease_until = NULL,
        last_error = '', delivered_at = %(now)s
    WHERE id = %(id)s
    RETURNING id, escalation_id, attempt_count, COALESCE(payload ->> 'event', '{DECIDED}') = '{DECIDED}' AS decision
), attempt AS (
    INSERT INTO escalations_deliveryattempt
        (delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt)
    SELECT id, attempt_count, %(started)s, %(duration)s, %(code)s, '', %(excerpt)s FROM d
), resumed AS (
    UPDATE escalations_escalation e SET status = '{Escalation.Status.RESUMED}', updated_at = %(now)s
    FROM d
    WHERE e.id = d.escalation_id AND d.decision AND e.status = '{Escalation.Status.DECIDED}'
      AND NOT EXISTS (
          SELECT 1 FROM escalations_decision x WHERE x.escalation_id = e.id AND x.valid_until < %(now)s
      )
    RETURNING e.id, e.agent_id, e.priority,
        (SELECT x.decided_at FROM escalations_decision x WHERE x.escalation_id = e.id) AS decided_at
), event AS ({timeline.record_sql("resumed")})
SELECT d.escalation_id, d.attempt_count, resumed.agent_id, resumed.priority, resumed.decided_at
FROM d LEFT JOIN resumed ON true
"""  # noqa: S608 (constants of the models, never input)


def _delivery_failed(escalation: Escalation, delivery: Delivery, now: datetime) -> None:
    """Inside a transaction: a delivery failed for good. The timeline says so, and
    notifications are told (their outbox rows commit with it)."""
    data = {
        "delivery": str(delivery.id),
        "error": delivery.last_error,
        "attempts": delivery.attempt_count,
    }
    timeline.record(escalation, Event.Kind.DELIVERY_FAILED, actor="webhook", now=now, data=data)
    metrics.count_on_commit(metrics.WEBHOOK_FAILURES)
    signals.notable_in_transaction("delivery_failed", escalation=escalation, data=data)


def delivery_redeliver(
    *,
    escalation: Escalation,
    user: AbstractBaseUser | AnonymousUser | None = None,
    now: datetime | None = None,
) -> Delivery:
    """Send a decided escalation's decision again, as a new delivery (new delivery_id)."""
    now = now or timezone.now()
    with transaction.atomic():
        escalation = Escalation.objects.select_related("agent", "run", "decision").get(
            pk=escalation.pk
        )
        if escalation.status not in (Escalation.Status.DECIDED, Escalation.Status.RESUMED):
            raise Conflict("Only a decided escalation can be redelivered.")
        if not escalation.agent.resume_url:
            raise Conflict("The agent has no resume_url to deliver to.")
        delivery = queue_delivery(escalation, escalation.agent.resume_url, now)
        timeline.record(
            escalation,
            Event.Kind.REDELIVERY,
            actor=user.get_username() if user else "",
            now=now,
            data={"delivery": str(delivery.id)},
        )
    return delivery
