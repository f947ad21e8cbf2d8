"""The team's side of an escalation: comments, reviews of flagged (policy-decided) ones, and
closing a run a reviewer took over."""

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations.errors import Conflict, FieldError, Invalid, NotFound
from escalations.jsontext import unstorable
from escalations.limits import TEXT_MAX_CHARS, too_long
from escalations.models import Decision, Escalation, Event, FlagReview, Run

from . import timeline


def _text_errors(field: str, text: str, *, required: str, max_chars: int) -> list[FieldError]:
    """A free-text field people type: required, bounded, and storable."""
    if not text.strip():
        return [FieldError(field, required)]
    if len(text) > max_chars:
        return [FieldError(field, too_long(max_chars, len(text)))]
    bad = unstorable(text, field)
    return [bad] if bad else []


def escalation_comment(*, escalation_id: uuid.UUID, user: User, body: str, now: datetime | None = None) -> Event:
    """A comment for the team on an escalation (never sent to the agent), in its timeline.

    Any status: people discuss decided escalations too. Raises Invalid naming `body`,
    NotFound for an unknown escalation. On commit: announced as "commented".
    """
    now = now or timezone.now()
    errors = _text_errors(
        "body", body, required="Write something first.", max_chars=TEXT_MAX_CHARS
    )
    if errors:
        raise Invalid(errors)
    escalation = (
        Escalation.objects.only("id", "agent_id", "status", "priority")
        .filter(pk=escalation_id)
        .first()
    )
    if escalation is None:
        raise NotFound(f"No escalation {escalation_id}.")
    with transaction.atomic():
        event = timeline.record(
            escalation,
            Event.Kind.COMMENTED,
            actor=user.get_username(),
            now=now,
            data={"body": body.strip()},
        )
    return event


def flag_review_record(
    *,
    escalation_id: uuid.UUID,
    user: User,
    verdict: str,
    option_key: str = "",
    note: str = "",
    now: datetime | None = None,
) -> FlagReview:
    """A person's look at a decision made without one (FlagReview.applies_to: the policy's
    at tier 2, a machine reviewer's): "fine", or "should have been" another of its options.
    One per escalation (the first one stands).

    Raises Invalid naming verdict/option_key/note, Conflict when the decision is not one
    looked at afterwards or was reviewed already. The escalation no longer awaits a look
    (awaiting_look) once the review commits. On commit: FLAG_REVIEWED announced.
    """
    now = now or timezone.now()
    escalation = (
        Escalation.objects.select_related("decision", "flag_review")
        .filter(pk=escalation_id)
        .first()
    )
    if escalation is None:
        raise NotFound(f"No escalation {escalation_id}.")
    decision = getattr(escalation, "decision", None)
    if decision is None or not FlagReview.applies_to(escalation, decision):
        raise Conflict(
            "Only the policy's tier-2 decisions and machine reviewers' decisions are reviewed afterwards."
        )
    existing = getattr(escalation, "flag_review", None)
    if existing is not None:
        raise Conflict(f"{existing.reviewer_name} has already reviewed this one.")
    errors = []
    if verdict not in FlagReview.Verdict.values:
        errors.append(FieldError("verdict", "must be “fine” or “other”"))
    elif verdict == FlagReview.Verdict.OTHER:
        if escalation.option(option_key) is None:
            errors.append(FieldError("option_key", "Pick the option it should have been."))
        elif option_key == decision.option_key:
            errors.append(
                FieldError("option_key", "is the option that was chosen: mark it fine instead")
            )
    if note.strip():
        errors += _text_errors("note", note, required="", max_chars=TEXT_MAX_CHARS)
    if errors:
        raise Invalid(errors)
    option_key = option_key if verdict == FlagReview.Verdict.OTHER else ""
    try:
        with transaction.atomic():
            review = FlagReview.objects.create(
                escalation=escalation,
                reviewer=user,
                reviewer_name=user.get_username(),
                verdict=verdict,
                option_key=option_key,
                note=note.strip(),
                at=now,
            )
            Escalation.objects.filter(pk=escalation.pk).update(awaiting_look=False)
            timeline.record(
                escalation,
                Event.Kind.FLAG_REVIEWED,
                actor=user.get_username(),
                now=now,
                data={"verdict": verdict, "option": option_key or None},
            )
    except IntegrityError:  # a concurrent review got there first
        other = FlagReview.objects.get(escalation=escalation)
        raise Conflict(f"{other.reviewer_name} has already reviewed this one.") from None
    return review


def flag_reviews_mark_fine(*, escalation_ids: Iterable[uuid.UUID], user: User, now: datetime | None = None) -> int:
    """Mark each of `escalation_ids` fine (the flagged backlog's bulk action): one
    flag_review_record each, in its own transaction. Those someone reviewed meanwhile, or
    that are not looked at afterwards (FlagReview.applies_to), or unknown, are passed over. Returns how many this
    call marked. On commit: FLAG_REVIEWED announced for each.
    """
    marked = 0
    for escalation_id in dict.fromkeys(escalation_ids):  # once each, in the order given
        try:
            flag_review_record(escalation_id=escalation_id, user=user, verdict=FlagReview.Verdict.FINE, now=now)
        except (Conflict, NotFound):
            continue
        marked += 1
    return marked


def run_close(*, run_id: int, user: User, note: str, now: datetime | None = None) -> Run:
    """Close a run `user` took over, with a note on how it ended.

    Locks the run. Raises Invalid naming `note`, NotFound when it is not a run this
    user took over, Conflict when it is already closed. The escalation whose decision
    took it over gets a RUN_CLOSED event ({"note"}), announced on commit.
    """
    now = now or timezone.now()
    errors = _text_errors(
        "note",
        note,
        required="Say how the run ended (a line is enough).",
        max_chars=TEXT_MAX_CHARS,
    )
    if errors:
        raise Invalid(errors)
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id, taken_over_by=user).first()
        if run is None:
            raise NotFound("You have not taken over this run.")
        if run.status != Run.Status.TAKEN_OVER:
            raise Conflict(f"This run is already {run.get_status_display().lower()}.")
        run.status, run.closed_at, run.close_note = Run.Status.CLOSED, now, note.strip()
        run.save(update_fields=["status", "closed_at", "close_note"])
        escalation = (
            Escalation.objects.filter(run=run, decision__kind=Decision.Kind.TAKE_OVER)
            .only("id", "agent_id", "status", "priority")
            .order_by("-created_at")
            .first()
        )
        if escalation is not None:
            timeline.record(
                escalation,
                Event.Kind.RUN_CLOSED,
                actor=user.get_username(),
                now=now,
                data={"note": run.close_note},
            )
    return run
