"""What the agent tells us about its own escalation: it resumed (acknowledge), or it solved
the problem alone (withdraw)."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from escalations import signals
from escalations.errors import Conflict
from escalations.models import Decision, Escalation, Event

from . import timeline


def mark_resumed(escalation: Escalation, *, actor: str, now: datetime, data: dict[str, Any]) -> bool:
    """A decided escalation whose decision is still valid (no valid_until, or not past it)
    becomes resumed; False otherwise (resumed or expired already, or past valid_until: the
    agent must not act on it, and expire_if_past expires it)."""
    flipped = (
        Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.DECIDED)
        .filter(Q(decision__valid_until__isnull=True) | Q(decision__valid_until__gte=now))
        .update(status=Escalation.Status.RESUMED, updated_at=now)
    )
    if flipped:
        escalation.status, escalation.updated_at = Escalation.Status.RESUMED, now
        timeline.record(escalation, Event.Kind.RESUMED, actor=actor, now=now, data=data)
    return bool(flipped)


def escalation_acknowledge(*, escalation: Escalation, now: datetime | None = None) -> Escalation:
    """The agent resumed with the decision. Idempotent; 409 before a decision, and 409
    (`decision-expired`) after the decision's valid_until, when a decided escalation becomes
    `expired`: the agent must not act on it, and escalates again with fresh context."""
    now = now or timezone.now()
    if escalation.is_open or escalation.status == Escalation.Status.WITHDRAWN:
        raise Conflict(
            f"The escalation is {escalation.status}: there is no decision to acknowledge yet.",
            type="not-decided",
        )
    if escalation.status == Escalation.Status.EXPIRED or expire_if_past(escalation, now):
        raise _expired(escalation)
    with transaction.atomic():
        flipped = mark_resumed(
            escalation, actor=escalation.agent.name, now=now, data={"via": "ack"}
        )
    if not flipped:  # resumed meanwhile (the webhook got there first): answer what stands
        escalation.refresh_from_db(fields=["status", "updated_at"])
        if escalation.status == Escalation.Status.DECIDED and expire_if_past(escalation, timezone.now()):
            raise _expired(escalation)  # valid_until passed between the two checks
    return escalation


def expire_if_past(escalation: Escalation, now: datetime, *, actor: str = "") -> bool:
    """A decided escalation whose decision's valid_until has passed becomes expired (one
    conditional UPDATE: a concurrent ack or webhook that resumed it first wins), with an
    `expired` event by `actor` (the agent's name by default) and, after commit, `notable`
    "expired". True when it is expired now.
    Called by the ack, by a webhook answered too late, and by the periodic sweep
    (periodic.decisions_expire)."""
    valid_until = (
        Decision.objects.filter(escalation_id=escalation.pk).values_list("valid_until", flat=True).first()
    )
    if escalation.status != Escalation.Status.DECIDED or valid_until is None or now <= valid_until:
        return False
    with transaction.atomic():
        flipped = Escalation.objects.filter(
            pk=escalation.pk, status=Escalation.Status.DECIDED
        ).update(status=Escalation.Status.EXPIRED, updated_at=now)
        if flipped:
            escalation.status, escalation.updated_at = Escalation.Status.EXPIRED, now
            timeline.record(
                escalation,
                Event.Kind.EXPIRED,
                actor=actor or escalation.agent.name,
                now=now,
                data={"valid_until": valid_until.isoformat()},
            )
            signals.notable_on_commit("expired", escalation=escalation)
    if not flipped:
        escalation.refresh_from_db(fields=["status", "updated_at"])
    return escalation.status == Escalation.Status.EXPIRED


def _expired(escalation: Escalation) -> Conflict:
    until = (
        Decision.objects.filter(escalation_id=escalation.pk).values_list("valid_until", flat=True).first()
    )
    return Conflict(
        f"The decision expired at {until.isoformat() if until else 'its valid_until'} before it was"
        " acknowledged: do not act on it. Escalate again with fresh context.",
        type="decision-expired",
        title="The decision expired",
    )


def escalation_withdraw(*, escalation: Escalation, now: datetime | None = None) -> Escalation:
    """The agent solved it alone: an open escalation leaves the queue. 409 once decided."""
    now = now or timezone.now()
    if escalation.status == Escalation.Status.WITHDRAWN:
        return escalation
    with transaction.atomic():
        flipped = Escalation.objects.filter(
            pk=escalation.pk, status__in=Escalation.OPEN_STATUSES
        ).update(
            status=Escalation.Status.WITHDRAWN, claimed_by=None, claimed_until=None, updated_at=now
        )
        if not flipped:
            escalation.refresh_from_db()
            if escalation.status == Escalation.Status.WITHDRAWN:
                return escalation
            raise Conflict(
                f"The escalation is already {escalation.status}; it can no longer be withdrawn.",
                type="already-decided",
            )
        escalation.status, escalation.updated_at = Escalation.Status.WITHDRAWN, now
        timeline.record(escalation, Event.Kind.WITHDRAWN, actor=escalation.agent.name, now=now)
        signals.notable_on_commit("withdrawn", escalation=escalation)
    return escalation
