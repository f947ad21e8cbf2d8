"""Recommendations: a reviewer (a machine on its first look, or a person) that does not decide
leaves its advice, which the person who decides sees beside the agent's own."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from escalations.errors import AlreadyDecided, FieldError, Invalid, NotFound
from escalations.models import Decision, Escalation, Event, Recommendation
from people.roles import is_machine

from . import decisions, first_look, timeline

NOTE_MAX = 4000


@dataclass
class RecommendationRequest:
    option: str
    note: str
    args: dict[str, Any] | None = None
    confidence: float | None = None


def recommendation_errors(escalation: Escalation, request: RecommendationRequest) -> list[FieldError]:
    """What is wrong with a recommendation on this escalation, as named fields (the option
    and args by the decision's own rules)."""
    errors = decisions.decision_errors(
        escalation,
        decisions.DecisionRequest(kind=Decision.Kind.OPTION, option=request.option, args=request.args),
    )
    note = (request.note or "").strip()
    if not note:
        errors.append(FieldError("note", "is required: say why"))
    elif len(note) > NOTE_MAX:
        errors.append(FieldError("note", f"must be at most {NOTE_MAX} characters"))
    confidence = request.confidence
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1
    ):
        errors.append(FieldError("confidence", "must be a number from 0 to 1"))
    return errors


def escalation_recommend(
    *,
    escalation_id: uuid.UUID,
    request: RecommendationRequest,
    user: User,
    now: datetime | None = None,
) -> Recommendation:
    """Record `user`'s advice on an open escalation. Raises Invalid naming the field,
    AlreadyDecided once it is no longer open. A machine advising on its own first look ends
    the look: the escalation goes to people with the advice beside it."""
    now = now or timezone.now()
    escalation = Escalation.objects.filter(pk=escalation_id).first()
    if escalation is None:
        raise NotFound(f"No escalation {escalation_id}.")
    if not escalation.is_open:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    errors = recommendation_errors(escalation, request)
    if errors:
        raise Invalid(errors)
    args = request.args
    if args is None:
        args = (escalation.option(request.option) or {}).get("args")
    machine = is_machine(user)
    with transaction.atomic():
        recommendation = Recommendation.objects.create(
            escalation=escalation,
            user=user,
            name=user.get_username(),
            is_machine=machine,
            option_key=request.option,
            args=args,
            note=request.note.strip(),
            confidence=request.confidence,
            at=now,
        )
        timeline.record(
            escalation,
            Event.Kind.RECOMMENDED,
            actor=user.get_username(),
            now=now,
            data={"option": request.option, "confidence": request.confidence, "machine": machine},
        )
    first_look.pass_look(escalation.pk, user=user, outcome="recommended", now=now)
    return recommendation
