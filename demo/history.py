"""Eight weeks of demo history for the insights page (data/history.toml): gate checks, runs,
escalations of every reason and tier, claims, decisions and flag reviews; several agents,
one of them (schema-pilot) escalating far more often this week. Written in bulk (seconds,
where the services would take minutes), then the rollups are rebuilt for those days.

The rows are what the services would have written: the policy's verdict and priority, an
event for each step (created, claimed, decided, flag reviewed), the agent's decision numbers
in order (tests/test_demo.py holds the rows to the invariants of service-written ones).
Idempotent: an agent that already has history runs (run_id "history-…") is skipped. Needs
the demo agents (seed_demo loads them, then this).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from escalations import policy, services
from escalations.models import (
    Agent,
    Decision,
    Escalation,
    Event,
    FlagReview,
    GateCheck,
    Policy,
    Run,
)
from insights import services as insights

from . import data

RUN_PREFIX = "history-"
BATCH = 1000
RECOMMENDED = "proceed"  # the recommended one of data/history.toml's options


@dataclass
class Rows:
    """One agent's history, to be written in bulk."""

    gates: list[GateCheck] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    flags: list[FlagReview] = field(default_factory=list)


@dataclass
class Writer:
    """What one agent's escalations are made of, and the rows made so far."""

    agent: Agent
    profile: dict[str, Any]
    rules: policy.Rules
    reviewers: dict[str, Any]
    now: datetime
    rng: random.Random
    rows: Rows = field(default_factory=Rows)


def seed_history(*, now: datetime, say: Callable[[str], None]) -> None:
    config = data.history()
    reviewers = _reviewers(config["reviewers"])
    agents = [a for a in Agent.objects.filter(name__in=config["profiles"]) if not _seeded(a)]
    if not agents:
        say("History: already loaded (or no demo agents).")
        return
    first = (now - timedelta(weeks=config["weeks"])).date()
    days = [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]
    policies = {row.domain: services.rules_of(row) for row in Policy.objects.all()}
    total = 0
    for agent in agents:
        profile = config["profiles"][agent.name]
        writer = Writer(
            agent=agent,
            profile=profile,
            rules=policies.get(agent.domain) or policy.Rules(domain=agent.domain),
            reviewers=reviewers,
            now=now,
            rng=random.Random(f"history-{agent.name}"),  # noqa: S311 - demo data, not secrets
        )
        with transaction.atomic():
            Agent.objects.filter(pk=agent.pk).update(daily_budget=profile["budget"])
            for day in days:
                _day(writer, day)
            _write(writer)
        total += len(writer.rows.escalations)
    insights.rollups_rebuild(days=days)
    maps = insights.calibration_refresh(now=now)
    say(
        f"History: {total} escalations over {len(days)} days for {len(agents)} agents; "
        f"rollups rebuilt; {maps} calibration maps."
    )


def _seeded(agent: Agent) -> bool:
    return Run.objects.filter(agent=agent, run_id__startswith=RUN_PREFIX).exists()


def _reviewers(names: list[str]) -> dict[str, Any]:
    """The history's reviewers; those seed_demo does not create get no password."""
    group = Group.objects.get_or_create(name="reviewer")[0]
    users = {}
    for name in names:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            user = get_user_model().objects.create_user(name, f"{name}@example.com")
            user.set_unusable_password()
            user.save(update_fields=["password"])
            user.groups.add(group)
        users[name] = user
    return users


def _minutes(rng: random.Random, median: float, sigma: float = 0.9) -> timedelta:
    return timedelta(minutes=median * math.exp(rng.gauss(0, sigma)))


def _day(w: Writer, day: date) -> None:
    """A day's gate checks, runs and escalations (today's squeezed into the hours so far)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    span = min(timedelta(days=1), w.now - start - timedelta(minutes=1))
    if span <= timedelta(0):
        return
    profile, rng = w.profile, w.rng
    weekday_factor = 0.45 if day.weekday() >= 5 else 1.0
    gate_checks = profile["gate_checks"]
    n_gates = max(0, round(rng.gauss(gate_checks, gate_checks * 0.15) * weekday_factor))
    this_week = w.now.date() - timedelta(days=w.now.date().weekday())
    drift_rate = profile.get("drift_rate")
    rate = drift_rate if (drift_rate and day >= this_week) else profile["rate"]
    rate *= math.exp(rng.gauss(0, 0.15))
    moments = sorted(start + span * rng.random() for _ in range(n_gates))
    runs = []
    for i in range(max(1, n_gates // 6)):
        run = Run(agent=w.agent, run_id=f"{RUN_PREFIX}{day:%Y%m%d}-{i}", status=Run.Status.ACTIVE)
        run.created_at = start + span * rng.random()
        runs.append(run)
    w.rows.runs.extend(runs)
    # Each gate call is in a run; the calls the agent escalates after are followed, a few
    # seconds later, by an escalation in the same run (so it counts per gate check).
    asked = [(at, rng.choice(runs)) for at in moments]
    w.rows.gates.extend(
        GateCheck(agent=w.agent, domain=w.agent.domain, run_id=run.run_id, verdict="proceed", tier=1, at=at)
        for at, run in asked
    )
    for at, run in asked:
        if rng.random() < rate:
            _escalation(w, run, min(at + timedelta(seconds=rng.randint(1, 30)), start + span))


def _escalation(w: Writer, run: Run, created: datetime) -> None:
    """One escalation as escalation_create writes it, then its decision: the policy's (tier
    1-2, perhaps flag-reviewed later), a timeout's, or a reviewer's after a claim."""
    config, rng, agent = data.history(), w.rng, w.agent
    mean, spread = w.profile["confidence"]
    confidence = round(min(0.99, max(0.2, rng.gauss(mean, spread))), 3)
    reasons = config["reasons"]
    reason = rng.choices(list(reasons), weights=[r["weight"] for r in reasons.values()])[0]
    irreversible = reason == Escalation.Reason.IRREVERSIBLE_ACTION
    verdict = policy.verdict_for(
        w.rules,
        policy.Situation(
            confidence=confidence,
            irreversible=irreversible,
            novel=reason == Escalation.Reason.NOVELTY,
            reason=reason,
        ),
    )
    tier = verdict.tier
    stated = max(0.02, min(0.99, confidence - w.profile["overconfidence"]))
    agrees = rng.random() < w.profile.get("agreement", {}).get(reason, stated)
    respond_by = (
        created + timedelta(minutes=rng.choice([60, 120, 240]))
        if tier >= 3 and rng.random() < 0.7
        else None
    )
    options = [dict(option) for option in config["options"]]
    if irreversible:  # the package says which option cannot be undone
        options[0]["irreversible"] = True
    esc = Escalation(
        agent=agent,
        run=run,
        status=Escalation.Status.PENDING,
        title=reasons[reason]["title"],
        uncertainty=config["uncertainty"],
        reason=reason,
        confidence=confidence,
        history=[{"at": created.isoformat(), "action": "worked on the task", "outcome": "ok"}],
        options=options,
        blocking=tier >= 3,
        impact=rng.choice(["low", "medium", "high"]) if tier < 4 else "critical",
        stuck_since=created - timedelta(minutes=20),
        respond_by=respond_by,
        domain=agent.domain,
        tier=tier,
        tier_reasons=verdict.reasons,
        policy_version=w.rules.version,
        is_irreversible=irreversible,
        created_at=created,
        updated_at=created,
    )
    # As escalation_create ranks a new escalation (escalations.services.intake.urgency).
    priority = policy.priority_for(
        policy.Urgency(
            tier=tier,
            impact=esc.impact,
            blocking=esc.blocking,
            irreversible=irreversible,
            respond_by=respond_by,
            stuck_since=esc.stuck_since,
        ),
        created,
    )
    esc.priority, esc.priority_reasons = priority.score, priority.reasons
    w.rows.escalations.append(esc)
    payload = {"tier": tier, "tier_reasons": verdict.reasons, "priority": priority.score}
    _event(w, esc, Event.Kind.CREATED, agent.name, created, payload)

    if verdict.decided_by_policy and w.rules.auto_decide:
        _decide(w, esc, RECOMMENDED, Decision.DecidedBy.POLICY, f"policy:{agent.domain}", None, created)
        if tier == 2 and rng.random() < 0.5:
            _flag_review(w, esc, agrees, min(w.now, created + _minutes(rng, 180)))
        return
    claim_at = created + _minutes(rng, 6 if tier == 4 else 18)
    decided_at = claim_at + _minutes(rng, 9 if tier == 4 else 14, 0.7)
    if decided_at >= w.now:  # keep the history closed: the live queue is seed_demo's
        claim_at = created + (w.now - created) * 0.3
        decided_at = created + (w.now - created) * 0.6
    if respond_by and rng.random() < 0.06 and respond_by <= w.now and not irreversible:
        esc.timeout_option = RECOMMENDED  # timeouts_apply decides with it once respond_by passes
        _decide(w, esc, RECOMMENDED, Decision.DecidedBy.TIMEOUT, "timeout", None, respond_by)
        return
    name = rng.choices(list(w.reviewers), weights=config["reviewer_weights"][: len(w.reviewers)])[0]
    until = claim_at + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    _event(w, esc, Event.Kind.CLAIMED, name, claim_at, {"until": until.isoformat()})
    option = RECOMMENDED if agrees else "alternative"
    _decide(w, esc, option, Decision.DecidedBy.HUMAN, name, w.reviewers[name], decided_at)


def _event(w: Writer, esc: Escalation, kind: str, actor: str, at: datetime, payload: dict) -> None:
    w.rows.events.append(Event(escalation=esc, kind=kind, actor=actor, at=at, data=payload))


def _decide(w: Writer, esc: Escalation, option: str, by: str, name: str, user, at: datetime) -> None:
    """As the decision service does: the escalation decided (awaiting a look when the rule
    says so), the agent's next feed number (set in order when written), the decision, its event."""
    esc.status, esc.updated_at = Escalation.Status.DECIDED, at
    esc.awaiting_look = FlagReview.applies(esc.tier, by)
    w.rows.decisions.append(
        Decision(
            escalation=esc,
            agent=w.agent,
            kind=Decision.Kind.OPTION,
            option_key=option,
            decided_by_type=by,
            decided_by_user=user,
            decided_by_name=name,
            decided_at=at,
            took_recommended=option == RECOMMENDED,
        )
    )
    decided = {"kind": Decision.Kind.OPTION, "option": option, "by": by, "instruction": None}
    _event(w, esc, Event.Kind.DECIDED, name, at, decided)


def _flag_review(w: Writer, esc: Escalation, agrees: bool, at: datetime) -> None:
    name = w.rng.choice(list(w.reviewers))
    verdict = FlagReview.Verdict.FINE if agrees else FlagReview.Verdict.OTHER
    option = "" if agrees else "alternative"
    esc.awaiting_look = False
    w.rows.flags.append(
        FlagReview(
            escalation=esc,
            reviewer=w.reviewers[name],
            reviewer_name=name,
            verdict=verdict,
            option_key=option,
            at=at,
        )
    )
    _event(w, esc, Event.Kind.FLAG_REVIEWED, name, at, {"verdict": verdict, "option": option or None})


def _write(w: Writer) -> None:
    rows, agent = w.rows, w.agent
    GateCheck.objects.bulk_create(rows.gates, batch_size=BATCH)
    # created_at is auto_now_add (bulk_create stamps now): set the history's times after.
    started = {run.run_id: run.created_at for run in rows.runs}
    Run.objects.bulk_create(rows.runs, batch_size=BATCH)
    saved = {run.run_id: run for run in Run.objects.filter(agent=agent, run_id__startswith=RUN_PREFIX)}
    for run_id, created_at in started.items():
        saved[run_id].created_at = created_at
    Run.objects.bulk_update(list(saved.values()), ["created_at"], batch_size=BATCH)
    for esc in rows.escalations:
        esc.run = saved[esc.run.run_id]
    # The agent's decision feed numbers follow the decisions' order in time.
    seq = Agent.objects.filter(pk=agent.pk).values_list("decision_seq", flat=True).get()
    for decision in sorted(rows.decisions, key=lambda d: d.decided_at):
        seq += 1
        decision.seq = seq
    Escalation.objects.bulk_create(rows.escalations, batch_size=BATCH)
    Decision.objects.bulk_create(rows.decisions, batch_size=BATCH)
    Event.objects.bulk_create(rows.events, batch_size=BATCH)
    FlagReview.objects.bulk_create(rows.flags, batch_size=BATCH)
    Agent.objects.filter(pk=agent.pk).update(decision_seq=seq)
