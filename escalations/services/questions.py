"""Questions to the agent: a reviewer (a person or a machine reviewer) asks the agent for
more information, and the agent answers.

Asking takes the escalation out of the queue (status awaiting_agent, the claim given up)
and tells the agent: a signed `escalation.question` webhook through the outbox when it has
a resume_url, and its long-poll on the escalation answers at once (the live notice wakes
it). Answering (POST /escalations/{id}/answer) appends the answer's history steps and
links to the package, writes the answer on the timeline and puts the escalation back in
the queue as `pending`, in its place by priority; the reviewer who asked hears of it
(`notable` "question_answered", on the channels they chose).

Time spent waiting on the agent does not count against the reviewers: the wait is added to
`waited_on_agent` (the levels' clock starts that much later: Escalation.clock_start) and
`respond_by` moves on by as long (so timeouts, overdue and the priority's closeness to the
deadline all see the reviewers' own time). While it awaits the agent, the periodic jobs
leave it alone (they work on the queue); a reviewer may still decide it (halt, take over,
or decide anyway), and the agent may withdraw it.
"""

import uuid
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from escalations import levels, policy, selectors, signals
from escalations.errors import ClaimedByOther, Conflict, FieldError, Invalid
from escalations.inputs import AnswerInput
from escalations.jsontext import unstorable
from escalations.models import Escalation, Event
from escalations.transport import events

from . import claims, deliveries, intake, timeline

QUESTION_MAX_CHARS = 4000
# A package holds at most this many history steps and links, answers included (API.md).
HISTORY_MAX_STEPS = 2000
LINKS_MAX = 20


def question_errors(text: str) -> list[FieldError]:
    """What is wrong with a question's text (the dashboard's form and the reviewer API)."""
    if not text.strip():
        return [FieldError("text", "is required: what do you need the agent to tell you?")]
    if len(text) > QUESTION_MAX_CHARS:
        return [FieldError("text", f"must be at most {QUESTION_MAX_CHARS} characters")]
    bad = unstorable(text, "text")
    return [bad] if bad else []


def escalation_ask(
    *, escalation_id: uuid.UUID, user: User, text: str, now: datetime | None = None
) -> Escalation:
    """Ask the agent a question about an escalation waiting in the queue.

    Raises Invalid (the text), AlreadyDecided (it is no longer open), ClaimedByOther
    (someone else holds a live claim on it), Conflict (a question is already open).
    On commit: the timeline, a live update that wakes the agent's long-poll, and the
    `escalation.question` webhook when the agent has a resume_url.
    """
    now = now or timezone.now()
    errors = question_errors(text)
    if errors:
        raise Invalid(errors)
    text = text.strip()
    name = user.get_username()
    with transaction.atomic():
        escalation = claims.lock_open(escalation_id)
        if escalation.status == Escalation.Status.AWAITING_AGENT:
            raise Conflict(
                f"{escalation.question_by} already asked the agent a question; it has not "
                "answered yet.",
                type="question-open",
                title="A question is already open",
            )
        if claims.claimed_by_other(escalation, user, now):
            raise ClaimedByOther(escalation)
        escalation = Escalation.objects.select_related("agent", "run", "decision").get(
            pk=escalation.pk
        )
        escalation.status = Escalation.Status.AWAITING_AGENT
        escalation.question_text, escalation.question_by, escalation.question_at = text, name, now
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = None, None, now
        escalation.save(
            update_fields=[
                "status",
                "question_text",
                "question_by",
                "question_at",
                "claimed_by",
                "claimed_until",
                "updated_at",
            ]
        )
        timeline.record(
            escalation,
            Event.Kind.QUESTION_ASKED,
            actor=name,
            now=now,
            data={"text": text},
            announce=False,  # below, once the webhook is queued
        )
        if escalation.agent.resume_url:
            deliveries.queue_delivery(
                escalation, escalation.agent.resume_url, now, event=deliveries.QUESTION
            )
        events.announce(escalation, "question_asked", actor=name)
    return escalation


def answer_errors(escalation: Escalation, answer: AnswerInput, now: datetime) -> list[FieldError]:
    """What the schema cannot check: whitespace, the clock, and the package's totals."""
    errors = []
    if not answer.text.strip():
        errors.append(FieldError("text", "must not be blank"))
    elif bad := unstorable(answer.text, "text"):
        errors.append(bad)
    for i, step in enumerate(answer.history):
        if step.at > now + intake.CLOCK_SKEW:
            errors.append(FieldError(f"history.{i}.at", "must not be in the future"))
            break
    if len(escalation.history) + len(answer.history) > HISTORY_MAX_STEPS:
        room = HISTORY_MAX_STEPS - len(escalation.history)
        errors.append(
            FieldError(
                "history", f"at most {room} more steps fit (a package holds {HISTORY_MAX_STEPS})"
            )
        )
    if len(escalation.links) + len(answer.links) > LINKS_MAX:
        room = LINKS_MAX - len(escalation.links)
        errors.append(
            FieldError("links", f"at most {room} more links fit (a package holds {LINKS_MAX})")
        )
    return errors


def escalation_answer(
    *, escalation: Escalation, answer: AnswerInput, now: datetime | None = None
) -> Escalation:
    """The agent answers the open question: back to the queue (pending) with its priority.

    Raises Conflict when no question is open (never asked, answered already, or decided
    meanwhile) and Invalid naming the fields. Returns the escalation as it now stands.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Escalation.objects.select_for_update(of=("self",))
            .select_related("agent", "run", "decision")
            .get(pk=escalation.pk)
        )
        if locked.status != Escalation.Status.AWAITING_AGENT:
            raise Conflict(
                f"No question is open on this escalation (it is {locked.status}): there is "
                "nothing to answer.",
                type="no-open-question",
                title="No open question",
            )
        errors = answer_errors(locked, answer, now)
        if errors:
            raise Invalid(errors)
        waited = max(now - (locked.question_at or now), timedelta(0))
        asked = {"text": locked.question_text, "asked_by": locked.question_by}
        asked_at = locked.question_at
        locked.history = [*locked.history, *(step.record for step in answer.history)]
        locked.links = [*locked.links, *answer.links]
        locked.waited_on_agent += waited
        if locked.respond_by is not None:
            locked.respond_by += waited
        locked.status = Escalation.Status.PENDING
        locked.question_text, locked.question_by, locked.question_at = "", "", None
        steps = selectors.level_steps_by_domain().get(locked.domain, [])
        score = policy.priority_for(
            intake.urgency(locked, levels.boost_at(steps, locked.level)), now
        )
        locked.priority, locked.priority_reasons = score.score, score.reasons
        locked.updated_at = now
        locked.save(
            update_fields=[
                "history",
                "links",
                "waited_on_agent",
                "respond_by",
                "status",
                "question_text",
                "question_by",
                "question_at",
                "priority",
                "priority_reasons",
                "updated_at",
            ]
        )
        timeline.record(
            locked,
            Event.Kind.QUESTION_ANSWERED,
            actor=locked.agent.name,
            now=now,
            data={
                "text": answer.text.strip(),
                "question": asked,
                "waited_seconds": round(waited.total_seconds()),
                "steps": len(answer.history),
                "links": list(answer.links),
            },
            announce=False,
        )
        signals.notable_in_transaction(
            "question_answered",
            escalation=locked,
            data={
                "asked_by": asked["asked_by"],
                "asked_at": asked_at.isoformat() if asked_at else "",
                "question": asked["text"],
                "answer": answer.text.strip(),
            },
        )
        events.announce(locked, "question_answered", actor=locked.agent.name)
    return locked
