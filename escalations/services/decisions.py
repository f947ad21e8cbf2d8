"""Decisions and the two-person rule: a decision checked against the package, approvals
counted, and the one conditional write that turns an open escalation into a decided one."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from escalations import policy, rows, selectors, signals
from escalations.errors import (
    AlreadyDecided,
    ClaimedByOther,
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
)
from escalations.jsontext import unstorable
from escalations.limits import (
    JSON_OBJECT_MAX_BYTES,
    JSON_OBJECT_TOO_LARGE,
    TEXT_MAX_CHARS,
    json_size,
    too_long,
)
from escalations.models import Agent, Approval, Decision, Escalation, Event, FlagReview, Policy, Run
from escalations.transport import events
from operations import metrics
from people.roles import is_machine

from . import claims, deliveries, policies, timeline


@dataclass
class DecisionRequest:
    """A decision as asked for (the API's body, a form, a message's button): not checked yet
    (decision_errors); `chosen` gives what it decides once it is valid."""

    kind: str
    option: str | None = None
    args: dict[str, Any] | None = None
    instruction: str | None = None


@dataclass(frozen=True)
class OptionChoice:
    """A valid `option` decision: the escalation's option chosen, the args the agent acts
    with (the request's, else the option's own) and the instruction (stripped)."""

    option: str
    args: dict[str, Any] | None
    instruction: str
    kind: str = Decision.Kind.OPTION


@dataclass(frozen=True)
class OtherChoice:
    """A valid instruction, take-over or halt: no option, no args."""

    kind: str
    instruction: str


def chosen(escalation: Escalation, request: DecisionRequest) -> OptionChoice | OtherChoice:
    """What a request decides on this escalation; Invalid naming the fields when it cannot."""
    errors = decision_errors(escalation, request)
    if errors:
        raise Invalid(errors)
    instruction = (request.instruction or "").strip()
    if request.kind != Decision.Kind.OPTION:
        return OtherChoice(kind=request.kind, instruction=instruction)
    option = escalation.option(request.option or "")
    assert option is not None, "decision_errors names a missing or unknown option"
    args = request.args if request.args is not None else option.get("args")
    return OptionChoice(option=option["key"], args=args, instruction=instruction)


def decision_errors(escalation: Escalation, request: DecisionRequest) -> list[FieldError]:
    """What is wrong with a decision on this escalation, as named fields."""
    errors: list[FieldError] = []
    if request.kind not in Decision.Kind.values:
        errors.append(FieldError("kind", "must be one of " + ", ".join(Decision.Kind.values)))
        return errors
    if request.kind == Decision.Kind.OPTION:
        if not request.option:
            errors.append(FieldError("option", "is required when kind is option"))
        elif escalation.option(request.option) is None:
            keys = ", ".join(o["key"] for o in escalation.options)
            errors.append(FieldError("option", f"is not an option of this escalation ({keys})"))
        if request.args is not None and not isinstance(request.args, dict):
            errors.append(FieldError("args", "must be an object"))
        elif request.args is not None:
            size = json_size(request.args)
            if size > JSON_OBJECT_MAX_BYTES:
                errors.append(FieldError("args", JSON_OBJECT_TOO_LARGE.format(size=size)))
            elif bad := unstorable(request.args, "args"):
                errors.append(bad)
    elif request.kind == Decision.Kind.INSTRUCTION and not (request.instruction or "").strip():
        errors.append(FieldError("instruction", "is required when kind is instruction"))
    # The dashboard's forms reach here without the API's parser: check what it checks.
    if len(request.instruction or "") > TEXT_MAX_CHARS:
        errors.append(
            FieldError("instruction", too_long(TEXT_MAX_CHARS, len(request.instruction or "")))
        )
    elif bad := unstorable(request.instruction or "", "instruction"):
        errors.append(bad)
    return errors


def escalation_decide(
    *,
    escalation_id: uuid.UUID | str,
    request: DecisionRequest,
    user: User | None = None,
    override_claim: bool = False,
    decided_by_type: str = Decision.DecidedBy.HUMAN,
    now: datetime | None = None,
) -> Escalation:
    """Record the one decision on an open escalation.

    Raises Invalid for an invalid decision and AlreadyDecided when someone else got
    there first (concurrent callers: exactly one succeeds). On commit: the timeline,
    live updates, wake-ups and the webhook delivery task.

    A person (or machine reviewer) deciding over someone else's live claim gets
    ClaimedByOther unless `override_claim` ("decide anyway"), checked under the row lock
    the decision is written under. Timeouts and the policy (no user) ignore claims.

    A machine reviewer's decision is marked `machine`; Forbidden when the policy does not
    let machines decide it (policy.machine_refusal: never an irreversible option).

    Under the two-person rule (needs_approvals > 1) a person's option is an approval
    (see _approve): the escalation is returned still open until the approval that
    completes the count decides it. Callers tell the two apart by `is_open`.
    """
    now = now or timezone.now()
    with transaction.atomic():
        escalation, rules = _lock_for_decision(escalation_id)
        if decided_by_type == Decision.DecidedBy.TIMEOUT:
            _check_still_due(escalation, now)
        choice = chosen(escalation, request)
        name = user.get_username() if user is not None else decided_by_type
        if is_machine(user):
            decided_by_type = Decision.DecidedBy.MACHINE
            _check_machine_may_decide(escalation, request, rules)
        if (
            decided_by_type == Decision.DecidedBy.HUMAN
            and isinstance(choice, OptionChoice)  # needs_approvals is 1 for anything else
            and needs_approvals(escalation, request) > 1
        ):
            if user is None:
                raise ValueError("an approval under the two-person rule is a person's: pass the user")
            return _approve(
                escalation, request=request, choice=choice, user=user, override_claim=override_claim,
                now=now, rules=rules,
            )
        if user is not None:
            check_claim(escalation, user, override_claim, now)
        decide_open(
            escalation,
            kind=choice.kind,
            option_key=choice.option if isinstance(choice, OptionChoice) else "",
            args=choice.args if isinstance(choice, OptionChoice) else None,
            instruction=choice.instruction,
            decided_by_type=decided_by_type,
            decided_by_name=name,
            user=user,
            now=now,
            rules=rules,
        )
    return escalation


def _check_still_due(escalation: Escalation, now: datetime) -> None:
    """A timeout decides only what is still in the queue past its respond_by, as read under
    the lock: a question asked (or a deadline moved) since the due rows were read wins."""
    if not escalation.in_queue or escalation.respond_by is None or escalation.respond_by > now:
        raise Conflict(f"Escalation {escalation.pk} is no longer due for its timeout.")


@cache
def _locked_read_sql() -> str:
    # One statement for what a decision reads: the escalation row-locked (claims.lock_open
    # locks it the same way), with its run and agent (select_related) and its domain's
    # policy; tests/test_rows.py holds it equal to the ORM's reads. The run is locked with
    # the escalation, before the flip: a halt or take-over writes the run after it, and the
    # agent's next escalation of that run takes the run first, then waits on the flipped
    # row (one open per run). One after the other, the two deadlocked (test_concurrency).
    lock = " FOR UPDATE OF e, r" if connection.features.has_select_for_update_of else ""
    return (
        f"SELECT {rows.columns(Escalation, 'e')}, {rows.columns(Run, 'r')},"  # noqa: S608 (the model's own table and columns, never input)
        f" {rows.columns(Agent, 'a')}, {rows.columns(Policy, 'p')}"
        " FROM escalations_escalation e"
        " JOIN escalations_run r ON r.id = e.run_id"
        " JOIN escalations_agent a ON a.id = e.agent_id"
        " LEFT JOIN escalations_policy p ON p.domain = e.domain"
        " WHERE e.id = %s" + lock
    )


def _lock_for_decision(escalation_id: uuid.UUID | str) -> tuple[Escalation, policy.Rules]:
    """Inside a transaction: the open escalation, row-locked, with its run and agent, and its
    domain's rules. NotFound, or AlreadyDecided (with the decision loaded) once it is closed."""
    try:
        pk = rows.prep(Escalation, "id", uuid.UUID(str(escalation_id)))
    except ValueError:
        raise NotFound(f"No escalation {escalation_id}.") from None
    row = rows.fetch_one(_locked_read_sql(), [pk])
    if row is None:
        raise NotFound(f"No escalation {escalation_id}.")
    escalation = rows.instance(Escalation, row)
    if not escalation.is_open:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    start = rows.width(Escalation)
    escalation.run = rows.instance(Run, row, start)
    start += rows.width(Run)
    escalation.agent = rows.instance(Agent, row, start)
    found = rows.instance(Policy, row, start + rows.width(Agent))
    return escalation, (policies.rules_of(found) if found.pk else policy.Rules(domain=escalation.domain))


def _check_machine_may_decide(escalation: Escalation, request: DecisionRequest, rules: policy.Rules) -> None:
    option = escalation.option(request.option or "") or {}
    refusal = policy.machine_refusal(
        rules,
        tier=escalation.tier,
        kind=request.kind,
        option_irreversible=bool(option.get("irreversible")),
        action_irreversible=bool((escalation.action or {}).get("irreversible")),
    )
    if refusal:
        raise Forbidden(refusal, type="needs-a-person", title="A person must decide this")


def check_claim(locked: Escalation, user: User, override_claim: bool, now: datetime) -> None:
    """Inside a transaction, on the locked row: ClaimedByOther when someone else holds a live
    claim and the caller did not ask to decide anyway."""
    if not override_claim and claims.claimed_by_other(locked, user, now):
        raise ClaimedByOther(locked)


def needs_approvals(escalation: Escalation, request: DecisionRequest) -> int:
    """How many distinct reviewers must approve this decision before it is made (1: none).

    The two-person rule gates a person's choice of an option that is irreversible, or of
    any option when the action at stake is irreversible, by the domain's
    approvals_required. Instructions, take-overs and halts are never gated.
    """
    if request.kind != Decision.Kind.OPTION:
        return 1
    return selectors.approvals_required(escalation, request.option or "")


def _approve(
    escalation: Escalation,
    *,
    request: DecisionRequest,
    choice: OptionChoice,
    user: User,
    override_claim: bool,
    now: datetime,
    rules: policy.Rules,
) -> Escalation:
    """Inside the decision's transaction, on the locked row: record `user`'s approval of an
    option; the approval that completes the count decides.

    Approvals agree when they name the same option with the same args (what the agent
    would act with): a reviewer who edits the args starts a new count that the others
    must approve. A reviewer has one approval per escalation; approving again replaces
    it (the same reviewer twice counts once). The instruction sent is the latest one
    given among the agreeing approvals. The escalation row is locked while counting, so
    concurrent approvals are counted one after the other and exactly one of them decides
    (AlreadyDecided for anyone after it). On commit: an `approved` event and a live update.
    """
    check_claim(escalation, user, override_claim, now)
    required = needs_approvals(escalation, request)
    Approval.objects.update_or_create(
        escalation=escalation,
        user=user,
        defaults={
            "user_name": user.get_username(),
            "option_key": choice.option,
            "args": choice.args,
            "instruction": choice.instruction,
            "at": now,
        },
    )
    agreeing = selectors.agreeing(
        Approval.objects.filter(escalation=escalation), choice.option, choice.args
    )
    timeline.record(
        escalation,
        Event.Kind.APPROVED,
        actor=user.get_username(),
        now=now,
        data={"option": choice.option, "approvals": len(agreeing), "required": required},
        announce=False,  # below, unless the approval decides it
    )
    if len(agreeing) < required:
        escalation.updated_at = now
        Escalation.objects.filter(pk=escalation.pk).update(updated_at=now)
        events.announce(escalation, "approved")
        return escalation
    given = [approval.instruction for approval in agreeing if approval.instruction]
    decide_open(
        escalation,
        kind=Decision.Kind.OPTION,
        option_key=choice.option,
        args=choice.args,
        instruction=given[-1] if given else "",
        decided_by_type=Decision.DecidedBy.HUMAN,
        decided_by_name=user.get_username(),
        user=user,
        now=now,
        approved_by=[approval.user_name for approval in agreeing],
        rules=rules,
    )
    return escalation


@cache
def _flip_sql() -> str:
    # Escalation.objects.filter(pk=, status__in=OPEN_STATUSES).update(status=DECIDED,
    # awaiting_look=, claimed_by=None, claimed_until=None, expires_at=, updated_at=now), by
    # hand (tests/test_rows.py).
    open_statuses = ", ".join(["%s"] * len(Escalation.OPEN_STATUSES))
    return (
        "UPDATE escalations_escalation SET status = %s, awaiting_look = %s, claimed_by_id = NULL,"  # noqa: S608 (the model's own table and columns, never input)
        f" claimed_until = NULL, expires_at = %s, updated_at = %s WHERE id = %s AND status IN ({open_statuses})"
    )


# The agent's next decision number, in one statement (an UPDATE, then a read, by the ORM).
NEXT_SEQ_SQL = (
    "UPDATE escalations_agent SET decision_seq = decision_seq + 1 WHERE id = %s RETURNING decision_seq"
)


def decide_open(
    escalation: Escalation,
    *,
    kind: str,
    option_key: str,
    args: dict[str, Any] | None,
    instruction: str,
    decided_by_type: str,
    decided_by_name: str,
    user: User | None,
    now: datetime,
    approved_by: list[str] | None = None,
    rules: policy.Rules | None = None,
) -> Decision:
    """Inside a transaction: flip an open escalation to decided and write the decision.

    The conditional UPDATE is the gate: only one caller finds the row open. The decision's
    valid_until comes from the domain's `rules` (read here when not given). A decision a
    person looks at afterwards (FlagReview.applies) leaves the escalation awaiting_look.
    """
    awaiting_look = FlagReview.applies(escalation.tier, decided_by_type)
    valid_until = policy.valid_until(rules or policies.rules_for(escalation.domain) or policy.Rules(), now)
    flipped = rows.execute(
        _flip_sql(),
        [
            Escalation.Status.DECIDED,
            awaiting_look,
            rows.prep(Escalation, "expires_at", valid_until),
            rows.prep(Escalation, "updated_at", now),
            rows.prep(Escalation, "id", escalation.pk),
            *Escalation.OPEN_STATUSES,
        ],
    )
    if not flipped:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    escalation.status, escalation.awaiting_look = Escalation.Status.DECIDED, awaiting_look
    escalation.claimed_by, escalation.claimed_until, escalation.updated_at = None, None, now
    escalation.expires_at = valid_until
    # Taking the agent's next feed number locks its row: the feed sees decisions in commit order.
    seq = rows.fetch_one(NEXT_SEQ_SQL, [escalation.agent_id])[0]  # type: ignore[index]  # the agent's row is there
    recommended = escalation.recommended_option["key"]
    decision = Decision(
        escalation=escalation,
        agent_id=escalation.agent_id,
        seq=seq,
        kind=kind,
        option_key=option_key,
        args=args,
        instruction=instruction,
        decided_by_type=decided_by_type,
        decided_by_user=user,
        decided_by_name=decided_by_name,
        decided_at=now,
        valid_until=valid_until,
        took_recommended=kind == Decision.Kind.OPTION and option_key == recommended,
    )
    rows.insert(decision)
    escalation.decision = decision
    if kind in (Decision.Kind.TAKE_OVER, Decision.Kind.HALT):
        status = Run.Status.TAKEN_OVER if kind == Decision.Kind.TAKE_OVER else Run.Status.HALTED
        Run.objects.filter(pk=escalation.run_id).update(
            status=status, taken_over_by=user if kind == Decision.Kind.TAKE_OVER else None
        )
    timeline.record(
        escalation,
        Event.Kind.DECIDED,
        actor=decided_by_name,
        now=now,
        data={
            "kind": kind,
            "option": option_key or None,
            "by": decided_by_type,
            "instruction": instruction or None,
            **({"approved_by": approved_by} if approved_by else {}),
        },
        announce=False,  # below, once the delivery is queued
    )
    agent = escalation.agent
    if agent.resume_url:
        deliveries.queue_delivery(escalation, agent.resume_url, now)
    metrics.count_on_commit(metrics.DECISIONS, kind=kind, decided_by=decided_by_type)
    human = decided_by_type == Decision.DecidedBy.HUMAN
    events.announce(escalation, "decided", actor=decided_by_name if human else decided_by_type)
    signals.notable_on_commit("decided", escalation=escalation)
    return decision
