"""Reads shared by the agent API, the reviewer API and the dashboard."""

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, overload

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from .levels import Step
from .models import (
    Agent,
    Approval,
    Decision,
    Delivery,
    DeliveryAttempt,
    Escalation,
    EscalationLevel,
    EscalationQuerySet,
    Event,
    GateCheck,
    Policy,
    PolicyVersion,
    Recommendation,
    Run,
)
from .policy import Change, rules_changes
from .wire import decision_wire, escalation_url, iso, question_dict

# Who asks: request.user (the views behind sign-in never see an anonymous one).
Viewer = AbstractBaseUser | AnonymousUser


def escalations_for_reviewer(user: Viewer) -> EscalationQuerySet:
    """Everything a reviewer may see. Every signed-in reviewer sees every escalation today;
    narrowing by team or domain starts here (and in the reviewer API's decide, which reads
    the escalation only through the service's locked read)."""
    return Escalation.objects.select_related("agent", "run", "claimed_by", "decision", "first_look_by")


def escalation_page(user: Viewer) -> QuerySet[Escalation]:
    """Escalations with everything their page shows: events, deliveries and their attempts."""
    deliveries = Delivery.objects.prefetch_related("attempts").order_by("-created_at")
    return (
        escalations_for_reviewer(user)
        .select_related("flag_review")
        .prefetch_related("events", Prefetch("deliveries", queryset=deliveries))
    )


def escalation_events(escalation: Escalation) -> QuerySet[Event]:
    """The escalation's timeline, oldest first (the reviewer API's audit trail)."""
    return Event.objects.filter(escalation=escalation).order_by("at", "id")


def runs_taken_over_by(user: Viewer) -> QuerySet[Run]:
    """The runs `user` took over, still open first, each with the escalation(s) that handed
    them over (`handed_over`) and their agent."""
    handed_over = Escalation.objects.filter(decision__kind=Decision.Kind.TAKE_OVER).select_related(
        "decision"
    )
    return (
        Run.objects.filter(taken_over_by=user.pk, status__in=[Run.Status.TAKEN_OVER, Run.Status.CLOSED])
        .select_related("agent")
        .prefetch_related(Prefetch("escalations", queryset=handed_over, to_attr="handed_over"))
        .order_by(
            Case(When(status=Run.Status.TAKEN_OVER, then=0), default=1),
            F("closed_at").desc(nulls_first=True),
            "-created_at",
        )
    )


def reviewers_assignable() -> QuerySet[AbstractBaseUser]:
    """Active people who may hold a claim: members of the reviewer or manager groups."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=("reviewer", "manager")) | Q(is_superuser=True))
        .exclude(profile__is_machine=True)  # machine reviewers are told by their webhook
        .distinct()
        .order_by("username")
    )


# ---------------------------------------------------------------- the agents' hot read

# GET /escalations/{id} is what a fleet of waiting agents polls. One hand-written statement
# authenticates and reads (PostgreSQL prepares it once per pooled connection); the ORM would
# spend longer compiling the five-table join than the database spends running it. It must
# answer exactly what wire.escalation_dict answers: tests/test_hot_read.py holds them equal.
AGENT_READ_SQL = """
SELECT e.id, e.status, e.title, e.tier, e.tier_reasons, e.priority, e.priority_reasons, e.reason,
       e.confidence, e.calibrated_confidence, e.domain, e.respond_by, e.created_at, e.updated_at, r.run_id,
       e.question_text, e.question_by, e.question_at,
       a.id, a.daily_budget, a.budget_day, a.budget_used,
       d.kind, d.option_key, d.args, d.instruction, d.decided_by_type, d.decided_by_name,
       d.decided_at, d.valid_until, a.signing_secret
FROM escalations_escalation e
JOIN escalations_run r ON r.id = e.run_id
JOIN escalations_agent a ON a.id = e.agent_id
JOIN escalations_agenttoken t ON t.agent_id = a.id
LEFT JOIN escalations_decision d ON d.escalation_id = e.id
WHERE e.id = %s AND t.token_hash = %s AND t.revoked_at IS NULL AND a.is_active
"""


@dataclass(frozen=True)
class AgentRead:
    """An escalation as its agent reads it, and that agent's budget (for the headers)."""

    wire: dict[str, Any]  # the escalation object, as wire.escalation_dict answers it
    agent: "Agent"
    status: str
    updated_at: datetime


# Raw rows come back as each backend stores them (SQLite: text); these make them Python.
def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


@overload
def as_time(value: None) -> None: ...
@overload
def as_time(value: datetime | str) -> datetime: ...
def as_time(value: datetime | str | None) -> datetime | None:
    """SQLite gives UTC times back naive (as text or datetime); PostgreSQL, aware."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def as_day(value: date | str | None) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def escalation_read_for_token(escalation_id: uuid.UUID, token_hash: str) -> AgentRead | None:
    """The escalation, if the token is live and its agent's; else None (401 or 404: the
    caller tells which)."""
    pk = Escalation._meta.pk.get_db_prep_value(escalation_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(AGENT_READ_SQL, [pk, token_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    (pk, status, title, tier, tier_reasons, priority, priority_reasons, reason, confidence, calibrated, domain,
     respond_by, created_at, updated_at, run_id, question_text, question_by, question_at,
     agent_id, daily_budget, budget_day,
     budget_used, kind, option_key, args, instruction, decided_by_type, decided_by_name,
     decided_at, valid_until, secret) = row
    escalation_id = as_uuid(pk)
    updated_at = as_time(updated_at)
    decision = None
    if kind is not None:
        decision = decision_wire(
            escalation_id=escalation_id, run_id=run_id, kind=kind, option_key=option_key,
            args=as_json(args), instruction=instruction, decided_by_type=decided_by_type,
            decided_by_name=decided_by_name, decided_at=as_time(decided_at),
            valid_until=as_time(valid_until), secret=secret,
        )
    wire = {
        "id": str(escalation_id),
        "run_id": run_id,
        "title": title,
        "status": status,
        "tier": tier,
        "tier_reasons": as_json(tier_reasons),
        "priority": priority,
        "priority_reasons": as_json(priority_reasons),
        "reason": reason,
        "confidence": confidence,
        "calibrated_confidence": calibrated,
        "domain": domain,
        "question": question_dict(status, question_text, question_by, as_time(question_at)),
        "respond_by": iso(as_time(respond_by)),
        "created_at": iso(as_time(created_at)),
        "updated_at": iso(updated_at),
        "url": escalation_url(escalation_id),
        "decision": decision,
    }
    agent = Agent(id=agent_id, daily_budget=daily_budget, budget_day=as_day(budget_day), budget_used=budget_used)
    return AgentRead(wire, agent, status, updated_at)


# ---------------------------------------------------------------- agents (the managers' page)

# Delivery health looks at this many days.
HEALTH_DAYS = 7
FAILED_ATTEMPT = Q(status_code__isnull=True) | Q(status_code__lt=200) | Q(status_code__gte=300)


def _count(queryset: QuerySet[Any]) -> Coalesce:
    """A correlated COUNT(*) of `queryset` (filtered on OuterRef) as a column: one statement
    for the whole list, where a join per counted table would multiply the rows."""
    counted = queryset.order_by().annotate(n=Func(F("pk"), function="COUNT", output_field=IntegerField()))
    counted = counted.values("n")
    return Coalesce(Subquery(counted[:1]), 0)


def _latest(queryset: QuerySet[Any], field: str) -> Subquery:
    """The newest `field` of `queryset` (an index on (agent, field) answers it)."""
    return Subquery(queryset.order_by(f"-{field}").values(field)[:1])


def agents_with_health(*, now: datetime) -> QuerySet[Agent]:
    """Agents with their health numbers, in one query however many agents there are:
    budget_used_today; open_escalations; delivered_recently / failed_recently (deliveries of the last
    HEALTH_DAYS days delivered, or given up); retrying_now; last_failure_at (the newest
    failed attempt); last_seen_at (its newest escalation or gate check, NULL if never)."""
    since = now - timedelta(days=HEALTH_DAYS)
    deliveries = Delivery.objects.filter(escalation__agent=OuterRef("pk"))
    agents = Agent.objects.annotate(
        open_escalations=_count(
            Escalation.objects.filter(agent=OuterRef("pk"), status__in=Escalation.OPEN_STATUSES)
        ),
        delivered_recently=_count(
            deliveries.filter(status=Delivery.Status.DELIVERED, delivered_at__gte=since)
        ),
        failed_recently=_count(deliveries.filter(status=Delivery.Status.FAILED, created_at__gte=since)),
        retrying_now=_count(deliveries.filter(status=Delivery.Status.RETRYING)),
        last_failure_at=_latest(
            DeliveryAttempt.objects.filter(FAILED_ATTEMPT, delivery__escalation__agent=OuterRef("pk")),
            "started_at",
        ),
        last_escalation_at=_latest(Escalation.objects.filter(agent=OuterRef("pk")), "created_at"),
        last_gate_check_at=_latest(GateCheck.objects.filter(agent=OuterRef("pk")), "at"),
        # Agent.budget_used_on(today), as a column.
        budget_used_today=Case(When(budget_day=now.date(), then=F("budget_used")), default=0),
    )
    # GREATEST ignores NULLs on PostgreSQL but not on SQLite: coalescing each side to the
    # other gives the same answer on both.
    return agents.annotate(
        last_seen_at=Greatest(
            Coalesce("last_escalation_at", "last_gate_check_at"),
            Coalesce("last_gate_check_at", "last_escalation_at"),
        )
    )


def agent_recent_escalations(agent: Agent, *, limit: int = 20) -> list[Escalation]:
    return list(
        Escalation.objects.filter(agent=agent).select_related("run").order_by("-created_at")[:limit]
    )


def agent_failed_deliveries(agent: Agent, *, limit: int = 10) -> list[Delivery]:
    """The agent's newest given-up deliveries, each with `since_status`: the status of the
    newest later delivery of the same escalation (a redelivery), or None."""
    later = Delivery.objects.filter(
        escalation=OuterRef("escalation"), created_at__gt=OuterRef("created_at")
    )
    return list(
        Delivery.objects.filter(escalation__agent=agent, status=Delivery.Status.FAILED)
        .select_related("escalation")
        .annotate(since_status=Subquery(later.order_by("-created_at").values("status")[:1]))
        .order_by("-created_at")[:limit]
    )


def agent_delivery(agent: Agent, delivery_id: uuid.UUID | str) -> Delivery | None:
    """One of the agent's deliveries (None if the id names another agent's or none)."""
    return next(
        iter(Delivery.objects.filter(pk=delivery_id, escalation__agent=agent).select_related("escalation")),
        None,
    )


def policy_domains() -> list[str]:
    return list(Policy.objects.order_by("domain").values_list("domain", flat=True))



# ---------------------------------------------------------------- policies and approvals


def policies_list() -> QuerySet[Policy]:
    """Every domain policy, with its managers, for the managers' list."""
    return Policy.objects.prefetch_related("managers").order_by("domain")


def policy_versions(policy: Policy) -> list[tuple[PolicyVersion, list[Change]]]:
    """The policy's saved versions, newest first, each with what it changed (field: old → new)."""
    versions = list(policy.versions.select_related("changed_by").order_by("version"))
    rows: list[tuple[PolicyVersion, list[Change]]] = []
    previous = None
    for version in versions:
        rows.append((version, rules_changes(previous, version.rules) if previous is not None else []))
        previous = version.rules
    return rows[::-1]


def _args_key(args: dict[str, Any] | None) -> str:
    return json.dumps(args, sort_keys=True)


def agreeing(approvals: Iterable[Approval], option_key: str, args: dict[str, Any] | None) -> list[Approval]:
    """The approvals that name this option with these args (the ones that count together)."""
    key = _args_key(args)
    return [a for a in approvals if a.option_key == option_key and _args_key(a.args) == key]


@dataclass(frozen=True)
class ApprovalState:
    """Where an open escalation stands under the two-person rule."""

    required: int
    approvals: list[Approval]

    @property
    def leading(self) -> list[Approval]:
        """The largest group of agreeing approvals (the latest group on a tie)."""
        groups = [agreeing(self.approvals, a.option_key, a.args) for a in reversed(self.approvals)]
        return max(groups, key=len, default=[])

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.leading))


def approvals_required(escalation: Escalation, option_key: str | None = None) -> int:
    """The two-person rule, in one place: how many distinct reviewers must approve choosing
    `option_key` (1: the rule does not apply), the domain's approvals_required when the
    option, or the action at stake, is irreversible. Without an option: for the
    escalation's irreversible choices (what its page says about approvals)."""
    if (escalation.action or {}).get("irreversible"):
        irreversible = True
    elif option_key is None:
        irreversible = any(option.get("irreversible") for option in escalation.options)
    else:
        irreversible = bool((escalation.option(option_key) or {}).get("irreversible"))
    if not irreversible:
        return 1
    found = Policy.objects.filter(domain=escalation.domain).values_list("approvals_required", flat=True)
    return next(iter(found), 1)


def approval_state(escalation: Escalation) -> ApprovalState | None:
    """The two-person rule on an open escalation that has something irreversible, or None
    when the rule does not apply (closed, nothing irreversible, or N = 1)."""
    if not escalation.is_open:
        return None
    required = approvals_required(escalation)
    if required < 2:
        return None
    return ApprovalState(required, list(escalation.approvals.all()))


# ---------------------------------------------------------------- escalation levels


def level_steps_by_domain() -> dict[str, list[Step]]:
    """Every domain's escalation levels (levels 2 and up), in level order. One query."""
    steps: dict[str, list[Step]] = {}
    rows = EscalationLevel.objects.order_by("policy__domain", "level").values_list(
        "policy__domain", "level", "after_minutes", "priority_boost"
    )
    for domain, level, after, boost in rows:
        steps.setdefault(domain, []).append(Step(level, after, boost))
    return steps


def policy_levels(policy: Policy) -> list[EscalationLevel]:
    """A domain's levels with the people each one notifies (two queries)."""
    return list(policy.levels.order_by("level").prefetch_related("notify"))


def open_by_level(domain: str) -> dict[int, int]:
    """How many open escalations of a domain stand at each level (level -> count)."""
    rows = (
        Escalation.objects.open()
        .filter(domain=domain)
        .values_list("level")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return dict(rows)


# ---------------------------------------------------------------- machine reviewers


@dataclass(frozen=True)
class FirstLook:
    name: str
    until: datetime
    running: bool
    seconds_left: int


def first_look_of(escalation: Escalation, now: datetime | None = None) -> FirstLook | None:
    """The machine's first look at the escalation (running or over), or None."""
    if not escalation.first_look_by_id or escalation.first_look_until is None:
        return None
    now = now or timezone.now()
    running = bool(
        escalation.is_open
        and escalation.claimed_by_id == escalation.first_look_by_id
        and escalation.first_look_until > now
    )
    left = max(0, int((escalation.first_look_until - now).total_seconds())) if running else 0
    name = escalation.first_look_by.get_username() if escalation.first_look_by else "machine"
    return FirstLook(name, escalation.first_look_until, running, left)


def recommendations_of(escalation: Escalation) -> list[Recommendation]:
    """Advice left on the escalation, newest first."""
    return list(Recommendation.objects.filter(escalation=escalation).order_by("-at", "-id"))
