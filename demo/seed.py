"""The demo set: reviewers, a machine reviewer, agents in every domain, escalations of every
reason and tier (data/people.toml, data/escalations/), after the insights history. Everything goes through the services, as a real
agent's package and a real reviewer's clicks would. Idempotent: an escalation is known by
its agent and run_id and is never created twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from escalations import services
from escalations.models import Agent, Decision, Escalation, Event, FlagReview, Policy
from escalations.schemas import EscalationIn
from insights import services as insights
from people.services import machine_reviewer_ensure

from . import data
from .history import seed_history

COMMENT = "On it: checking with the owning team before I decide."
# The notes of the policy versions the demo saves once (people.toml).
FLOORS = "demo: a lowest tier per reason"
CALIBRATED = "demo: tier by calibrated confidence"
MACHINES = "demo: tiers machine reviewers decide"


def seed_demo(*, now: datetime, say: Callable[[str], None]) -> None:
    """Load the demo set as of `now`: the insights history first (its judgements calibrate
    the agents; the reason floors before it, as it tiers by them), then the policies' other
    demo settings, then the escalations (tiered by them); `say` reports."""
    people = data.people()
    users = _reviewers(people)
    machines = {m["username"]: machine_reviewer_ensure(name=m["username"])[0] for m in people.get("machines", [])}
    users.update(machines)
    agents = _agents(people)
    for domain, floors in people.get("reason_floors", {}).items():
        _policy_once(domain, {"reason_floors": floors}, FLOORS)
    seed_history(now=now, say=say)
    for domain in people.get("calibrated_domains", []):
        _policy_once(domain, {"tier_by_calibrated": True}, CALIBRATED)
    for domain, tiers in people.get("machine_tiers", {}).items():
        _policy_once(domain, {"machine_tiers": tiers}, MACHINES)
    created = 0
    days = set()
    for demo in data.escalations():
        escalation, was_created = _escalation(demo, agents[demo.agent], now)
        created += was_created
        days.add(escalation.created_at.astimezone(UTC).date())
        _happen(demo, escalation, users, people, now)
    _levels(people, users)
    services.timeouts_apply(now=now)
    services.levels_advance(now=now)
    services.priorities_refresh(now=now)
    insights.rollups_rebuild(days=sorted(days))  # the machine's judged advice and decisions
    open_count = Escalation.objects.open().count()
    say(f"Demo data: {len(agents)} agents, {created} new escalations ({open_count} open).")
    say(f"Demo login: demo / {people['password']}")


def _happen(demo: data.DemoEscalation, escalation: Escalation, users: dict, people: dict[str, Any], now: datetime) -> None:
    """What the file says happens to an escalation after it is posted, in order: a machine's
    advice, a decision (the demo reviewer's, or another's), a person's look at a decision
    made without one, a question to the agent, a claim and a comment. Each once."""
    posted = escalation.created_at
    if demo.recommend and escalation.is_open and not escalation.recommendations.exists():
        advice = dict(demo.recommend)
        services.escalation_recommend(
            escalation_id=escalation.pk,
            request=services.RecommendationRequest(
                option=advice["option"], note=advice["note"], args=advice.get("args"),
                confidence=advice.get("confidence"),
            ),
            user=users[advice["by"]],
            now=min(now, posted + timedelta(minutes=advice.get("after_minutes", 3))),
        )
    if demo.decide and escalation.is_open:
        request = dict(demo.decide)
        by = request.pop("by", "demo")
        services.escalation_decide(
            escalation_id=escalation.pk,
            request=services.DecisionRequest(**request),
            user=users[by],
            now=min(now, posted + timedelta(minutes=people["decided_after_minutes"])),
        )
    if demo.review and not FlagReview.objects.filter(escalation=escalation).exists():
        look = dict(demo.review)
        decided_at = Decision.objects.get(escalation=escalation).decided_at
        services.flag_review_record(
            escalation_id=escalation.pk,
            user=users[look["by"]],
            verdict=look["verdict"],
            option_key=look.get("option", ""),
            note=look.get("note", ""),
            now=min(now, decided_at + timedelta(minutes=look.get("after_minutes", 30))),
        )
    if demo.ask and escalation.status == Escalation.Status.PENDING:
        services.escalation_ask(
            escalation_id=escalation.pk,
            user=users[demo.ask["by"]],
            text=demo.ask["text"],
            now=now - timedelta(minutes=demo.ask["ago_minutes"]),
        )
    if demo.claim_by and escalation.is_open:
        services.escalation_claim(escalation_id=escalation.pk, user=users[demo.claim_by])
    if demo.claim_by and not escalation.events.filter(kind=Event.Kind.COMMENTED).exists():
        services.escalation_comment(escalation_id=escalation.pk, user=users[demo.claim_by], body=COMMENT)


def _policy_once(domain: str, changes: dict[str, Any], note: str) -> None:
    """Save `changes` to a domain's policy once: a version with `note` says it was done,
    and a manager's later change is kept."""
    row = Policy.objects.filter(domain=domain).first()
    if row is not None and not row.versions.filter(note=note).exists():
        services.policy_update(policy_id=row.pk, changes=changes, note=note)


def _reviewers(people: dict[str, Any]) -> dict:
    users = {}
    password = people["password"]
    for reviewer in people["reviewers"]:
        user, _ = get_user_model().objects.get_or_create(
            username=reviewer["username"],
            defaults={
                "first_name": reviewer["first_name"],
                "last_name": reviewer["last_name"],
                "email": f"{reviewer['username']}@example.com",
            },
        )
        if not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in reviewer["groups"]))
        users[user.username] = user
    return users


def _agents(people: dict[str, Any]) -> dict[str, Agent]:
    agents = {}
    for spec in people["agents"]:
        agent = Agent.objects.filter(name=spec["name"]).first()
        if agent is None:
            agent = services.agent_create(name=spec["name"], domain=spec["domain"], resume_url="").agent
        agents[agent.name] = agent
    return agents


def _levels(people: dict[str, Any], users: dict) -> None:
    """The escalation levels of people.toml (a domain a manager has given levels keeps them)."""
    by_domain: dict[str, list[services.LevelSpec]] = {}
    for level in people["levels"]:
        by_domain.setdefault(level["domain"], []).append(
            services.LevelSpec(
                after_minutes=level["after_minutes"],
                priority_boost=level["priority_boost"],
                notify=[users[name] for name in level.get("notify", [])],
                notify_managers=level.get("notify_managers", False),
            )
        )
    for domain, specs in by_domain.items():
        policy_row = Policy.objects.filter(domain=domain).first()
        if policy_row is not None and not policy_row.levels.exists():
            services.policy_levels_replace(policy_row=policy_row, specs=specs)


def _steps(demo: data.DemoEscalation, posted: datetime) -> list[dict[str, Any]]:
    """The history's steps spread evenly over the minutes before posting."""
    minutes = timedelta(minutes=demo.history_minutes)
    last = max(1, len(demo.history) - 1)
    return [
        {**step, "at": (posted - minutes + minutes * (i / last)).isoformat()}
        for i, step in enumerate(demo.history)
    ]


def _escalation(demo: data.DemoEscalation, agent: Agent, now: datetime) -> tuple[Escalation, bool]:
    existing = Escalation.objects.filter(agent=agent, run__run_id=demo.run_id).first()
    if existing is not None:
        return existing, False
    posted = now - timedelta(minutes=demo.ago_minutes)
    delay = dict(demo.package["cost_of_delay"])
    delay.setdefault("stuck_since", (posted - timedelta(minutes=demo.history_minutes)).isoformat())
    if demo.respond_in_minutes is not None:
        delay["respond_by"] = (posted + timedelta(minutes=demo.respond_in_minutes)).isoformat()
    body = {
        "run_id": demo.run_id,
        **demo.package,
        "history": _steps(demo, posted),
        "cost_of_delay": delay,
    }
    with transaction.atomic():
        result = services.escalation_create(
            agent=agent, package=EscalationIn.model_validate(body).to_input(body), now=posted
        )
    return result.escalation, True
