"""The demo app: `manage.py seed_demo`, a realistic demo set loaded through the services and
idempotent, and its insights history, written in bulk but held to the invariants of the rows
the services write."""

import dataclasses
from datetime import timedelta
from io import StringIO
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from escalations import policy, precedents, services
from escalations.backtest import suggestions
from escalations.models import (
    Agent,
    Decision,
    Escalation,
    Event,
    FlagReview,
    PolicyVersion,
    Recommendation,
    Run,
)
from escalations.schemas import EscalationIn
from escalations.services import intake
from escalations.suggestions import FLAG_REASON
from insights.models import MachineRollup
from reviews.queue import flagged as flagged_q
from tests.conftest import make_package, make_user, now


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (get_user_model(), Agent, Run, Escalation, Decision, Event)
    }


def test_seed_demo_is_idempotent_and_covers_every_reason_and_tier(db):
    output = seed()
    first = counts()
    assert output.strip().endswith("Demo login: demo / handoff-demo")

    second_output = seed()
    assert counts() == first
    assert "0 new escalations" in second_output

    escalations = Escalation.objects.all()
    assert {e.reason for e in escalations} == set(Escalation.Reason.values)
    assert {e.tier for e in escalations} == {1, 2, 3, 4}
    assert {e.domain for e in escalations} >= {"default", "code", "db-migration", "research"}
    assert any(e.blocking for e in escalations)
    assert any(not e.blocking for e in escalations)
    assert any(e.is_overdue() for e in escalations)
    assert any(len(e.history) >= 30 and e.failed_steps for e in escalations)
    assert any(o.get("irreversible") for e in escalations for o in e.options)
    assert all(a.resume_url == "" for a in Agent.objects.all())
    # tiers 1-2 decided by the policy, a couple by the demo reviewer, one held by sam
    assert all(e.status == "decided" for e in escalations if e.tier <= 2)
    assert Decision.objects.filter(decided_by_type="policy").exists()
    assert Decision.objects.filter(decided_by_type="human", decided_by_name="demo").count() >= 2
    assert Escalation.objects.filter(claimed_by__username="sam", status="claimed").count() == 1
    assert Escalation.objects.open().count() >= 8
    # a question waiting for an agent (the "Waiting for agent" tab), asked by sam
    (waiting,) = Escalation.objects.filter(status="awaiting_agent")
    assert waiting.question_by == "sam"
    assert "importers" in waiting.question_text
    # the escalation page's demo: a run the demo reviewer took over, a comment by sam
    assert Run.objects.filter(status="taken_over", taken_over_by__username="demo").exists()
    assert Event.objects.filter(kind="commented", actor="sam").count() == 1
    # the code policy holds approach_choice for a person, and its history suggests flagging
    # them instead (people nearly always took refactor-bot's recommendation there)
    rules = services.rules_for("code")
    assert rules is not None
    assert rules.reason_floors == {"approach_choice": 3}
    found = suggestions(rules, now=timezone.now()).items
    assert (FLAG_REASON, "refactor-bot", "approach_choice") in [(s.kind, s.agent, s.reason) for s in found]
    # issue 14's loop, each on a demo escalation:
    # an agent whose calibration changes its tier: schema-pilot's stated 0.86 would be a
    # flagged tier 2 in db-migration; calibrated, a person decides it
    invoices = Escalation.objects.get(run__run_id="backfill-invoices-currency")
    migration = services.rules_for("db-migration")
    assert migration is not None
    assert migration.tier_by_calibrated
    assert policy.verdict_for(migration, situation(invoices)).tier == 3
    assert policy.verdict_for(dataclasses.replace(migration, tier_by_calibrated=False), situation(invoices)).tier == 2
    assert (invoices.tier, invoices.status) == (3, "pending")
    assert invoices.tier_reasons[0].startswith("calibrated confidence 0.7")
    # its precedent: yesterday's orders backfill, decided by the demo reviewer
    assert [e.run.run_id for e in precedents.similar(invoices)] == ["backfill-orders-currency"]
    # the machine reviewer: advice on open escalations, advice a person then decided (agreed
    # once, not once), a decision a person marked fine, one waiting in the Flagged list
    assert Recommendation.objects.filter(is_machine=True, escalation__status="pending").count() >= 2
    assert (
        Escalation.objects.filter(flagged_q(), decision__decided_by_type="machine").values_list("run__run_id", flat=True).get()
        == "res-97-churn-cohorts"
    )
    machine = MachineRollup.objects.filter(reviewer="claude-reviewer").aggregate(
        *(Sum(name) for name in ("recommended", "recommended_agreed", "decided", "decided_agreed"))
    )
    assert list(machine.values()) == [2, 1, 1, 1]


def test_seed_demo_reviewers_can_sign_in(db, client):
    seed()
    for username in ("demo", "sam"):
        response = client.post("/accounts/login/", {"username": username, "password": "handoff-demo"})
        assert response.status_code == 302, username
        client.logout()


# ---------------------------------------------------------------- the history's invariants


def situation(e: Escalation) -> policy.Situation:
    action = e.action or {}
    return policy.Situation(
        confidence=e.confidence,
        irreversible=e.is_irreversible,
        attempts=e.attempts,
        planned_scope=action.get("planned_scope"),
        actual_scope=action.get("actual_scope"),
        novel=e.reason == Escalation.Reason.NOVELTY,
        reason=e.reason,
        calibrated_confidence=e.calibrated_confidence,
    )


def violations(e: Escalation) -> list[str]:
    """What in a decided escalation's rows breaks a rule the services keep."""
    found = []

    def check(holds: bool, what: str) -> None:
        if not holds:
            found.append(f"{e.run.run_id}: {what}")

    rules_row = PolicyVersion.objects.get(policy__domain=e.domain, version=e.policy_version).rules
    rules = policy.Rules(domain=e.domain, version=e.policy_version, **{
        name: rules_row[name] for name in policy.RULE_FIELDS if name in rules_row  # older snapshots: defaults
    })
    verdict = policy.verdict_for(rules, situation(e))
    check((e.tier, e.tier_reasons) == (verdict.tier, verdict.reasons), "tier is not the policy's verdict")
    irreversible = any(o.get("irreversible") for o in e.options) or bool((e.action or {}).get("irreversible"))
    check(e.is_irreversible == irreversible, "is_irreversible is not what the package says")
    check(e.run.agent_id == e.agent_id, "the run is another agent's")
    check(e.domain == e.agent.domain, "the domain is not the agent's")

    events = list(e.events.order_by("at", "id"))
    created = events[0]
    at_creation = policy.priority_for(intake.urgency(e), e.created_at).score
    check(
        (created.kind, created.actor, created.at) == (Event.Kind.CREATED, e.agent.name, e.created_at),
        "the timeline does not start with the agent's creation",
    )
    check(
        created.data == {"tier": e.tier, "tier_reasons": e.tier_reasons, "priority": at_creation},
        "the creation event does not carry the tier and the priority the policy gave",
    )
    check([ev.kind for ev in events].count(Event.Kind.CREATED) == 1, "created twice")

    decision = e.decision
    decided = [ev for ev in events if ev.kind == Event.Kind.DECIDED]
    check(e.status == Escalation.Status.DECIDED and e.claimed_by_id is None, "not closed as decided")
    check(len(decided) == 1, "not one decided event")
    check(
        (decided[0].actor, decided[0].at, decided[0].data)
        == (
            decision.decided_by_name,
            decision.decided_at,
            {"kind": decision.kind, "option": decision.option_key or None,
             "by": decision.decided_by_type, "instruction": decision.instruction or None},
        ),
        "the decided event does not match the decision",
    )
    check(e.created_at <= decision.decided_at <= e.updated_at, "decided outside its lifetime")
    check(
        decision.took_recommended == (decision.option_key == e.recommended_option["key"]),
        "took_recommended is wrong",
    )
    by = decision.decided_by_type
    if by == Decision.DecidedBy.POLICY:
        check(verdict.decided_by_policy and rules.auto_decide, "the policy decided a tier it leaves to people")
        check(decision.decided_at == e.created_at, "the policy did not decide at creation")
        check(decision.decided_by_name == f"policy:{e.domain}", "the policy's decision is misnamed")
    elif by == Decision.DecidedBy.TIMEOUT:
        check(decision.option_key == e.timeout_option, "a timeout chose another option than its own")
        check(e.respond_by is not None and decision.decided_at >= e.respond_by, "timed out early")
        chosen = e.option(decision.option_key) or {}
        check(not chosen.get("irreversible"), "timed out into an irreversible option")
    else:
        user = decision.decided_by_user
        check(user is not None and user.get_username() == decision.decided_by_name, "decided by nobody")
        check(not (verdict.decided_by_policy and rules.auto_decide), "a person decided what the policy decides")
    for claimed in (ev for ev in events if ev.kind == Event.Kind.CLAIMED):
        check(set(claimed.data) == {"until"} and claimed.at <= decision.decided_at, "a claim out of place")

    review = FlagReview.objects.filter(escalation=e).first()
    reviewed = [ev for ev in events if ev.kind == Event.Kind.FLAG_REVIEWED]
    if review is None:
        check(reviewed == [], "a flag-reviewed event without its review")
    else:
        check(e.tier == 2 and by == Decision.DecidedBy.POLICY, "a review of what was not flagged")
        check(
            [(ev.actor, ev.at, ev.data) for ev in reviewed]
            == [(review.reviewer_name, review.at, {"verdict": review.verdict, "option": review.option_key or None})],
            "the review's event does not match it",
        )
    return found


def feed_gaps(agent: Agent) -> list[str]:
    """An agent's decisions are numbered 1..decision_seq, each number once (the feed)."""
    agent.refresh_from_db()
    seqs = sorted(Decision.objects.filter(agent=agent).values_list("seq", flat=True))
    return [] if seqs == list(range(1, agent.decision_seq + 1)) else [f"{agent.name}: feed {seqs[:5]}..."]


def decided_through_the_services() -> list[Escalation]:
    """Escalations written by the services the ways the history has: decided by the policy
    (one flag-reviewed), by a timeout, by a person after a claim, irreversible."""
    from tests.conftest import ensure_default_policies

    ensure_default_policies()
    agent = services.agent_create(name="invariants-bot", domain="code").agent
    alice = make_user("alice-inv", "reviewer")
    t = now() - timedelta(hours=6)

    def create(run_id: str, minutes: int, **overrides) -> Escalation:
        at = t + timedelta(minutes=minutes)
        step = {"at": (at - timedelta(minutes=10)).isoformat(), "action": "read the code", "outcome": "ok"}
        body = make_package(run_id=run_id, history=[step], **overrides)
        return services.escalation_create(
            agent=agent, package=EscalationIn.model_validate(body).to_input(body), now=at
        ).escalation

    autonomous = create("inv-tier1", 0, confidence=0.97)
    flagged = create("inv-tier2", 1, confidence=0.8)
    services.flag_review_record(
        escalation_id=flagged.pk, user=alice, verdict="other", option_key="shim", now=t + timedelta(minutes=30)
    )
    deadline = (t + timedelta(minutes=62)).isoformat()
    timed = create(
        "inv-timeout", 2, confidence=0.6, timeout_option="shim",
        cost_of_delay={"blocking": True, "impact": "high", "respond_by": deadline},
    )
    services.timeouts_apply(now=t + timedelta(minutes=70))
    people: list[tuple[str, int, dict[str, Any]]] = [
        ("inv-human", 3, {"confidence": 0.55}),
        ("inv-halt", 4, {"confidence": 0.3}),
        ("inv-irreversible", 5, {"options": [
            {"key": "drop", "label": "Drop it", "recommended": True, "irreversible": True},
            {"key": "keep", "label": "Keep it"},
        ]}),
    ]
    for run_id, minutes, overrides in people:
        e = create(run_id, minutes, **overrides)
        services.escalation_claim(escalation_id=e.pk, user=alice, now=t + timedelta(minutes=minutes + 5))
        services.escalation_decide(
            escalation_id=e.pk,
            request=services.DecisionRequest(kind="option", option=e.recommended_option["key"]),
            user=alice,
            now=t + timedelta(minutes=minutes + 9),
        )
    return [Escalation.objects.get(pk=e.pk) for e in (autonomous, flagged, timed)] + list(
        Escalation.objects.filter(run__run_id__in=["inv-human", "inv-halt", "inv-irreversible"])
    )


def test_the_seeded_history_keeps_the_invariants_of_rows_the_services_write(db):
    written = decided_through_the_services()
    kinds = {e.decision.decided_by_type for e in written}
    assert kinds == {"policy", "timeout", "human"}
    assert any(FlagReview.objects.filter(escalation=e).exists() for e in written)
    assert [v for e in written for v in violations(e)] == []  # the rules hold for the services
    assert feed_gaps(written[0].agent) == []

    seed()
    history = list(
        Escalation.objects.filter(run__run_id__startswith="history-")
        .select_related("agent", "run", "decision__decided_by_user")
        .prefetch_related("events")
    )
    assert len(history) > 500
    assert {e.decision.decided_by_type for e in history} == {"policy", "timeout", "human"}
    assert {e.tier for e in history} == {1, 2, 3, 4}
    assert any(e.is_irreversible for e in history)
    assert FlagReview.objects.filter(escalation__run__run_id__startswith="history-").exists()
    assert [v for e in history for v in violations(e)] == []
    assert [gap for agent in Agent.objects.all() for gap in feed_gaps(agent)] == []
