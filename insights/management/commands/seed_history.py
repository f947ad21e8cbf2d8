"""Eight weeks of demo history for the insights page: gate checks, runs, escalations of
every reason and tier, claims, decisions, flag reviews; several agents, one of them
(schema-pilot) escalating far more often this week. Written with bulk_create (a few
seconds), then the rollups are rebuilt for those days.

Idempotent: an agent that already has history runs (run_id "history-…") is skipped.
Needs the demo agents (seed_demo calls this command at its end).
"""

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

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
from insights import services

WEEKS = 8
RUN_PREFIX = "history-"
BATCH = 1000


@dataclass(frozen=True)
class Profile:
    """How an agent behaves in the history."""

    gate_checks: int  # a day, on average
    rate: float  # escalations per gate check
    confidence: tuple[float, float]  # its stated confidence: mean, spread
    overconfidence: float  # how far agreement falls below the stated confidence
    budget: int  # its daily escalation budget
    drift_rate: float | None = None  # this week's rate, when it drifts


PROFILES = {
    "refactor-bot": Profile(90, 0.10, (0.78, 0.12), 0.02, 20),
    "schema-pilot": Profile(70, 0.08, (0.72, 0.15), 0.15, 12, drift_rate=0.24),
    "deploy-captain": Profile(60, 0.12, (0.70, 0.14), 0.08, 10),
    "lit-scout": Profile(4, 0.25, (0.66, 0.16), 0.00, 5),
    "support-drafter": Profile(110, 0.07, (0.80, 0.10), 0.05, 12),
}
REVIEWERS = ["demo", "sam", "priya", "lee"]
REASON_WEIGHTS = {
    "approach_choice": 30,
    "missing_information": 20,
    "missing_access": 8,
    "irreversible_action": 10,
    "novelty": 9,
    "scope_mismatch": 8,
    "repeated_failure": 10,
    "other": 5,
}
TITLES = {
    "approach_choice": "Two ways to fix the failing job: which one?",
    "missing_information": "Which customer account does this ticket mean?",
    "missing_access": "No write access to the production bucket",
    "irreversible_action": "Drop the legacy table now?",
    "novelty": "A request type never seen before",
    "scope_mismatch": "The change touches far more files than planned",
    "repeated_failure": "The same step failed three times",
    "other": "Something looks off",
}
OPTIONS = [
    {"key": "proceed", "label": "Proceed as planned", "recommended": True},
    {"key": "alternative", "label": "Take the alternative"},
]


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _minutes(rng: random.Random, median: float, sigma: float = 0.9) -> timedelta:
    return timedelta(minutes=median * math.exp(rng.gauss(0, sigma)))


class Command(BaseCommand):
    help = "Load eight weeks of escalation history for the insights page (idempotent)."

    def handle(self, *args, **options):
        now = timezone.now()
        reviewers = self._reviewers()
        policies = {p.domain: p for p in Policy.objects.all()}
        agents = [a for a in Agent.objects.filter(name__in=PROFILES) if not self._seeded(a)]
        if not agents:
            self.stdout.write("History: already loaded (or no demo agents).")
            return
        first = (now - timedelta(weeks=WEEKS)).date()
        days = [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]
        week_start = now.date() - timedelta(days=now.date().weekday())
        total = 0
        for agent in agents:
            profile = PROFILES[agent.name]
            rng = random.Random(f"history-{agent.name}")  # noqa: S311 - demo data, not secrets
            with transaction.atomic():
                Agent.objects.filter(pk=agent.pk).update(daily_budget=profile.budget)
                total += self._agent_history(
                    agent,
                    profile,
                    policies.get(agent.domain),
                    reviewers,
                    days,
                    week_start,
                    now,
                    rng,
                )
        services.rollups_rebuild(days=days)
        self.stdout.write(
            f"History: {total} escalations over {len(days)} days for {len(agents)} agents; rollups rebuilt."
        )

    def _seeded(self, agent: Agent) -> bool:
        return Run.objects.filter(agent=agent, run_id__startswith=RUN_PREFIX).exists()

    def _reviewers(self) -> dict:
        group = Group.objects.get_or_create(name="reviewer")[0]
        users = {}
        for name in REVIEWERS:
            user = get_user_model().objects.filter(username=name).first()
            if user is None:
                user = get_user_model().objects.create_user(name, f"{name}@example.com")
                user.set_unusable_password()
                user.save(update_fields=["password"])
                user.groups.add(group)
            users[name] = user
        return users

    def _agent_history(self, agent, profile, policy, reviewers, days, week_start, now, rng) -> int:
        gates: list[GateCheck] = []
        runs, escalations, decisions, events, flags = [], [], [], [], []
        seq = agent.decision_seq
        thresholds = (
            (policy.autonomous_threshold, policy.flag_threshold, policy.escalate_threshold)
            if policy
            else (0.9, 0.7, 0.5)
        )
        for day in days:
            start = _day_start(day)
            # Today's share is squeezed into the hours so far, so "this week" has volume.
            span = min(timedelta(days=1), now - start - timedelta(minutes=1))
            if span <= timedelta(0):
                continue
            weekday_factor = 0.45 if day.weekday() >= 5 else 1.0
            n_gates = max(
                0,
                round(rng.gauss(profile.gate_checks, profile.gate_checks * 0.15) * weekday_factor),
            )
            rate = (
                profile.drift_rate if (profile.drift_rate and day >= week_start) else profile.rate
            )
            rate *= math.exp(rng.gauss(0, 0.15))
            n_esc = sum(1 for _ in range(n_gates) if rng.random() < rate)
            moments = sorted(start + span * rng.random() for _ in range(n_gates))
            gates.extend(
                GateCheck(agent=agent, domain=agent.domain, verdict="proceed", tier=1, at=at)
                for at in moments
            )
            day_runs = []
            for i in range(max(1, n_gates // 6)):
                run = Run(
                    agent=agent, run_id=f"{RUN_PREFIX}{day:%Y%m%d}-{i}", status=Run.Status.ACTIVE
                )
                run.created_at = start + span * rng.random()
                day_runs.append(run)
            runs.extend(day_runs)
            for _ in range(n_esc):
                created = start + span * rng.random()
                esc, decision, more_events, flag = self._escalation(
                    agent, profile, thresholds, rng.choice(day_runs), created, reviewers, now, rng
                )
                escalations.append(esc)
                events.extend(more_events)
                if decision is not None:
                    seq += 1
                    decision.seq = seq
                    decisions.append(decision)
                if flag is not None:
                    flags.append(flag)
        GateCheck.objects.bulk_create(gates, batch_size=BATCH)
        # created_at is auto_now_add (bulk_create stamps now): set the history's times after.
        started = {run.run_id: run.created_at for run in runs}
        Run.objects.bulk_create(runs, batch_size=BATCH)
        saved = {
            run.run_id: run
            for run in Run.objects.filter(agent=agent, run_id__startswith=RUN_PREFIX)
        }
        for run_id, created_at in started.items():
            saved[run_id].created_at = created_at
        Run.objects.bulk_update(list(saved.values()), ["created_at"], batch_size=BATCH)
        for esc in escalations:
            esc.run = saved[esc.run.run_id]
        Escalation.objects.bulk_create(escalations, batch_size=BATCH)
        Decision.objects.bulk_create(decisions, batch_size=BATCH)
        Event.objects.bulk_create(events, batch_size=BATCH)
        FlagReview.objects.bulk_create(flags, batch_size=BATCH)
        Agent.objects.filter(pk=agent.pk).update(decision_seq=seq)
        return len(escalations)

    def _escalation(self, agent, profile, thresholds, run, created, reviewers, now, rng):
        autonomous, flag, escalate = thresholds
        mean, spread = profile.confidence
        confidence = min(0.99, max(0.2, rng.gauss(mean, spread)))
        reason = rng.choices(list(REASON_WEIGHTS), weights=list(REASON_WEIGHTS.values()))[0]
        irreversible = reason == "irreversible_action"
        if confidence < escalate:
            tier = 4
        elif confidence < flag or irreversible or reason == "novelty":
            tier = 3
        elif confidence < autonomous:
            tier = 2
        else:
            tier = 1
        agrees = rng.random() < max(0.02, min(0.99, confidence - profile.overconfidence))
        respond_by = (
            created + timedelta(minutes=rng.choice([60, 120, 240]))
            if tier >= 3 and rng.random() < 0.7
            else None
        )
        esc = Escalation(
            agent=agent,
            run=run,
            status=Escalation.Status.DECIDED,
            title=TITLES[reason],
            uncertainty="Demo history: the agent could not tell which way is right.",
            reason=reason,
            confidence=round(confidence, 3),
            history=[{"at": created.isoformat(), "action": "worked on the task", "outcome": "ok"}],
            options=OPTIONS,
            blocking=tier >= 3,
            impact=rng.choice(["low", "medium", "high"]) if tier < 4 else "critical",
            stuck_since=created - timedelta(minutes=20),
            respond_by=respond_by,
            domain=agent.domain,
            tier=tier,
            priority=10 * tier,
            is_irreversible=irreversible,
            created_at=created,
            updated_at=created,
        )
        events = [Event(escalation=esc, kind=Event.Kind.CREATED, actor=agent.name, at=created)]
        if tier <= 2:
            decision = Decision(
                escalation=esc,
                agent=agent,
                kind=Decision.Kind.OPTION,
                option_key="proceed",
                decided_by_type=Decision.DecidedBy.POLICY,
                decided_by_name=f"policy:{agent.domain}",
                decided_at=created,
                took_recommended=True,
            )
            review = None
            if tier == 2 and rng.random() < 0.5:
                review_at = min(now, created + _minutes(rng, 180))
                name = rng.choice(list(reviewers))
                review = FlagReview(
                    escalation=esc,
                    reviewer=reviewers[name],
                    reviewer_name=name,
                    verdict=FlagReview.Verdict.FINE if agrees else FlagReview.Verdict.OTHER,
                    option_key="" if agrees else "alternative",
                    at=review_at,
                )
            return esc, decision, events, review
        claim_at = created + _minutes(rng, 6 if tier == 4 else 18)
        decided_at = claim_at + _minutes(rng, 9 if tier == 4 else 14, 0.7)
        if decided_at >= now:  # keep the history closed: the live queue is seed_demo's
            claim_at = created + (now - created) * 0.3
            decided_at = created + (now - created) * 0.6
        if respond_by and rng.random() < 0.06:
            return (
                esc,
                Decision(
                    escalation=esc,
                    agent=agent,
                    kind=Decision.Kind.OPTION,
                    option_key="proceed",
                    decided_by_type=Decision.DecidedBy.TIMEOUT,
                    decided_by_name="timeout",
                    decided_at=respond_by,
                    took_recommended=True,
                ),
                events,
                None,
            )
        name = rng.choices(list(reviewers), weights=[5, 4, 3, 1][: len(reviewers)])[0]
        events.append(Event(escalation=esc, kind=Event.Kind.CLAIMED, actor=name, at=claim_at))
        events.append(Event(escalation=esc, kind=Event.Kind.DECIDED, actor=name, at=decided_at))
        decision = Decision(
            escalation=esc,
            agent=agent,
            kind=Decision.Kind.OPTION,
            option_key="proceed" if agrees else "alternative",
            decided_by_type=Decision.DecidedBy.HUMAN,
            decided_by_user=reviewers[name],
            decided_by_name=name,
            decided_at=decided_at,
            took_recommended=agrees,
        )
        esc.updated_at = decided_at
        return esc, decision, events, None
