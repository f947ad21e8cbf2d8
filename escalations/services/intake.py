"""A new escalation: the package checked, the policy's verdict and priority, idempotent
replays, the open-run and budget rules, and the tier-1 decision the policy takes itself."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from escalations import policy, rows, signals
from escalations.errors import Conflict, FieldError, Invalid
from escalations.inputs import PackageInput
from escalations.models import Agent, Decision, Escalation, Event, Run
from escalations.transport import events
from escalations.wire import escalation_dict

from . import decisions, first_look, policies, timeline

# How far ahead of the server's clock an agent's times may be (its clock may run fast).
CLOCK_SKEW = timedelta(minutes=5)


def _cross_field_errors(package: PackageInput, now: datetime) -> list[FieldError]:
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


# The fields `urgency` reads: what a batch job loads to re-rank an escalation.
URGENCY_FIELDS: tuple[str, ...] = (
    "tier",
    "impact",
    "blocking",
    "blocked_tasks",
    "is_irreversible",
    "respond_by",
    "stuck_since",
    "level",
)


def urgency(escalation: Escalation, level_boost: int = 0) -> policy.Urgency:
    return urgency_of_values([getattr(escalation, field) for field in URGENCY_FIELDS], level_boost)


def urgency_of_values(values: Sequence[Any], level_boost: int = 0) -> policy.Urgency:
    """urgency() of an escalation read as the values of URGENCY_FIELDS, in that order (a
    batch job's values_list: no model instance per row)."""
    tier, impact, blocking, blocked_tasks, irreversible, respond_by, stuck_since, level = values
    return policy.Urgency(
        tier=tier,
        impact=impact,
        blocking=blocking,
        blocked_tasks=blocked_tasks,
        irreversible=irreversible,
        respond_by=respond_by,
        stuck_since=stuck_since,
        level=level,
        level_boost=level_boost,
    )


@dataclass
class Created:
    escalation: Escalation
    created: bool


def escalation_create(
    *,
    agent: Agent,
    package: PackageInput,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Created:
    """Store a package, tier it, and (tier 1-2 with auto-decide) decide it at once.

    One transaction: the run, the escalation, its events, the budget count and, when the
    policy decides, the decision and its delivery. Idempotency: the same key and body
    answer the stored escalation (created=False); another body is a 409. A new request
    just inserts: a used key meets the unique constraint, and only then is the stored one
    looked up, so concurrent requests with one key create exactly one escalation.
    Raises Conflict (an open escalation for the run, a key reused with another body) or
    Invalid (the package, or an unknown domain).
    """
    now = now or timezone.now()
    body_fingerprint = package.fingerprint
    errors = _cross_field_errors(package, now)
    domain = package.domain or agent.domain
    rules, found = policies.rules_and_calibration(agent.pk, domain)
    if rules is None:
        field = "domain" if package.domain else "domain (the agent's default)"
        errors.append(policies.unknown_domain(domain, field))
    if errors:
        # A replay is answered even if time has made its body invalid (respond_by passed).
        replay = _replay(agent, idempotency_key, body_fingerprint, now) if idempotency_key else None
        if replay is not None:
            return Created(replay, created=False)
        raise Invalid(errors, type="incomplete-package", title="Escalation package is incomplete")
    assert rules is not None

    action = package.action
    irreversible = bool(action and action.irreversible) or any(
        o.irreversible for o in package.options
    )
    calibrated = found.calibrate(package.confidence) if found else None
    verdict = policy.verdict_for(
        rules,
        policy.Situation(
            confidence=package.confidence,
            irreversible=irreversible,
            attempts=package.attempts,
            planned_scope=action.planned_scope if action else None,
            actual_scope=action.actual_scope if action else None,
            novel=package.reason == Escalation.Reason.NOVELTY,
            reason=package.reason,
            calibrated_confidence=calibrated,
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
        calibrated_confidence=calibrated,
        history=[step.record for step in package.history],
        options=[option.record for option in package.options],
        blocking=delay.blocking,
        impact=delay.impact,
        blocked_tasks=delay.blocked_tasks,
        stuck_since=delay.stuck_since or now,
        respond_by=respond_by,
        delay_note=delay.note or "",
        action=package.action_record,
        attempts=package.attempts,
        domain=domain,
        timeout_option=package.timeout_option or "",
        links=list(package.links),
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
    priority = policy.priority_for(urgency(escalation), now)
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


def _insert(
    escalation: Escalation,
    agent: Agent,
    run_id: str,
    verdict: policy.Verdict,
    priority: policy.Priority,
    rules: policy.Rules,
    domain: str,
    now: datetime,
) -> None:
    """The create transaction: one commit for the run, the escalation, its event, the
    budget count and (tiers 1-2) the policy's decision and its delivery."""
    event_data = {"tier": verdict.tier, "tier_reasons": verdict.reasons, "priority": priority.score}
    with transaction.atomic():
        run = Run(agent=agent, run_id=run_id)
        if connection.vendor == "postgresql":
            _write_together(escalation, run, agent, event_data, now)
        else:  # SQLite (the embedded mode) has no data-modifying CTEs
            _write_one_by_one(escalation, run, agent, event_data, now)
        _notable_create(escalation, agent, verdict, now)
        if verdict.decided_by_policy and rules.auto_decide:
            decisions.decide_open(
                escalation,
                kind=Decision.Kind.OPTION,
                option_key=escalation.recommended_option["key"],
                args=escalation.recommended_option.get("args"),
                instruction="",
                decided_by_type=Decision.DecidedBy.POLICY,
                decided_by_name=f"policy:{domain}",
                user=None,
                now=now,
                rules=rules,
            )
        else:
            # Known to have no decision: spare escalation_dict a query to find out.
            Escalation.decision.related.set_cached_value(escalation, None)
            if policy.first_look_wanted(rules, verdict.tier):
                first_look.offer(escalation, rules, now)
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
    if found is None or found.created_at < now - timedelta(
        seconds=settings.IDEMPOTENCY_RETENTION_SECONDS
    ):
        return None  # unknown, or past retention: not a replay
    if found.request_fingerprint != body_fingerprint:
        raise Conflict(
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


def _full(pk: uuid.UUID) -> Escalation:
    return Escalation.objects.select_related("run", "decision").get(pk=pk)


def _open_run_conflict(agent: Agent, run_id: str) -> Conflict:
    open_one = (
        Escalation.objects.open()
        .select_related("run")
        .filter(agent=agent, run__run_id=run_id)
        .first()
    )
    if open_one is None:  # the conflict resolved itself meanwhile; the agent may retry
        return Conflict("A concurrent request conflicted; retry.", type="conflict")
    return Conflict(
        f"Run {run_id!r} already has an open escalation. Wait for its decision or withdraw it.",
        type="run-has-open-escalation",
        title="The run already has an open escalation",
        extra={"open_escalation": escalation_dict(open_one)},
    )


# A run is created on its first escalation: an upsert (one statement, its pk returned).
RUN_UPSERT = "(agent_id, run_id) DO UPDATE SET run_id = EXCLUDED.run_id"

# One more escalation today (the count starts again on a new day), the new count returned.
BUDGET_COUNT = (
    "UPDATE escalations_agent SET budget_used = CASE WHEN budget_day = %s THEN budget_used + 1"
    " ELSE 1 END, budget_day = %s WHERE id = %s"
)
BUDGET_SQL = f"{BUDGET_COUNT} RETURNING budget_used"


def _write_one_by_one(escalation: Escalation, run: Run, agent: Agent, event_data: dict[str, Any], now: datetime) -> None:
    """The create's four writes, one statement each: the run upserted (its pk returned),
    the escalation, the budget counted, the 'created' event (announced by the caller,
    unless the policy decides it at once)."""
    rows.insert(run, on_conflict=RUN_UPSERT)
    escalation.run = run
    rows.insert(escalation)
    _count_against_budget(agent, now)
    timeline.record(escalation, Event.Kind.CREATED, actor=agent.name, now=now, data=event_data, announce=False)


def _write_together(escalation: Escalation, run: Run, agent: Agent, event_data: dict[str, Any], now: datetime) -> None:
    """_write_one_by_one's four writes as one statement (PostgreSQL), in its order: the run
    upserted, the escalation inserted with the run's pk, the budget counted (BUDGET_COUNT,
    once the escalation is in, so the agent's row is locked last, as before) and the
    'created' event (timeline.record_in_statement); the run's pk and the new count
    returned: with BEGIN and COMMIT, 3 round trips instead of 6. (psycopg's pipeline mode
    would not send BEGIN with it: it waits for BEGIN's answer first.)
    tests/test_create_sql.py holds its rows equal to _write_one_by_one's (whose
    rows.insert tests/test_rows.py holds equal to the ORM's save)."""
    run_sql, run_params = rows.insert_select(run, "")
    escalation_sql, escalation_params = rows.insert_select(escalation, "run", {"run_id": "run.id", "agent_id": "run.agent_id"})
    event_sql, event_params = timeline.record_in_statement(
        escalation, Event.Kind.CREATED, actor=agent.name, now=now, source="escalation", data=event_data
    )
    # The models' own tables and columns; every value is a parameter.
    sql = (
        f"WITH run AS ({run_sql} ON CONFLICT {RUN_UPSERT} RETURNING id, agent_id),"  # noqa: S608
        f" escalation AS ({escalation_sql} RETURNING id),"
        f" budget AS ({BUDGET_COUNT} AND EXISTS (SELECT FROM escalation) RETURNING budget_used),"
        f" event AS ({event_sql})"
        " SELECT run.id, budget.budget_used FROM run, budget"
    )
    today = rows.prep(Agent, "budget_day", now.date())
    params = [*run_params, *escalation_params, today, today, agent.pk, *event_params]
    found = rows.fetch_one(sql, params)
    assert found is not None, "the agent's row is there (its token was just checked)"
    run.id = found[0]
    agent.budget_used, agent.budget_day = found[1], now.date()
    rows.mark_saved(run)
    escalation.run = run
    rows.mark_saved(escalation)


def _count_against_budget(agent: Agent, now: datetime) -> None:
    today = rows.prep(Agent, "budget_day", now.date())
    counted = rows.fetch_one(BUDGET_SQL, [today, today, agent.pk])
    assert counted is not None, "the agent's row is there (its token was just checked)"
    agent.budget_used, agent.budget_day = counted[0], now.date()


def _notable_create(escalation: Escalation, agent: Agent, verdict: policy.Verdict, now: datetime) -> None:
    """In the create transaction, tell notifications of a new halt and of an agent over its
    budget (their outbox rows commit with the escalation).

    Over budget is sent for every escalation past the budget (the count is the one this
    transaction's update returned); notifications keeps one per agent and day.
    """
    if verdict.tier == policy.HALT:
        signals.notable_in_transaction("halt_created", escalation=escalation)
    if agent.budget_used > agent.daily_budget:
        signals.notable_in_transaction(
            "over_budget",
            agent=agent,
            escalation=escalation,
            data={
                "day": now.date().isoformat(),
                "used": agent.budget_used,
                "budget": agent.daily_budget,
            },
        )
