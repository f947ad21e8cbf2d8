"""A small escalation history with hand-computed insights, built through the services on a
controlled clock (time-machine). Used by test_rollups and test_insights."""

from datetime import UTC, date, datetime, timedelta

import time_machine

from escalations import services
from escalations.inputs import GateInput
from escalations.models import Decision, FlagReview
from escalations.schemas import EscalationIn
from tests.conftest import make_package

DAY = date(2026, 3, 2)  # a Monday
NEXT_DAY = DAY + timedelta(days=1)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def create(agent, run_id: str, confidence: float, when: datetime, **overrides):
    """An escalation posted by `agent` at `when` (the clock is moved there)."""
    with time_machine.travel(when, tick=False):
        body = make_package(run_id=run_id, confidence=confidence, **overrides)
        return services.escalation_create(
            agent=agent, package=EscalationIn.model_validate(body).to_input(body)
        ).escalation


def claim(escalation, user, when: datetime) -> None:
    services.escalation_claim(escalation_id=escalation.pk, user=user, now=when)


def decide(escalation, user, when: datetime, option: str) -> None:
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind=Decision.Kind.OPTION, option=option),
        user=user,
        now=when,
    )


def gate(agent, when: datetime, n: int, run_ids: tuple[str, ...] = ()) -> None:
    """n gate checks at `when`, the first ones for the runs named (the others without one)."""
    with time_machine.travel(when, tick=False):
        for i in range(n):
            run_id = run_ids[i] if i < len(run_ids) else None
            services.gate_check(agent=agent, data=GateInput(confidence=0.95, run_id=run_id))


def build_day(agent, reviewer) -> dict:
    """DAY, agent in the `default` domain (thresholds 0.90 / 0.70 / 0.50), reviewer alice:

    e1 tier 3 (0.62), respond_by 11:00: claimed 10:04 (4 min), decided 10:20 taking the
       recommended option (20 min; alice's time 16 min);
    e2 tier 4 (0.40), missing_information: claimed 11:30 (30 min), decided 13:00 with the
       other option (2 h; alice's time 90 min);
    e3 tier 1 (0.95): decided by the policy at once (not judged);
    e4 tier 2 (0.80): decided by the policy, flag-reviewed "should have been another option";
    and 10 gate checks at 09:00, one in each escalation's run. Runs: one per escalation (4).
    """
    e1 = create(
        agent,
        "r1",
        0.62,
        at(10),
        cost_of_delay={
            "blocking": True,
            "impact": "high",
            "blocked_tasks": 3,
            "respond_by": at(11).isoformat(),
        },
    )
    claim(e1, reviewer, at(10, 4))
    decide(e1, reviewer, at(10, 20), "update-callers")
    e2 = create(agent, "r2", 0.40, at(11), reason="missing_information")
    claim(e2, reviewer, at(11, 30))
    decide(e2, reviewer, at(13), "shim")
    e3 = create(agent, "r3", 0.95, at(12))
    e4 = create(agent, "r4", 0.80, at(14))
    FlagReview.objects.create(
        escalation=e4,
        reviewer=reviewer,
        reviewer_name=reviewer.username,
        verdict=FlagReview.Verdict.OTHER,
        option_key="shim",
        at=at(15),
    )
    gate(agent, at(9), 10, run_ids=("r1", "r2", "r3", "r4"))
    return {"e1": e1, "e2": e2, "e3": e3, "e4": e4}
