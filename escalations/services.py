"""Every write of the domain. Views, the API, tasks and commands call these; nothing else writes.

Each service runs in one transaction and announces its change after commit (events.announce,
tasks enqueued with delay_on_commit). Decisions are written once, by a conditional UPDATE
that only an open escalation passes, under a one-to-one constraint.
"""

import hashlib
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from operations import metrics

from . import events, levels, policy, selectors, signals
from .models import (
    Agent,
    AgentToken,
    Approval,
    Decision,
    Delivery,
    DeliveryAttempt,
    Escalation,
    EscalationLevel,
    Event,
    FlagReview,
    GateCheck,
    Policy,
    PolicyVersion,
    Run,
    hash_token,
)
from .problems import FieldError, Problem, invalid, unstorable
from .schemas import JSON_OBJECT_MAX_BYTES, EscalationIn, GateIn
from .wire import escalation_dict

# ---------------------------------------------------------------- errors


class AlreadyDecided(Exception):
    """The escalation is no longer open; `escalation` is it as it stands (decision loaded)."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"escalation {escalation.id} is {escalation.status}")
        self.escalation = escalation


class ClaimedByOther(Exception):
    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"claimed by {escalation.claimed_by}")
        self.escalation = escalation


# ---------------------------------------------------------------- agents


@dataclass
class NewAgent:
    agent: Agent
    token: str


def agent_create(
    *, name: str, domain: str = "default", resume_url: str = "", daily_budget: int = 50
) -> NewAgent:
    """Register an agent with its first token. The token is returned once, stored hashed.

    Raises a 422 Problem naming the field for an unknown domain, a negative budget or a
    name already taken (also when a concurrent registration took it first).
    """
    errors = _agent_setting_errors(domain=domain, daily_budget=daily_budget)
    if errors:
        raise invalid(errors)
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                name=name,
                domain=domain,
                resume_url=resume_url,
                daily_budget=daily_budget,
                signing_secret=Agent.new_signing_secret(),
            )
            token = token_issue(agent=agent)
    except IntegrityError:  # the name's unique constraint: the only one a new row can break
        raise invalid([FieldError("name", f"an agent named {name!r} already exists")]) from None
    return NewAgent(agent, token)


def _agent_setting_errors(*, domain: str, daily_budget: int) -> list[FieldError]:
    errors = []
    if not Policy.objects.filter(domain=domain).exists():
        errors.append(_unknown_domain(domain, "domain"))
    if daily_budget < 0:
        errors.append(FieldError("daily_budget", "must be 0 or more"))
    return errors


def agent_update(
    *, agent: Agent, domain: str, resume_url: str, daily_budget: int, is_active: bool
) -> Agent:
    """Change an agent's settings. Takes effect on its next request: a deactivated agent's
    tokens answer 401 at once. Raises a 422 Problem naming the field (unknown domain,
    negative budget). Deliveries already queued keep the URL they were queued with."""
    errors = _agent_setting_errors(domain=domain, daily_budget=daily_budget)
    if errors:
        raise invalid(errors)
    agent.domain, agent.resume_url = domain, resume_url
    agent.daily_budget, agent.is_active = daily_budget, is_active
    agent.save(update_fields=["domain", "resume_url", "daily_budget", "is_active"])
    return agent


def agent_secret_roll(*, agent: Agent) -> str:
    """A new webhook signing secret; the old one stops signing at once (deliveries read the
    secret when they send). Returned once; the agent must switch to it."""
    agent.signing_secret = Agent.new_signing_secret()
    agent.save(update_fields=["signing_secret"])
    return agent.signing_secret


def token_issue(*, agent: Agent) -> str:
    """A new API token for `agent`; the only time the plain token exists."""
    token = AgentToken.generate()
    AgentToken.objects.create(agent=agent, token_hash=hash_token(token), prefix=token[:10])
    return token


def token_rotate(*, agent: Agent, revoke_others: bool = False, now: datetime | None = None) -> str:
    """Issue a new token (returned once) and, if asked, revoke every other live token of the
    agent in the same transaction, so the agent is never left without a working token."""
    now = now or timezone.now()
    with transaction.atomic():
        token = token_issue(agent=agent)
        if revoke_others:
            agent.tokens.filter(revoked_at__isnull=True).exclude(
                token_hash=hash_token(token)
            ).update(revoked_at=now)
    return token


def token_revoke(*, token: AgentToken, now: datetime | None = None) -> None:
    """Revoke a token; the API refuses it from the next request. Revoking twice keeps the
    first time."""
    AgentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )


def agent_for_token(token: str) -> Agent | None:
    found = (
        Agent.objects.filter(
            tokens__token_hash=hash_token(token), tokens__revoked_at__isnull=True, is_active=True
        )
        .order_by()[:1]
    )
    return next(iter(found), None)


# ---------------------------------------------------------------- policy


def rules_for(domain: str) -> policy.Rules | None:
    row = next(iter(Policy.objects.filter(domain=domain).order_by()[:1]), None)
    if row is None:
        return None
    return rules_of(row)


def rules_of(row: Policy) -> policy.Rules:
    """The pure rules of a Policy row."""
    return policy.Rules(
        domain=row.domain,
        **{name: getattr(row, name) for name in policy.RULE_FIELDS},
        version=row.version,
    )


def _policy_snapshot(row: Policy) -> dict[str, Any]:
    """What a PolicyVersion keeps: the rules, the description and the managers' usernames."""
    snapshot = policy.rules_snapshot(rules_of(row))
    snapshot["description"] = row.description
    snapshot["managers"] = sorted(row.managers.values_list("username", flat=True))
    return snapshot


def _policy_errors(rules: policy.Rules) -> None:
    errors = policy.rules_errors(rules)
    if errors:
        raise invalid([FieldError(name, message) for name, message in errors])


def policy_create(
    *, domain: str, description: str = "", user=None, now: datetime | None = None, **rules: Any
) -> Policy:
    """A new domain policy at version 1, with its first PolicyVersion.

    `rules` are Policy fields of policy.RULE_FIELDS (defaults for the rest) and optionally
    `managers` (users). Raises Problem(422) naming the field: a taken domain, rules out of
    order.
    """
    now = now or timezone.now()
    managers = rules.pop("managers", None) or []
    row = Policy(domain=domain, description=description, version=1, **rules)
    _policy_errors(rules_of(row))
    try:
        with transaction.atomic():
            row.save(force_insert=True)
            row.managers.set(managers)
            _policy_version_write(row, user=user, note="created", now=now)
    except IntegrityError:
        raise invalid([FieldError("domain", f"a policy for {domain!r} exists already")]) from None
    return row


def policy_update(
    *, policy_id: int, changes: dict[str, Any], user=None, note: str = "", now: datetime | None = None
) -> tuple[Policy, list[policy.Change]]:
    """Save a manager's edit of a policy as its next version.

    `changes` maps fields of policy.RULE_FIELDS, `description` and `managers` (users) to
    new values. Under a lock on the policy row: validate the rules (Problem 422 naming the
    field), apply, bump Policy.version and write the PolicyVersion (snapshot, who, note).
    An edit that changes nothing is saved as nothing: (policy, []) and no new version.
    Escalations created after the commit record the new version.
    """
    now = now or timezone.now()
    changes = dict(changes)
    managers = changes.pop("managers", None)
    unknown = set(changes) - {*policy.RULE_FIELDS, "description"}
    if unknown:
        raise ValueError(f"not policy settings: {sorted(unknown)}")
    with transaction.atomic():
        row = Policy.objects.select_for_update().get(pk=policy_id)
        before = _policy_snapshot(row)
        for name, value in changes.items():
            setattr(row, name, value)
        _policy_errors(rules_of(row))
        after = policy.rules_snapshot(rules_of(row))
        after["description"] = row.description
        after["managers"] = (
            sorted(user.get_username() for user in managers) if managers is not None else before["managers"]
        )
        changed = policy.rules_changes(before, after)
        if not changed:
            return row, []
        row.version = F("version") + 1
        row.save()
        row.refresh_from_db(fields=["version"])
        if managers is not None:
            row.managers.set(managers)
        _policy_version_write(row, user=user, note=note, now=now, snapshot=after)
    return row, changed


def _policy_version_write(row: Policy, *, user, note: str, now: datetime, snapshot=None) -> None:
    PolicyVersion.objects.create(
        policy=row,
        version=row.version,
        rules=snapshot if snapshot is not None else _policy_snapshot(row),
        changed_by=user,
        changed_by_name=user.get_username() if user is not None else "",
        note=note[:300],
        created_at=now,
    )


def _unknown_domain(domain: str, field: str) -> FieldError:
    known = ", ".join(Policy.objects.values_list("domain", flat=True))
    return FieldError(field, f"unknown domain {domain!r}; known: {known}")


def _rules_or_422(domain: str, field: str) -> policy.Rules:
    rules = rules_for(domain)
    if rules is None:
        raise invalid([_unknown_domain(domain, field)])
    return rules


def gate_check(*, agent: Agent, data: GateIn) -> tuple[policy.Verdict, policy.Rules]:
    """Answer POST /gate from the same policy code as escalations, and count the call."""
    domain = data.domain or agent.domain
    rules = _rules_or_422(domain, "domain")
    action = data.action
    verdict = policy.verdict_for(
        rules,
        policy.Situation(
            confidence=data.confidence,
            irreversible=bool(action and action.irreversible),
            attempts=data.attempts,
            planned_scope=action.planned_scope if action else None,
            actual_scope=action.actual_scope if action else None,
            novel=data.novel,
        ),
    )
    GateCheck.objects.create(
        agent=agent, domain=domain, run_id=data.run_id or "", verdict=verdict.name, tier=verdict.tier
    )
    return verdict, rules


# ---------------------------------------------------------------- create


def fingerprint(body: Any) -> str:
    """The same body, whatever its key order or spacing, gives the same fingerprint."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# How far ahead of the server's clock an agent's times may be (its clock may run fast).
CLOCK_SKEW = timedelta(minutes=5)


def _cross_field_errors(package: EscalationIn, now: datetime) -> list[FieldError]:
    errors = []
    delay = package.cost_of_delay
    if delay.respond_by is not None and delay.respond_by <= now:
        errors.append(FieldError("cost_of_delay.respond_by", "must be in the future"))
    if delay.stuck_since is not None and delay.stuck_since > now + CLOCK_SKEW:
        errors.append(FieldError("cost_of_delay.stuck_since", "must not be in the future"))
    if package.timeout_option is not None:
        option = next((o for o in package.options if o.key == package.timeout_option), None)
        if option is None:
            keys = ", ".join(o.key for o in package.options)
            errors.append(FieldError("timeout_option", f"must be the key of an option ({keys})"))
        elif option.irreversible:
            errors.append(FieldError("timeout_option", "must name a reversible option"))
        if delay.respond_by is None:
            errors.append(FieldError("timeout_option", "needs cost_of_delay.respond_by"))
    for i, step in enumerate(package.history):
        if step.at > now + CLOCK_SKEW:
            errors.append(FieldError(f"history.{i}.at", "must not be in the future"))
            break
    return errors


def _urgency(escalation: Escalation, level_boost: int = 0) -> policy.Urgency:
    return policy.Urgency(
        tier=escalation.tier,
        impact=escalation.impact,
        blocking=escalation.blocking,
        blocked_tasks=escalation.blocked_tasks,
        irreversible=escalation.is_irreversible,
        respond_by=escalation.respond_by,
        stuck_since=escalation.stuck_since,
        level=escalation.level,
        level_boost=level_boost,
    )


@dataclass
class Created:
    escalation: Escalation
    created: bool


def escalation_create(
    *,
    agent: Agent,
    package: EscalationIn,
    body: Any,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Created:
    """Store a package, tier it, and (tier 1-2 with auto-decide) decide it at once.

    One transaction: the run, the escalation, its events, the budget count and, when the
    policy decides, the decision and its delivery. Idempotency: the same key and body
    answer the stored escalation (created=False); another body is a 409. A new request
    just inserts: a used key meets the unique constraint, and only then is the stored one
    looked up, so concurrent requests with one key create exactly one escalation.
    Raises Problem (409 open escalation for the run, 422 invalid or unknown domain).
    """
    now = now or timezone.now()
    body_fingerprint = fingerprint(body)
    errors = _cross_field_errors(package, now)
    domain = package.domain or agent.domain
    rules = rules_for(domain)
    if rules is None:
        field = "domain" if package.domain else "domain (the agent's default)"
        errors.append(_unknown_domain(domain, field))
    if errors:
        # A replay is answered even if time has made its body invalid (respond_by passed).
        replay = _replay(agent, idempotency_key, body_fingerprint, now) if idempotency_key else None
        if replay is not None:
            return Created(replay, created=False)
        raise invalid(errors, type="incomplete-package", title="Escalation package is incomplete")
    assert rules is not None

    action = package.action
    irreversible = bool(action and action.irreversible) or any(o.irreversible for o in package.options)
    verdict = policy.verdict_for(
        rules,
        policy.Situation(
            confidence=package.confidence,
            irreversible=irreversible,
            attempts=package.attempts,
            planned_scope=action.planned_scope if action else None,
            actual_scope=action.actual_scope if action else None,
            novel=package.reason == Escalation.Reason.NOVELTY,
        ),
    )
    delay = package.cost_of_delay
    respond_by = delay.respond_by
    if respond_by is None and (minutes := policy.default_respond_minutes(rules, verdict.tier)):
        # The policy's deadline for a tier that waits for a person. It only raises the
        # priority as it nears: timeout_option needs the package's own respond_by.
        respond_by = now + timedelta(minutes=minutes)
    escalation = Escalation(
        agent=agent,
        title=package.title,
        uncertainty=package.uncertainty,
        reason=package.reason,
        confidence=package.confidence,
        history=[step.model_dump(mode="json", exclude_none=True) for step in package.history],
        options=[option.model_dump(mode="json", exclude_none=True) for option in package.options],
        blocking=delay.blocking,
        impact=delay.impact,
        blocked_tasks=delay.blocked_tasks,
        stuck_since=delay.stuck_since or now,
        respond_by=respond_by,
        delay_note=delay.note or "",
        action=action.model_dump(mode="json", exclude_none=True) if action else None,
        attempts=package.attempts,
        domain=domain,
        timeout_option=package.timeout_option or "",
        links=[link.model_dump(mode="json") for link in package.links],
        metadata=package.metadata,
        is_irreversible=irreversible,
        tier=verdict.tier,
        tier_reasons=verdict.reasons,
        policy_version=rules.version,
        idempotency_key=idempotency_key or None,
        request_fingerprint=body_fingerprint,
        created_at=now,
        updated_at=now,
    )
    priority = policy.priority_for(_urgency(escalation), now)
    escalation.priority, escalation.priority_reasons = priority.score, priority.reasons

    for attempt in range(2):
        try:
            _insert(escalation, agent, package.run_id, verdict, priority, rules, domain, now)
            return Created(escalation, created=True)
        except IntegrityError:
            # Another request with this key, or an open escalation for the run.
            if idempotency_key:
                replay = _replay(agent, idempotency_key, body_fingerprint, now)
                if replay is not None:
                    return Created(replay, created=False)
                if attempt == 0 and _free_expired_key(agent, idempotency_key, now):
                    continue  # the key was past retention: it is new again
            raise _open_run_conflict(agent, package.run_id) from None
    raise AssertionError("unreachable")


def _insert(escalation, agent, run_id, verdict, priority, rules, domain, now) -> None:
    """The create transaction: one commit for the run, the escalation, its event, the
    budget count and (tiers 1-2) the policy's decision and its delivery."""
    with transaction.atomic():
        run = Run(agent=agent, run_id=run_id)
        # An upsert (one statement, pk returned): a run is created on its first escalation.
        Run.objects.bulk_create(
            [run], update_conflicts=True, unique_fields=["agent", "run_id"], update_fields=["run_id"]
        )
        escalation.run = run
        escalation.save(force_insert=True)
        _count_against_budget(agent, now)
        Event.objects.create(
            escalation=escalation,
            kind=Event.Kind.CREATED,
            actor=agent.name,
            at=now,
            data={"tier": verdict.tier, "tier_reasons": verdict.reasons, "priority": priority.score},
        )
        _notable_create(escalation, agent, verdict, now)
        if verdict.decided_by_policy and rules.auto_decide:
            _decide_open(
                escalation,
                kind=Decision.Kind.OPTION,
                option_key=escalation.recommended_option["key"],
                args=escalation.recommended_option.get("args"),
                instruction="",
                decided_by_type=Decision.DecidedBy.POLICY,
                decided_by_name=f"policy:{domain}",
                user=None,
                now=now,
            )
        else:
            # Known to have no decision: spare escalation_dict a query to find out.
            Escalation.decision.related.set_cached_value(escalation, None)
            events.announce(escalation, "created", actor=agent.name)


def _replay(agent: Agent, key: str, body_fingerprint: str, now: datetime) -> Escalation | None:
    found = next(
        iter(
            Escalation.objects.filter(agent=agent, idempotency_key=key)
            .only("id", "request_fingerprint", "created_at")
            .order_by()[:1]
        ),
        None,
    )
    if found is None or found.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_RETENTION_SECONDS):
        return None  # unknown, or past retention: not a replay
    if found.request_fingerprint != body_fingerprint:
        raise Problem(
            409,
            "This Idempotency-Key was used with a different body. Use a new key for a new request.",
            type="idempotency-key-reused",
            title="Idempotency key reused with another body",
            extra={"escalation": escalation_dict(_full(found.pk))},
        )
    return _full(found.pk)


def _free_expired_key(agent: Agent, key: str, now: datetime) -> bool:
    """Past retention a key is new again: take it off the old escalation."""
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_RETENTION_SECONDS)
    return bool(
        Escalation.objects.filter(agent=agent, idempotency_key=key, created_at__lt=cutoff).update(
            idempotency_key=None
        )
    )


def _full(pk) -> Escalation:
    return Escalation.objects.select_related("run", "decision").get(pk=pk)


def _open_run_conflict(agent: Agent, run_id: str) -> Problem:
    open_one = (
        Escalation.objects.open().select_related("run").filter(agent=agent, run__run_id=run_id).first()
    )
    if open_one is None:  # the conflict resolved itself meanwhile; the agent may retry
        return Problem(409, "A concurrent request conflicted; retry.", type="conflict")
    return Problem(
        409,
        f"Run {run_id!r} already has an open escalation. Wait for its decision or withdraw it.",
        type="run-has-open-escalation",
        title="The run already has an open escalation",
        extra={"open_escalation": escalation_dict(open_one)},
    )


def _count_against_budget(agent: Agent, now: datetime) -> None:
    today = now.date()
    Agent.objects.filter(pk=agent.pk).update(
        budget_used=Case(When(budget_day=today, then=F("budget_used") + 1), default=1),
        budget_day=today,
    )
    agent.budget_used = agent.budget_used_on(today) + 1
    agent.budget_day = today


def _notable_create(escalation: Escalation, agent: Agent, verdict, now: datetime) -> None:
    """In the create transaction, tell notifications of a new halt and of an agent over its
    budget (their outbox rows commit with the escalation).

    Over budget is sent for every escalation past the budget (the count read at
    authentication may be stale under concurrency, so "the one that crossed" is not
    knowable here); notifications keeps one per agent and day.
    """
    if verdict.tier == policy.HALT:
        signals.notable_in_transaction("halt_created", escalation=escalation)
    if agent.budget_used > agent.daily_budget:
        signals.notable_in_transaction(
            "over_budget",
            agent=agent,
            escalation=escalation,
            data={"day": now.date().isoformat(), "used": agent.budget_used, "budget": agent.daily_budget},
        )


# ---------------------------------------------------------------- decide


@dataclass
class DecisionRequest:
    kind: str
    option: str | None = None
    args: dict | None = None
    instruction: str | None = None


def decision_errors(escalation: Escalation, request: DecisionRequest) -> list[FieldError]:
    """What is wrong with a decision on this escalation, as named fields."""
    errors = []
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
            size = len(json.dumps(request.args, ensure_ascii=False).encode())
            if size > JSON_OBJECT_MAX_BYTES:
                errors.append(FieldError("args", f"must be at most 16 KiB of JSON ({size} bytes given)"))
            elif bad := unstorable(request.args, "args"):
                errors.append(bad)
    elif request.kind == Decision.Kind.INSTRUCTION and not (request.instruction or "").strip():
        errors.append(FieldError("instruction", "is required when kind is instruction"))
    # The dashboard's forms reach here without the API's parser: check what it checks.
    if len(request.instruction or "") > 4000:
        errors.append(FieldError("instruction", "must be at most 4000 characters"))
    elif bad := unstorable(request.instruction or "", "instruction"):
        errors.append(bad)
    return errors


def escalation_decide(
    *,
    escalation_id,
    request: DecisionRequest,
    user=None,
    decided_by_type: str = Decision.DecidedBy.HUMAN,
    now: datetime | None = None,
) -> Escalation:
    """Record the one decision on an open escalation.

    Raises Problem(422) for an invalid decision and AlreadyDecided when someone else got
    there first (concurrent callers: exactly one succeeds). On commit: the timeline,
    live updates, wake-ups and the webhook delivery task.

    Under the two-person rule (needs_approvals > 1) a person's option is an approval
    (see _approve): the escalation is returned still open until the approval that
    completes the count decides it. Callers tell the two apart by `is_open`.
    """
    now = now or timezone.now()
    escalation = (
        Escalation.objects.select_related("run", "agent", "decision").filter(pk=escalation_id).first()
    )
    if escalation is None:
        raise Problem(404, f"No escalation {escalation_id}.")
    if not escalation.is_open:
        raise AlreadyDecided(escalation)
    errors = decision_errors(escalation, request)
    if errors:
        raise invalid(errors)
    args = request.args
    if request.kind == Decision.Kind.OPTION and args is None:
        args = escalation.option(request.option).get("args")
    name = user.get_username() if user is not None else decided_by_type
    if user is not None and needs_approvals(escalation, request) > 1:
        return _approve(escalation, request=request, args=args, user=user, now=now)
    with transaction.atomic():
        _decide_open(
            escalation,
            kind=request.kind,
            option_key=request.option if request.kind == Decision.Kind.OPTION else "",
            args=args if request.kind == Decision.Kind.OPTION else None,
            instruction=(request.instruction or "").strip(),
            decided_by_type=decided_by_type,
            decided_by_name=name,
            user=user,
            now=now,
        )
    return escalation


# ---------------------------------------------------------------- the two-person rule


def needs_approvals(escalation: Escalation, request: DecisionRequest) -> int:
    """How many distinct reviewers must approve this decision before it is made (1: none).

    The two-person rule gates a person's choice of an option that is irreversible, or of
    any option when the action at stake is irreversible, by the domain's
    approvals_required. Instructions, take-overs and halts are never gated.
    """
    if request.kind != Decision.Kind.OPTION:
        return 1
    option = escalation.option(request.option or "") or {}
    if not (option.get("irreversible") or (escalation.action or {}).get("irreversible")):
        return 1
    found = Policy.objects.filter(domain=escalation.domain).values_list("approvals_required", flat=True)
    return next(iter(found), 1)


def _approve(escalation: Escalation, *, request: DecisionRequest, args, user, now: datetime) -> Escalation:
    """Record `user`'s approval of an option; the approval that completes the count decides.

    Approvals agree when they name the same option with the same args (what the agent
    would act with): a reviewer who edits the args starts a new count that the others
    must approve. A reviewer has one approval per escalation; approving again replaces
    it (the same reviewer twice counts once). The instruction sent is the latest one
    given among the agreeing approvals. The escalation row is locked while counting, so
    concurrent approvals are counted one after the other and exactly one of them decides
    (AlreadyDecided for anyone after it). On commit: an `approved` event and a live update.
    """
    with transaction.atomic():
        locked = Escalation.objects.select_for_update(of=("self",)).filter(pk=escalation.pk).first()
        if locked is None or not locked.is_open:
            raise AlreadyDecided(
                Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
            )
        required = needs_approvals(escalation, request)
        instruction = (request.instruction or "").strip()
        Approval.objects.update_or_create(
            escalation=escalation,
            user=user,
            defaults={
                "user_name": user.get_username(),
                "option_key": request.option,
                "args": args,
                "instruction": instruction,
                "at": now,
            },
        )
        agreeing = selectors.agreeing(
            Approval.objects.filter(escalation=escalation), request.option, args
        )
        Event.objects.create(
            escalation=escalation,
            kind=Event.Kind.APPROVED,
            actor=user.get_username(),
            at=now,
            data={"option": request.option, "approvals": len(agreeing), "required": required},
        )
        if len(agreeing) < required:
            escalation.updated_at = now
            Escalation.objects.filter(pk=escalation.pk).update(updated_at=now)
            events.announce(escalation, "approved")
            return escalation
        given = [approval.instruction for approval in agreeing if approval.instruction]
        _decide_open(
            escalation,
            kind=Decision.Kind.OPTION,
            option_key=request.option,
            args=args,
            instruction=given[-1] if given else "",
            decided_by_type=Decision.DecidedBy.HUMAN,
            decided_by_name=user.get_username(),
            user=user,
            now=now,
            approved_by=[approval.user_name for approval in agreeing],
        )
    return escalation


def _decide_open(
    escalation: Escalation,
    *,
    kind: str,
    option_key: str,
    args: dict | None,
    instruction: str,
    decided_by_type: str,
    decided_by_name: str,
    user,
    now: datetime,
    approved_by: list[str] | None = None,
) -> Decision:
    """Inside a transaction: flip an open escalation to decided and write the decision.

    The conditional UPDATE is the gate: only one caller finds the row open.
    """
    flipped = Escalation.objects.filter(pk=escalation.pk, status__in=Escalation.OPEN_STATUSES).update(
        status=Escalation.Status.DECIDED, claimed_by=None, claimed_until=None, updated_at=now
    )
    if not flipped:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    escalation.status = Escalation.Status.DECIDED
    escalation.claimed_by, escalation.claimed_until, escalation.updated_at = None, None, now
    # Taking the agent's next feed number locks its row: the feed sees decisions in commit order.
    Agent.objects.filter(pk=escalation.agent_id).update(decision_seq=F("decision_seq") + 1)
    seq = Agent.objects.filter(pk=escalation.agent_id).values_list("decision_seq", flat=True).get()
    recommended = escalation.recommended_option["key"]
    decision = Decision.objects.create(
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
        took_recommended=kind == Decision.Kind.OPTION and option_key == recommended,
    )
    escalation.decision = decision
    if kind in (Decision.Kind.TAKE_OVER, Decision.Kind.HALT):
        status = Run.Status.TAKEN_OVER if kind == Decision.Kind.TAKE_OVER else Run.Status.HALTED
        Run.objects.filter(pk=escalation.run_id).update(
            status=status, taken_over_by=user if kind == Decision.Kind.TAKE_OVER else None
        )
    Event.objects.create(
        escalation=escalation,
        kind=Event.Kind.DECIDED,
        actor=decided_by_name,
        at=now,
        data={
            "kind": kind,
            "option": option_key or None,
            "by": decided_by_type,
            "instruction": instruction or None,
            **({"approved_by": approved_by} if approved_by else {}),
        },
    )
    agent = escalation.agent
    if agent.resume_url:
        _queue_delivery(escalation, agent.resume_url, now)
    metrics.count_on_commit(metrics.DECISIONS, kind=kind, decided_by=decided_by_type)
    human = decided_by_type == Decision.DecidedBy.HUMAN
    events.announce(escalation, "decided", actor=decided_by_name if human else decided_by_type)
    return decision


# ---------------------------------------------------------------- deliveries

log = logging.getLogger(__name__)


def _queue_delivery(escalation: Escalation, url: str, now: datetime) -> Delivery:
    """An outbox row, written in the decision's transaction, and a task after commit.

    If the enqueue is lost (broker down, crash after commit), the periodic sweep sends it.
    """
    from .tasks import deliver_webhook_task

    delivery = Delivery(escalation=escalation, url=url, payload={}, next_attempt_at=now, created_at=now)
    delivery.payload = {
        "event": "escalation.decided",
        "delivery_id": str(delivery.id),
        "escalation": escalation_dict(escalation),
    }
    delivery.save(force_insert=True)
    delivery_id = str(delivery.id)
    transaction.on_commit(lambda: _enqueue_delivery(deliver_webhook_task, delivery_id))
    return delivery


def _enqueue_delivery(task, delivery_id: str) -> None:
    """After commit: the fast path. A broker outage is logged, never raised: the decision
    has committed, and the sweep sends the outbox row once the broker is back."""
    try:
        task.delay(delivery_id)
    except Exception as exc:
        log.warning(
            "delivery %s not enqueued (%s: %s); the sweep will send it",
            delivery_id,
            type(exc).__name__,
            exc,
        )


def delivery_claim(
    *, delivery_id, lease_seconds: float | None = None, now: datetime | None = None
) -> Delivery | None:
    """Take a due delivery for sending (compare-and-swap), or None if it is not ours to send.

    None when the row is gone, already delivered or failed, not yet due, or held by a live
    lease (another worker is sending it). The lease (`lease_seconds`, by default
    OUTBOX_LEASE_SECONDS) outlives one attempt; when it lapses, the row is sent again.
    """
    now = now or timezone.now()
    try:
        delivery_id = uuid.UUID(str(delivery_id))
    except ValueError:
        return None
    lease = now + timedelta(seconds=lease_seconds or settings.OUTBOX_LEASE_SECONDS)
    at = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            CLAIM_SQL,
            [at(lease), Delivery._meta.pk.get_db_prep_value(delivery_id, connection), at(now), at(now)],
        )
        claimed = cursor.fetchone()
        if claimed is None:
            return None
        url, payload, attempt_count, claim_count, created_at, escalation_id = claimed
        cursor.execute(AGENT_SECRET_SQL, [escalation_id])
        agent_id, secret = cursor.fetchone()
    escalation = Escalation(id=selectors.as_uuid(escalation_id), agent=Agent(id=agent_id, signing_secret=secret))
    delivery = Delivery(
        id=delivery_id,
        escalation=escalation,
        url=url,
        payload=selectors.as_json(payload),
        status=Delivery.Status.SENDING,
        attempt_count=attempt_count,
        claim_count=claim_count,
        created_at=selectors.as_time(created_at),
        lease_until=lease,
    )
    delivery._state.adding = False  # built from its row: a save() updates, never inserts
    if claim_count - attempt_count > MAX_CRASHED_CLAIMS:
        _fail_poison_delivery(delivery, now)
        return None
    return delivery


# The claim is the webhook's hot path, so it is one statement: the compare-and-swap of
# OutboxQuerySet.due() (keep the two alike) that returns what sending needs.
CLAIM_SQL = """
UPDATE escalations_delivery
SET status = 'sending', lease_until = %s, claim_count = claim_count + 1
WHERE id = %s AND (
    (status IN ('pending', 'retrying') AND next_attempt_at <= %s)
    OR (status = 'sending' AND lease_until < %s)
)
RETURNING url, payload, attempt_count, claim_count, created_at, escalation_id
"""
AGENT_SECRET_SQL = """
SELECT a.id, a.signing_secret FROM escalations_escalation e
JOIN escalations_agent a ON a.id = e.agent_id WHERE e.id = %s
"""
# What recording an attempt changes (the payload is never rewritten).
ATTEMPT_FIELDS = (
    "status", "attempt_count", "lease_until", "last_error", "next_attempt_at", "delivered_at",
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
    left behind. At most BATCH_SIZE, oldest due first.

    Fresh pending rows (younger than `grace_seconds`) are left to their on-commit task. Each
    row returned is marked as enqueued for one lease (lease_until), so a backed-up queue is
    not flooded with copies every sweep; a lapsed SENDING lease goes back to retrying.
    """
    return outbox_sweep(Delivery, now=now or timezone.now(), grace_seconds=grace_seconds)


def outbox_sweep(model, *, now: datetime, grace_seconds: float) -> list[str]:
    """deliveries_sweep for any outbox model with the same life (pending, sending with a
    lease, retrying): Delivery here, notifications.Notification there."""
    marker = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    waiting = [model.Status.PENDING, model.Status.RETRYING]
    with transaction.atomic():
        ids = list(
            model.objects.due(now)
            .exclude(status=model.Status.PENDING, created_at__gt=now - timedelta(seconds=grace_seconds))
            .exclude(status__in=waiting, lease_until__gt=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:BATCH_SIZE]
        )
        if ids:
            model.objects.filter(pk__in=ids, status=model.Status.SENDING).update(
                status=model.Status.RETRYING, next_attempt_at=now
            )
            model.objects.filter(pk__in=ids).update(lease_until=marker)
    return [str(pk) for pk in ids]


def outbox_lease_left(model, row_id, *, now: datetime | None = None) -> float | None:
    """Seconds until the sending lease on an outbox row lapses (OutboxQuerySet.lease_left);
    None when the row is not being sent, is gone, or `row_id` is not an id at all."""
    try:
        return model.objects.lease_left(row_id, now or timezone.now())
    except (ValidationError, ValueError, TypeError):
        return None


def outbox_retry_wait(attempt: int) -> timedelta:
    """How long an outbox row waits after its `attempt`-th failure: exponential backoff with
    full jitter, from WEBHOOK_BACKOFF_BASE_SECONDS up to WEBHOOK_BACKOFF_MAX_SECONDS."""
    seconds = policy.backoff_seconds(
        attempt,
        base=settings.WEBHOOK_BACKOFF_BASE_SECONDS,
        cap=settings.WEBHOOK_BACKOFF_MAX_SECONDS,
        jitter=random.random(),  # jitter, not security
    )
    return timedelta(seconds=seconds)


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

    A 2xx marks the escalation resumed. Network errors, 408, 429 and 5xx retry with
    exponential backoff and jitter until WEBHOOK_RETRY_FOR_SECONDS have passed; other
    4xx stop. Returns the delivery; `next_attempt_at` tells when to try again.
    Raises Delivery.DoesNotExist if the row is gone.
    """
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .only("id", "escalation_id", "created_at", *ATTEMPT_FIELDS)
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
        escalation = Escalation.objects.only("id", "agent_id", "status", "updated_at", "priority").get(
            pk=delivery.escalation_id
        )
        ok = status_code is not None and 200 <= status_code < 300
        metrics.count_on_commit(metrics.WEBHOOK_ATTEMPTS, result="success" if ok else "failure")
        if ok:
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            if _mark_resumed(escalation, actor="webhook", now=now, data={"delivery": str(delivery.id)}):
                decision = Decision.objects.only("decided_at").get(escalation_id=escalation.pk)
                latency = (now - decision.decided_at).total_seconds()
                metrics.observe_on_commit(metrics.DECISION_TO_WEBHOOK, latency)
        elif finished:
            pass
        else:
            retryable = status_code is None or status_code >= 500 or status_code in RETRYABLE
            delivery.last_error = (error or f"HTTP {status_code}")[:500]
            next_at = now + outbox_retry_wait(number)
            if retryable and next_at <= delivery.give_up_at():
                delivery.status = Delivery.Status.RETRYING
                delivery.next_attempt_at = next_at
            else:
                delivery.status = Delivery.Status.FAILED
                _delivery_failed(escalation, delivery, now)
        delivery.save(update_fields=ATTEMPT_FIELDS)
    return delivery


def _delivery_failed(escalation: Escalation, delivery: Delivery, now: datetime) -> None:
    """Inside a transaction: a delivery failed for good. The timeline says so, and
    notifications are told (their outbox rows commit with it)."""
    data = {"delivery": str(delivery.id), "error": delivery.last_error, "attempts": delivery.attempt_count}
    _record(escalation, Event.Kind.DELIVERY_FAILED, actor="webhook", now=now, data=data)
    metrics.count_on_commit(metrics.WEBHOOK_FAILURES)
    signals.notable_in_transaction("delivery_failed", escalation=escalation, data=data)


def delivery_redeliver(*, escalation: Escalation, user=None, now: datetime | None = None) -> Delivery:
    """Send a decided escalation's decision again, as a new delivery (new delivery_id)."""
    now = now or timezone.now()
    with transaction.atomic():
        escalation = Escalation.objects.select_related("agent", "run", "decision").get(pk=escalation.pk)
        if escalation.status not in (Escalation.Status.DECIDED, Escalation.Status.RESUMED):
            raise Problem(409, "Only a decided escalation can be redelivered.")
        if not escalation.agent.resume_url:
            raise Problem(409, "The agent has no resume_url to deliver to.")
        delivery = _queue_delivery(escalation, escalation.agent.resume_url, now)
        _record(
            escalation,
            Event.Kind.REDELIVERY,
            actor=user.get_username() if user else "",
            now=now,
            data={"delivery": str(delivery.id)},
        )
    return delivery


def _mark_resumed(escalation: Escalation, *, actor: str, now: datetime, data: dict) -> bool:
    flipped = Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.DECIDED).update(
        status=Escalation.Status.RESUMED, updated_at=now
    )
    if flipped:
        escalation.status, escalation.updated_at = Escalation.Status.RESUMED, now
        _record(escalation, Event.Kind.RESUMED, actor=actor, now=now, data=data)
    return bool(flipped)


# ---------------------------------------------------------------- agent callbacks


def escalation_acknowledge(*, escalation: Escalation, now: datetime | None = None) -> Escalation:
    """The agent resumed with the decision. Idempotent; 409 before a decision."""
    now = now or timezone.now()
    if escalation.is_open or escalation.status == Escalation.Status.WITHDRAWN:
        raise Problem(
            409,
            f"The escalation is {escalation.status}: there is no decision to acknowledge yet.",
            type="not-decided",
        )
    with transaction.atomic():
        flipped = _mark_resumed(escalation, actor=escalation.agent.name, now=now, data={"via": "ack"})
    if not flipped:  # resumed meanwhile (the webhook got there first): answer what stands
        escalation.refresh_from_db(fields=["status", "updated_at"])
    return escalation


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
            raise Problem(
                409,
                f"The escalation is already {escalation.status}; it can no longer be withdrawn.",
                type="already-decided",
            )
        escalation.status, escalation.updated_at = Escalation.Status.WITHDRAWN, now
        _record(escalation, Event.Kind.WITHDRAWN, actor=escalation.agent.name, now=now)
    return escalation


# ---------------------------------------------------------------- claims


def _record(escalation: Escalation, kind: str, *, actor: str, now: datetime, data=None) -> Event:
    """Inside a transaction: one timeline event, announced live (as `kind`) on commit.
    Every service that adds to an escalation's timeline goes through here."""
    event = Event.objects.create(escalation=escalation, kind=kind, actor=actor, at=now, data=data or {})
    events.announce(escalation, str(kind), actor=actor)
    return event


def _lock_open(escalation_id) -> Escalation:
    """Inside a transaction: the escalation, row-locked, with its claimer; AlreadyDecided
    (with the decision loaded) once it is no longer open."""
    escalation = Escalation.objects.select_for_update(of=("self",)).select_related("claimed_by").get(
        pk=escalation_id
    )
    if not escalation.is_open:
        raise AlreadyDecided(
            Escalation.objects.select_related("run", "decision", "agent").get(pk=escalation.pk)
        )
    return escalation


def escalation_claim(*, escalation_id, user, now: datetime | None = None) -> Escalation:
    """Claim (or renew) the lease on an open escalation. ClaimedByOther if someone holds it."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        escalation = _lock_open(escalation_id)
        if escalation.claim_is_live(now) and escalation.claimed_by_id != user.pk:
            raise ClaimedByOther(escalation)
        renewing = escalation.claimed_by_id == user.pk and escalation.claim_is_live(now)
        escalation.status = Escalation.Status.CLAIMED
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = user, until, now
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        if not renewing:
            _record(
                escalation,
                Event.Kind.CLAIMED,
                actor=user.get_username(),
                now=now,
                data={"until": until.isoformat()},
            )
    return escalation


def escalation_release(*, escalation_id, user, now: datetime | None = None) -> Escalation:
    """Give a claim back to the queue. Only its holder can release it."""
    now = now or timezone.now()
    with transaction.atomic():
        escalation = Escalation.objects.select_for_update(of=("self",)).select_related("claimed_by").get(
            pk=escalation_id
        )
        if escalation.claimed_by_id and escalation.claimed_by_id != user.pk:
            raise ClaimedByOther(escalation)
        if escalation.status != Escalation.Status.CLAIMED:
            return escalation
        escalation.status = Escalation.Status.PENDING
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = None, None, now
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        _record(escalation, Event.Kind.RELEASED, actor=user.get_username(), now=now)
    return escalation


class ClaimLost(Exception):
    """The user holds no live claim on the escalation any more (released, lapsed, reassigned
    or decided); `escalation` is it as it stands."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"no live claim on {escalation.id}")
        self.escalation = escalation


def escalation_claim_renew(*, escalation_id, user, now: datetime | None = None) -> Escalation:
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
    *, escalation_id, user, assignee, override: bool = False, now: datetime | None = None
) -> Escalation:
    """Hand the claim on an open escalation to `assignee`, with a fresh lease.

    The holder of a live claim may hand it on, and anyone may assign an unclaimed one;
    someone else's live claim needs `override` (a manager's call). Locks the row. Raises
    AlreadyDecided, ClaimedByOther, or Problem(422) naming `assignee` for an inactive user.
    On commit: a REASSIGNED event ({"from", "to", "until"}) is announced.
    """
    now = now or timezone.now()
    if not assignee.is_active:
        raise invalid([FieldError("assignee", f"{assignee.get_username()} cannot sign in any more")])
    until = now + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        escalation = _lock_open(escalation_id)
        live = escalation.claim_is_live(now)
        if live and escalation.claimed_by_id != user.pk and not override:
            raise ClaimedByOther(escalation)
        previous = escalation.claimed_by.get_username() if live and escalation.claimed_by else None
        escalation.status = Escalation.Status.CLAIMED
        escalation.claimed_by, escalation.claimed_until, escalation.updated_at = assignee, until, now
        escalation.save(update_fields=["status", "claimed_by", "claimed_until", "updated_at"])
        _record(
            escalation,
            Event.Kind.REASSIGNED,
            actor=user.get_username(),
            now=now,
            data={"from": previous, "to": assignee.get_username(), "until": until.isoformat()},
        )
    return escalation


COMMENT_MAX_CHARS = 4000


def _text_errors(field: str, text: str, *, required: str, max_chars: int) -> list[FieldError]:
    """A free-text field people type: required, bounded, and storable."""
    if not text.strip():
        return [FieldError(field, required)]
    if len(text) > max_chars:
        return [FieldError(field, f"must be at most {max_chars} characters ({len(text)} given)")]
    bad = unstorable(text, field)
    return [bad] if bad else []


def escalation_comment(*, escalation_id, user, body: str, now: datetime | None = None) -> Event:
    """A comment for the team on an escalation (never sent to the agent), in its timeline.

    Any status: people discuss decided escalations too. Raises Problem(422) naming `body`,
    Problem(404) for an unknown escalation. On commit: announced as "commented".
    """
    now = now or timezone.now()
    errors = _text_errors(
        "body", body, required="Write something first.", max_chars=COMMENT_MAX_CHARS
    )
    if errors:
        raise invalid(errors)
    escalation = (
        Escalation.objects.only("id", "agent_id", "status", "priority").filter(pk=escalation_id).first()
    )
    if escalation is None:
        raise Problem(404, f"No escalation {escalation_id}.")
    with transaction.atomic():
        event = _record(
            escalation, Event.Kind.COMMENTED, actor=user.get_username(), now=now, data={"body": body.strip()}
        )
    return event


def flag_review_record(
    *,
    escalation_id,
    user,
    verdict: str,
    option_key: str = "",
    note: str = "",
    now: datetime | None = None,
) -> FlagReview:
    """A person's look at a tier-2 escalation the policy decided: "fine", or "should have
    been" another of its options. One per escalation (the first one stands).

    Raises Problem(422) naming verdict/option_key/note, Problem(409) when the escalation is
    not a policy-decided tier 2 or was reviewed already. On commit: FLAG_REVIEWED announced.
    """
    now = now or timezone.now()
    escalation = (
        Escalation.objects.select_related("decision", "flag_review").filter(pk=escalation_id).first()
    )
    if escalation is None:
        raise Problem(404, f"No escalation {escalation_id}.")
    decision = getattr(escalation, "decision", None)
    if escalation.tier != 2 or decision is None or decision.decided_by_type != Decision.DecidedBy.POLICY:
        raise Problem(409, "Only tier-2 escalations the policy decided are reviewed as flagged.")
    existing = getattr(escalation, "flag_review", None)
    if existing is not None:
        raise Problem(409, f"{existing.reviewer_name} has already reviewed this one.")
    errors = []
    if verdict not in FlagReview.Verdict.values:
        errors.append(FieldError("verdict", "must be “fine” or “other”"))
    elif verdict == FlagReview.Verdict.OTHER:
        if escalation.option(option_key) is None:
            errors.append(FieldError("option_key", "Pick the option it should have been."))
        elif option_key == decision.option_key:
            errors.append(
                FieldError("option_key", "is the option the policy chose: mark it fine instead")
            )
    if note.strip():
        errors += _text_errors("note", note, required="", max_chars=COMMENT_MAX_CHARS)
    if errors:
        raise invalid(errors)
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
            _record(
                escalation,
                Event.Kind.FLAG_REVIEWED,
                actor=user.get_username(),
                now=now,
                data={"verdict": verdict, "option": option_key or None},
            )
    except IntegrityError:  # a concurrent review got there first
        other = FlagReview.objects.get(escalation=escalation)
        raise Problem(409, f"{other.reviewer_name} has already reviewed this one.") from None
    return review


def run_close(*, run_id, user, note: str, now: datetime | None = None) -> Run:
    """Close a run `user` took over, with a note on how it ended.

    Locks the run. Raises Problem(422) naming `note`, Problem(404) when it is not a run this
    user took over, Problem(409) when it is already closed. The escalation whose decision
    took it over gets a RUN_CLOSED event ({"note"}), announced on commit.
    """
    now = now or timezone.now()
    errors = _text_errors(
        "note", note, required="Say how the run ended (a line is enough).", max_chars=COMMENT_MAX_CHARS
    )
    if errors:
        raise invalid(errors)
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id, taken_over_by=user).first()
        if run is None:
            raise Problem(404, "You have not taken over this run.")
        if run.status != Run.Status.TAKEN_OVER:
            raise Problem(409, f"This run is already {run.get_status_display().lower()}.")
        run.status, run.closed_at, run.close_note = Run.Status.CLOSED, now, note.strip()
        run.save(update_fields=["status", "closed_at", "close_note"])
        escalation = (
            Escalation.objects.filter(run=run, decision__kind=Decision.Kind.TAKE_OVER)
            .only("id", "agent_id", "status", "priority")
            .order_by("-created_at")
            .first()
        )
        if escalation is not None:
            _record(
                escalation, Event.Kind.RUN_CLOSED, actor=user.get_username(), now=now, data={"note": run.close_note}
            )
    return run


# ---------------------------------------------------------------- periodic work

# Each periodic job handles at most BATCH_SIZE rows per call (one short transaction per
# row or batch); its task calls it again while full batches keep coming, within a budget.
BATCH_SIZE = 200


def claims_expire(*, now: datetime | None = None) -> int:
    """Return lapsed claims to the queue, with a claim_expired event. Returns how many."""
    now = now or timezone.now()
    expired = 0
    stale = Escalation.objects.filter(
        status=Escalation.Status.CLAIMED, claimed_until__lt=now
    ).order_by("claimed_until").values_list("pk", flat=True)[:BATCH_SIZE]
    for pk in list(stale):
        with transaction.atomic():
            escalation = Escalation.objects.select_related("claimed_by").filter(pk=pk).first()
            if escalation is None:
                continue
            holder = escalation.claimed_by.get_username() if escalation.claimed_by else ""
            if Escalation.objects.filter(
                pk=pk, status=Escalation.Status.CLAIMED, claimed_until__lt=now
            ).update(status=Escalation.Status.PENDING, claimed_by=None, claimed_until=None, updated_at=now):
                escalation.status = Escalation.Status.PENDING
                Event.objects.create(
                    escalation=escalation, kind=Event.Kind.CLAIM_EXPIRED, actor=holder, at=now
                )
                events.announce(escalation, "released", actor="timeout")
                expired += 1
    return expired


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
        Escalation.objects.open()
        .filter(respond_by__lte=now)
        .exclude(timeout_option="")
        .order_by("respond_by")
        .values_list("pk", "timeout_option", "options")[:BATCH_SIZE]
    )
    for pk, option, options in list(due):
        chosen = next((o for o in options or [] if o.get("key") == option), None)
        if chosen is None or chosen.get("irreversible"):
            log.warning("escalation %s: timeout_option %r is not applicable; left to a human", pk, option)
            continue
        try:
            escalation_decide(
                escalation_id=pk,
                request=DecisionRequest(kind=Decision.Kind.OPTION, option=option),
                decided_by_type=Decision.DecidedBy.TIMEOUT,
                now=now,
            )
            applied += 1
        except (AlreadyDecided, Escalation.DoesNotExist):
            pass  # a person decided first, or the row is gone
        except Problem as exc:
            log.warning("escalation %s: timeout not applied: %s", pk, exc)
    return applied


def priorities_refresh(*, now: datetime | None = None) -> int:
    """Recompute the priority of open escalations (deadlines approach). Returns changes.

    Walks the open escalations in pk order, BATCH_SIZE rows per query and per update.
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
    now: datetime, after, steps: dict[str, list[levels.Step]]
) -> tuple[int, Any]:
    """One batch: (how many changed, the pk to continue after, or None at the end).

    An escalation above level 1 keeps its level's boost (escalations.levels.boost_at).
    """
    rows = Escalation.objects.open().order_by("pk")
    if after is not None:
        rows = rows.filter(pk__gt=after)
    batch = list(
        rows.only(
            "pk", "tier", "impact", "blocking", "blocked_tasks", "is_irreversible", "respond_by",
            "stuck_since", "priority", "priority_reasons", "level", "domain",
        )[:BATCH_SIZE]
    )
    changed = []
    for escalation in batch:
        boost = levels.boost_at(steps.get(escalation.domain, ()), escalation.level)
        score = policy.priority_for(_urgency(escalation, boost), now)
        if (score.score, score.reasons) != (escalation.priority, escalation.priority_reasons):
            escalation.priority, escalation.priority_reasons = score.score, score.reasons
            changed.append(escalation)
    Escalation.objects.bulk_update(changed, ["priority", "priority_reasons"])
    return len(changed), (batch[-1].pk if len(batch) == BATCH_SIZE else None)


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


def escalations_delete(*, ids) -> int:
    """Delete escalations with everything that hangs off them: decision, timeline events,
    approvals, flag review, deliveries and their attempts, notifications. Their runs stay
    (other escalations and the insights' run counts use them), and so does the agent's
    decisions feed cursor (Agent.decision_seq). Only retention calls this (operations
    .services.retention_purge), after the insights kept the figures. Returns how many."""
    return Escalation.objects.filter(pk__in=list(ids)).delete()[1].get(Escalation._meta.label, 0)


# ---------------------------------------------------------------- escalation levels


def levels_advance(*, now: datetime | None = None) -> int:
    """Move open escalations whose level's delay has passed up to the level they are due at.

    Open is pending or claimed: a live claim does not pause the clock (escalations.levels).
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
            due |= Q(domain=domain, level__lt=step.level, created_at__lte=cutoff)
    if not due:
        return 0
    rows = (
        Escalation.objects.open()
        .filter(due)
        .order_by("created_at")
        .only(
            "pk", "agent_id", "status", "domain", "level", "created_at", "tier", "impact",
            "blocking", "blocked_tasks", "is_irreversible", "respond_by", "stuck_since",
        )[:BATCH_SIZE]
    )
    moved = 0
    for escalation in list(rows):
        domain_steps = steps[escalation.domain]
        target = levels.next_level(
            domain_steps, current=escalation.level, created_at=escalation.created_at, now=now
        )
        if target is not None and _level_raise(escalation, domain_steps, target, now):
            moved += 1
    return moved


def _level_raise(escalation: Escalation, steps: list[levels.Step], target: int, now: datetime) -> bool:
    """One move (see levels_advance); False when another run moved the row first (its
    UPDATE waits for ours to commit, then finds the level moved)."""
    was = escalation.level
    escalation.level = target
    priority = policy.priority_for(_urgency(escalation, levels.boost_at(steps, target)), now)
    step = next(s for s in steps if s.level == target)
    with transaction.atomic():
        moved = Escalation.objects.filter(
            pk=escalation.pk, level=was, status__in=Escalation.OPEN_STATUSES
        ).update(
            level=target,
            level_changed_at=now,
            priority=priority.score,
            priority_reasons=priority.reasons,
            updated_at=now,
        )
        if not moved:
            return False
        Event.objects.create(
            escalation=escalation,
            kind=Event.Kind.LEVEL_RAISED,
            actor="escalation levels",
            at=now,
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


@dataclass
class LevelSpec:
    """One level as a manager edits it; its number comes from the order of the delays."""

    after_minutes: int
    priority_boost: int = 10
    notify: list = field(default_factory=list)  # users
    notify_managers: bool = False


def policy_levels_replace(*, policy_row: Policy, specs: list[LevelSpec]) -> list[EscalationLevel]:
    """Replace a domain's escalation levels; they are numbered 2, 3, … by delay.

    Locks the policy row, so two saves at once apply one after the other. Raises
    Problem(422) naming `levels.<row>.<field>` for a bad delay or boost. Escalations
    already above level 1 keep their level; the next priority refresh applies the new
    boosts, and levels_advance moves them on by the new delays.
    """
    errors = levels.rows_errors([(spec.after_minutes, spec.priority_boost) for spec in specs])
    if errors:
        raise invalid([FieldError(f"levels.{row}.{name}", message) for row, name, message in errors])
    numbers = levels.numbered([spec.after_minutes for spec in specs])
    with transaction.atomic():
        Policy.objects.select_for_update().filter(pk=policy_row.pk).first()
        EscalationLevel.objects.filter(policy=policy_row).delete()
        created = []
        for number, spec in sorted(zip(numbers, specs, strict=True), key=lambda pair: pair[0]):
            row = EscalationLevel.objects.create(
                policy=policy_row,
                level=number,
                after_minutes=spec.after_minutes,
                priority_boost=spec.priority_boost,
                notify_managers=spec.notify_managers,
            )
            row.notify.set(spec.notify)
            created.append(row)
    return created
