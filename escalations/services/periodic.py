"""Periodic jobs (beat): lapsed claims freed, timeouts applied, priorities refreshed,
escalation levels advanced, decisions past their lifetime expired, idempotency keys forgotten. Each takes at most BATCH_SIZE rows
a call, in short transactions."""

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from escalations import levels, policy, selectors, signals
from escalations.errors import Conflict, DomainError, NotFound
from escalations.models import Decision, Escalation, Event
from escalations.models.escalations import EXPIRES
from escalations.transport import events

from . import callbacks, decisions, first_look, intake, timeline

log = logging.getLogger(__name__)


# Each periodic job handles at most BATCH_SIZE rows per call (one short transaction per
# row or batch); its task calls it again while full batches keep coming, within a budget.
BATCH_SIZE = 200

# Where an escalation's levels' clock starts (Escalation.clock_start), in SQL: when people
# were told (creation, or the end of a machine's first look) plus the time it spent waiting
# on the agent's answers to reviewers' questions.
CLOCK_START = ExpressionWrapper(
    Coalesce("first_look_until", "created_at") + F("waited_on_agent"), output_field=DateTimeField()
)


def claims_expire(*, now: datetime | None = None) -> int:
    """Return lapsed claims to the queue, with a claim_expired event. Returns how many."""
    now = now or timezone.now()
    expired = 0
    stale = (
        Escalation.objects.filter(status=Escalation.Status.CLAIMED, claimed_until__lt=now)
        .order_by("claimed_until")
        .values_list("pk", flat=True)[:BATCH_SIZE]
    )
    for pk in list(stale):
        with transaction.atomic():
            escalation = Escalation.objects.select_related("claimed_by").filter(pk=pk).first()
            if escalation is None:
                continue
            holder = escalation.claimed_by.get_username() if escalation.claimed_by else ""
            if Escalation.objects.filter(
                pk=pk, status=Escalation.Status.CLAIMED, claimed_until__lt=now
            ).update(
                status=Escalation.Status.PENDING,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            ):
                escalation.status = Escalation.Status.PENDING
                if escalation.first_look_by_id and escalation.first_look_by_id == escalation.claimed_by_id:
                    # A machine's first look that ran out: people are told now.
                    escalation.first_look_by = escalation.claimed_by
                    first_look.end_in_transaction(escalation, outcome="timed out", now=now)
                else:
                    timeline.record(
                        escalation, Event.Kind.CLAIM_EXPIRED, actor=holder, now=now, announce=False
                    )
                events.announce(escalation, "released", actor="timeout")
                expired += 1
    return expired


def decisions_expire(*, now: datetime | None = None) -> int:
    """Expire decided escalations the agent never acknowledged (nor took by webhook)
    before their decision's valid_until: status `expired`, an `expired` event, a live
    update (callbacks.expire_if_past, a conditional UPDATE per row in its own short
    transaction: an ack landing first wins). At most BATCH_SIZE rows, the longest past
    first. Returns how many."""
    now = now or timezone.now()
    due = (  # one range of esc_expires_idx (models.EXPIRES), however many decisions there are
        Escalation.objects.filter(EXPIRES, expires_at__lt=now)
        .order_by("expires_at")
        .only("pk", "status", "updated_at", "agent_id", "priority")[:BATCH_SIZE]
    )
    return sum(
        callbacks.expire_if_past(escalation, now, actor="decision lifetime") for escalation in list(due)
    )


def timeouts_apply(*, now: datetime | None = None) -> int:
    """Decide open escalations whose respond_by has passed with their timeout_option.

    The decision is by "timeout" and is delivered like any other. Never before respond_by;
    never over a decision that landed first; never an irreversible option (the API refuses
    one as timeout_option; a row that has one anyway is left to a human and logged).
    Returns how many were decided.
    """
    now = now or timezone.now()
    applied = 0
    due = (
        Escalation.objects.in_queue()
        .filter(respond_by__lte=now)
        .exclude(timeout_option="")
        .order_by("respond_by")
        .values_list("pk", "timeout_option", "options")[:BATCH_SIZE]
    )
    for pk, option, options in list(due):
        chosen = next((o for o in options or [] if o.get("key") == option), None)
        if chosen is None or chosen.get("irreversible"):
            log.warning(
                "escalation %s: timeout_option %r is not applicable; left to a human", pk, option
            )
            continue
        try:
            decisions.escalation_decide(
                escalation_id=pk,
                request=decisions.DecisionRequest(kind=Decision.Kind.OPTION, option=option),
                decided_by_type=Decision.DecidedBy.TIMEOUT,
                now=now,
            )
            applied += 1
        except (Conflict, NotFound):
            pass  # decided first, a question asked meanwhile, or the row is gone
        except DomainError as exc:
            log.warning("escalation %s: timeout not applied: %s", pk, exc)
    return applied


def priorities_refresh(*, now: datetime | None = None) -> int:
    """Recompute the priority of open escalations (deadlines approach). Returns changes.

    Walks the queue oldest first, BATCH_SIZE rows per query and per update: each batch is one
    range of esc_open_age_idx (keyset on created_at and pk), so a run reads the queue once
    however long the history (by pk, each batch read and sorted every open row after the last;
    bench/README.md, "Beat's jobs at scale"). Rows are read as values, not model instances.
    """
    now = now or timezone.now()
    steps = selectors.level_steps_by_domain()
    changed, after = 0, None
    while True:
        count, after = _priorities_refresh_batch(now, after, steps)
        changed += count
        if after is None:
            return changed


def _priorities_refresh_batch(
    now: datetime, after: tuple[datetime, uuid.UUID] | None, steps: dict[str, list[levels.Step]]
) -> tuple[int, tuple[datetime, uuid.UUID] | None]:
    """One batch: (how many changed, the (created_at, pk) to continue after, or None at the end).

    An escalation above level 1 keeps its level's boost (escalations.levels.boost_at).
    """
    rows = Escalation.objects.in_queue().order_by("created_at", "pk")
    if after is not None:
        created_at, pk = after
        rows = rows.filter(created_at__gte=created_at).exclude(created_at=created_at, pk__lte=pk)
    values = ("created_at", "pk", "domain", "priority", "priority_reasons", *intake.URGENCY_FIELDS)
    batch = list(rows.values_list(*values)[:BATCH_SIZE])
    changed = []
    for _, pk, domain, priority, reasons, *fields in batch:
        boost = levels.boost_at(steps.get(domain, ()), fields[LEVEL])
        score = policy.priority_for(intake.urgency_of_values(fields, boost), now)
        if (score.score, score.reasons) != (priority, reasons):
            changed.append(Escalation(pk=pk, priority=score.score, priority_reasons=score.reasons))
    Escalation.objects.bulk_update(changed, ["priority", "priority_reasons"])
    return len(changed), (batch[-1][:2] if len(batch) == BATCH_SIZE else None)


# Where the level is among a row's URGENCY_FIELDS.
LEVEL = intake.URGENCY_FIELDS.index("level")


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Forget up to BATCH_SIZE idempotency keys past the retention window (the escalations
    stay). Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_RETENTION_SECONDS)
    stale = list(
        Escalation.objects.filter(idempotency_key__isnull=False, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:BATCH_SIZE]
    )
    return Escalation.objects.filter(pk__in=stale).update(idempotency_key=None)


def escalations_delete(*, ids: Iterable[uuid.UUID]) -> int:
    """Delete escalations with everything that hangs off them: decision, timeline events,
    approvals, flag review, deliveries and their attempts, notifications. Their runs stay
    (other escalations and the insights' run counts use them), and so does the agent's
    decisions feed cursor (Agent.decision_seq). Only retention calls this (operations
    .services.retention_purge), after the insights kept the figures. Returns how many."""
    return Escalation.objects.filter(pk__in=list(ids)).delete()[1].get(Escalation._meta.label, 0)


def levels_advance(*, now: datetime | None = None) -> int:
    """Move open escalations whose level's delay has passed up to the level they are due at.

    In the queue is pending or claimed: a live claim does not pause the clock
    (escalations.levels), a question to the agent does (awaiting_agent is left out, and the
    clock starts later by the time spent waiting on the agent: Escalation.clock_start).
    At most BATCH_SIZE rows per call, oldest first, chosen by one query that matches only
    rows with a level due. Each move is a conditional UPDATE on the level the row was read
    at, so two runs at once move it once, and running again changes nothing. Per move, in
    its own short transaction (a reviewer deciding that row waits for one row's update,
    never for a batch; no lock order to get wrong): the level, level_changed_at, the
    priority with the level's boost, a LEVEL_RAISED event naming both levels (several
    levels due at once: straight to the highest, one step) and `notable` "level_raised"
    (the notifications' outbox rows); on commit, a live update. Returns how many moved.
    """
    now = now or timezone.now()
    steps = selectors.level_steps_by_domain()
    due = Q()
    for domain, domain_steps in steps.items():
        for step in domain_steps:
            cutoff = now - timedelta(minutes=step.after_minutes)
            due |= Q(domain=domain, level__lt=step.level, clock__lte=cutoff)
    if not due:
        return 0
    rows = (
        Escalation.objects.in_queue()
        # Levels count from when people were told (the end of a machine's first look), less
        # the time spent waiting on the agent's answers.
        .alias(clock=CLOCK_START)
        .filter(due)
        .order_by("created_at")
        .only(
            "pk",
            "agent_id",
            "status",
            "domain",
            "created_at",
            *intake.URGENCY_FIELDS,
            "first_look_until",
            "waited_on_agent",
        )[:BATCH_SIZE]
    )
    moved = 0
    for escalation in list(rows):
        domain_steps = steps[escalation.domain]
        target = levels.next_level(
            domain_steps, current=escalation.level, created_at=escalation.clock_start(), now=now
        )
        if target is not None and _level_raise(escalation, domain_steps, target, now):
            moved += 1
    return moved


def _level_raise(
    escalation: Escalation, steps: list[levels.Step], target: int, now: datetime
) -> bool:
    """One move (see levels_advance); False when another run moved the row first (its
    UPDATE waits for ours to commit, then finds the level moved)."""
    was = escalation.level
    escalation.level = target
    priority = policy.priority_for(intake.urgency(escalation, levels.boost_at(steps, target)), now)
    step = next(s for s in steps if s.level == target)
    with transaction.atomic():
        moved = Escalation.objects.filter(
            pk=escalation.pk, level=was, status__in=Escalation.QUEUE_STATUSES
        ).update(
            level=target,
            level_changed_at=now,
            priority=priority.score,
            priority_reasons=priority.reasons,
            updated_at=now,
        )
        if not moved:
            return False
        timeline.record(
            escalation,
            Event.Kind.LEVEL_RAISED,
            actor="escalation levels",
            now=now,
            announce=False,
            data={
                "from": was,
                "level": target,
                "after_minutes": step.after_minutes,
                "after": levels.duration(step.after_minutes),
                "priority": priority.score,
            },
        )
        events.announce(escalation, "level_raised")
        signals.notable_in_transaction(
            "level_raised", escalation=escalation, data={"level": target, "from": was}
        )
    return True
