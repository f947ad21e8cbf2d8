"""Claims: a reviewer takes an escalation (a lease), renews, releases, or reassigns it."""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from escalations.errors import (
    AlreadyDecided,
    ClaimedByOther,
    ClaimLost,
    Conflict,
    FieldError,
    Invalid,
)
from escalations.models import Escalation, Event

from . import first_look, timeline


def lock_open(escalation_id: uuid.UUID) -> Escalation:
    """Inside a transaction: the escalation, row-locked, with its claimer; AlreadyDecided
    (with the decision loaded) once it is no longer open."""
    escalation = (
        Escalation.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .get(pk=escalation_id)
    )
    if not escalation.is_open:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    return escalation


def refuse_awaiting_agent(escalation: Escalation) -> None:
    """Nobody claims an escalation that waits for the agent's answer (it is out of the queue)."""
    if escalation.status == Escalation.Status.AWAITING_AGENT:
        raise Conflict(
            "This escalation waits for the agent's answer to a question; it comes back to "
            "the queue when the agent answers.",
            type="awaiting-agent",
            title="Waiting for the agent",
        )


def claimed_by_other(escalation: Escalation, user: User, now: datetime | None = None) -> bool:
    """The claim rule: someone other than `user` holds a live claim on the escalation (a
    claim, or a decision without "decide anyway", is refused; the dashboard asks first)."""
    return escalation.claim_is_live(now) and escalation.claimed_by_id != user.pk


def escalation_claim(*, escalation_id: uuid.UUID, user: User, now: datetime | None = None) -> Escalation:
    """Claim (or renew) the lease on an open escalation. ClaimedByOther if someone holds it."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        escalation = lock_open(escalation_id)
        refuse_awaiting_agent(escalation)
        if claimed_by_other(escalation, user, now):
            raise ClaimedByOther(escalation)
        renewing = escalation.claimed_by_id == user.pk and escalation.claim_is_live(now)
        escalation.status = Escalation.Status.CLAIMED
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = user, until, now
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        if not renewing:
            timeline.record(
                escalation,
                Event.Kind.CLAIMED,
                actor=user.get_username(),
                now=now,
                data={"until": until.isoformat()},
            )
    return escalation


def escalation_release(*, escalation_id: uuid.UUID, user: User, now: datetime | None = None) -> Escalation:
    """Give a claim back to the queue. Only its holder can release it. A machine releasing
    its first look passes: the look ends and people are told (first_look.pass_look)."""
    now = now or timezone.now()
    if first_look.pass_look(escalation_id, user=user, outcome="passed", now=now):
        return Escalation.objects.select_related("claimed_by").get(pk=escalation_id)
    with transaction.atomic():
        escalation = (
            Escalation.objects.select_for_update(of=("self",))
            .select_related("claimed_by")
            .get(pk=escalation_id)
        )
        if escalation.claimed_by_id and escalation.claimed_by_id != user.pk:
            raise ClaimedByOther(escalation)
        if escalation.status != Escalation.Status.CLAIMED:
            return escalation
        escalation.status = Escalation.Status.PENDING
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = None, None, now
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        timeline.record(escalation, Event.Kind.RELEASED, actor=user.get_username(), now=now)
    return escalation


def escalation_claim_renew(*, escalation_id: uuid.UUID, user: User, now: datetime | None = None) -> Escalation:
    """Extend the holder's live lease to CLAIM_LEASE_SECONDS from now (the open page's heartbeat).

    One conditional UPDATE: only the holder of a lease that has not lapsed renews it. No event
    and no announcement: nothing others see changes but a time. Raises ClaimLost otherwise.
    """
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    renewed = Escalation.objects.filter(
        pk=escalation_id,
        status=Escalation.Status.CLAIMED,
        claimed_by=user,
        claimed_until__gte=now,
    ).update(claimed_until=until)
    escalation = Escalation.objects.select_related("claimed_by").get(pk=escalation_id)
    if not renewed:
        raise ClaimLost(escalation)
    return escalation


def escalation_reassign(
    *, escalation_id: uuid.UUID, user: User, assignee: User, override: bool = False, now: datetime | None = None
) -> Escalation:
    """Hand the claim on an open escalation to `assignee`, with a fresh lease.

    The holder of a live claim may hand it on, and anyone may assign an unclaimed one;
    someone else's live claim needs `override` (a manager's call). Locks the row. Raises
    AlreadyDecided, ClaimedByOther, or Invalid naming `assignee` for an inactive user.
    On commit: a REASSIGNED event ({"from", "to", "until"}) is announced.
    """
    now = now or timezone.now()
    if not assignee.is_active:
        raise Invalid(
            [FieldError("assignee", f"{assignee.get_username()} cannot sign in any more")]
        )
    until = now + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        escalation = lock_open(escalation_id)
        refuse_awaiting_agent(escalation)
        live = escalation.claim_is_live(now)
        if live and escalation.claimed_by_id != user.pk and not override:
            raise ClaimedByOther(escalation)
        previous = escalation.claimed_by.get_username() if live and escalation.claimed_by else None
        escalation.status = Escalation.Status.CLAIMED
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = (
            assignee,
            until,
            now,
        )
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        timeline.record(
            escalation,
            Event.Kind.REASSIGNED,
            actor=user.get_username(),
            now=now,
            data={"from": previous, "to": assignee.get_username(), "until": until.isoformat()},
        )
    return escalation
