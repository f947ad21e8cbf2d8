"""A machine reviewer's first look at a new tier-3 escalation (the policy names the machine
and its time budget: policy.first_look_wanted).

The look is a claim the machine holds until `first_look_until`, offered by a signed webhook
to the machine's URL (a MachineOffer: an outbox row sent by the deliveries' claim and POST,
retried only within the look). The machine decides (where the policy lets machines decide),
leaves a recommendation, or passes (releases the claim); otherwise the look times out with
the claim (periodic.claims_expire). When it ends undecided the escalation is an ordinary
pending one: a `first_look_ended` event, the notable event notifications tell people of,
and escalation levels counted from then (periodic.levels_advance).
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from escalations import policy, selectors, signals
from escalations.models import Escalation, Event, MachineOffer
from escalations.transport import events
from escalations.wire import escalation_dict, iso, package_dict
from people.roles import is_machine

from . import deliveries, outbox, timeline

log = logging.getLogger(__name__)

OFFER_EVENT = "escalation.first_look"


def offer(escalation: Escalation, rules: policy.Rules, now: datetime) -> MachineOffer | None:
    """Inside the create transaction: give the policy's machine reviewer the first look.

    The escalation is claimed by the machine until the look's end; when the machine has a
    webhook URL, an offer row is written and sent after commit. A machine account that is
    gone, inactive or no longer a machine gets nothing: the escalation goes to people.
    """
    machine = (
        get_user_model()
        .objects.select_related("profile")
        .filter(pk=rules.first_look_reviewer_id, is_active=True)
        .first()
        if rules.first_look_reviewer_id is not None
        else None
    )
    if machine is None or not is_machine(machine):
        log.warning("policy %s: first-look reviewer is not an active machine", rules.domain)
        return None
    until = now + timedelta(seconds=rules.first_look_seconds)
    Escalation.objects.filter(pk=escalation.pk).update(
        status=Escalation.Status.CLAIMED,
        claimed_by=machine,
        claimed_until=until,
        first_look_by=machine,
        first_look_until=until,
    )
    escalation.status = Escalation.Status.CLAIMED
    escalation.claimed_by, escalation.claimed_until = machine, until
    escalation.first_look_by, escalation.first_look_until = machine, until
    timeline.record(
        escalation,
        Event.Kind.FIRST_LOOK,
        actor=machine.get_username(),
        now=now,
        data={"until": iso(until), "seconds": rules.first_look_seconds},
        announce=False,  # the create announces it
    )
    url = machine.profile.webhook_url
    if not url:
        return None  # the machine reads the queue through the reviewer API instead
    row = MachineOffer(
        escalation=escalation, reviewer=machine, url=url, payload={}, next_attempt_at=now,
        created_at=now, give_up_after=until,
    )
    row.payload = {
        "event": OFFER_EVENT,
        "delivery_id": str(row.id),
        "look_until": iso(until),
        "review_url": f"{settings.PUBLIC_URL}/api/v1/review/escalations/{escalation.pk}",
        "escalation": {**escalation_dict(escalation), **package_dict(escalation)},
    }
    row.save(force_insert=True)
    offer_id = str(row.id)
    transaction.on_commit(lambda: _enqueue_offer(offer_id))
    return row


def _enqueue_offer(offer_id: str) -> None:
    """After commit; a broker outage is logged, never raised (tasks.enqueue_send)."""
    from escalations.tasks import enqueue_send, offer_first_look_task

    enqueue_send(offer_first_look_task, offer_id)


# What the claim of an offer returns for sending.
OFFER_CLAIMED = ("url", "payload", "attempt_count", "reviewer_id", "give_up_after")


def offer_claim(*, offer_id: str, now: datetime | None = None) -> MachineOffer | None:
    """Take a due offer for sending (outbox.claim), with the machine's signing secret in
    `secret`; None when it is not ours to send (gone, sent, given up, leased, not due)."""
    now = now or timezone.now()
    claimed = outbox.claim(MachineOffer, offer_id, now=now, returning=OFFER_CLAIMED)
    if claimed is None:
        return None
    url, payload, attempt_count, reviewer_id, give_up_after = claimed
    row = MachineOffer(
        id=selectors.as_uuid(offer_id), url=url, payload=selectors.as_json(payload),
        attempt_count=attempt_count, reviewer_id=reviewer_id,
        give_up_after=selectors.as_time(give_up_after), status=MachineOffer.Status.SENDING,
    )
    row._state.adding = False
    reviewer = get_user_model().objects.select_related("profile").get(pk=reviewer_id)
    row.secret = reviewer.profile.signing_secret  # type: ignore[attr-defined]
    return row


def offer_record(
    *, row: MachineOffer, status_code: int | None, error: str = "", now: datetime | None = None
) -> MachineOffer:
    """Record one attempt: delivered on a 2xx; else retried with the outboxes' backoff while
    the look lasts (outbox.retry_at with the look's end as the window), then failed."""
    now = now or timezone.now()
    row.attempt_count += 1
    row.lease_until = None
    if status_code is not None and 200 <= status_code < 300:
        row.status, row.delivered_at, row.last_error = MachineOffer.Status.DELIVERED, now, ""
    else:
        row.last_error = (error or f"HTTP {status_code}")[:500]
        retryable = status_code is None or status_code >= 500 or status_code in deliveries.RETRYABLE
        next_at = outbox.retry_at(row.attempt_count, now=now, give_up_at=row.give_up_at())
        if retryable and next_at is not None:
            row.status, row.next_attempt_at = MachineOffer.Status.RETRYING, next_at
        else:
            row.status = MachineOffer.Status.FAILED
    row.save(
        update_fields=[
            "status", "attempt_count", "lease_until", "last_error", "next_attempt_at", "delivered_at"
        ]
    )
    return row


def looking(escalation: Escalation, now: datetime | None = None) -> bool:
    """The machine's first look is still running."""
    return bool(
        escalation.first_look_by_id
        and escalation.first_look_until
        and escalation.first_look_until > (now or timezone.now())
        and escalation.claimed_by_id == escalation.first_look_by_id
        and escalation.is_open
    )


def end_in_transaction(escalation: Escalation, *, outcome: str, now: datetime) -> None:
    """Inside a transaction, once the look is over undecided (`outcome`: "recommended",
    "passed" or "timed out"): the look's end is now (levels count from it), the timeline
    says so, and notifications are told (their rows commit with it)."""
    if escalation.first_look_until and escalation.first_look_until > now:
        Escalation.objects.filter(pk=escalation.pk).update(first_look_until=now)
        escalation.first_look_until = now
    machine = escalation.first_look_by.get_username() if escalation.first_look_by else ""
    timeline.record(
        escalation,
        Event.Kind.FIRST_LOOK_ENDED,
        actor=machine,
        now=now,
        data={"outcome": outcome},
        announce=False,
    )
    signals.notable_in_transaction(
        "first_look_ended", escalation=escalation, data={"outcome": outcome, "machine": machine}
    )


def pass_look(escalation_id: uuid.UUID, *, user: User, outcome: str, now: datetime) -> bool:
    """The machine looking at `escalation_id` is done without deciding: the claim goes back
    to the queue and the look ends (end_in_transaction). False when `user` is not the
    machine whose look is running."""
    with transaction.atomic():
        escalation = (
            Escalation.objects.select_for_update(of=("self",))
            .select_related("first_look_by")
            .get(pk=escalation_id)
        )
        if escalation.first_look_by_id != user.pk or not looking(escalation, now):
            return False
        Escalation.objects.filter(pk=escalation.pk).update(
            status=Escalation.Status.PENDING, claimed_by=None, claimed_until=None, updated_at=now
        )
        escalation.status, escalation.claimed_by, escalation.claimed_until = (
            Escalation.Status.PENDING, None, None,
        )
        escalation.updated_at = now
        end_in_transaction(escalation, outcome=outcome, now=now)
        events.announce(escalation, "released", actor=user.get_username())
    return True
