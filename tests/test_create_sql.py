"""On PostgreSQL a create's four writes are one hand-written statement
(intake._write_together: the run upserted, the escalation, the budget counted, the 'created'
event). Held equal here to the same writes one statement each (intake._write_one_by_one,
SQLite's embedded mode, whose rows.insert tests/test_rows.py holds equal to the ORM's save):
two agents alike create the same package at the same moment, one through each, and every
column of the run, the escalation, its events and its decision, the agents' budget columns,
the service's answer and its conflicts come out the same."""

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Model
from django.utils import timezone

from escalations import services
from escalations.errors import Conflict
from escalations.models import Agent, Decision, Escalation, Event, Run
from escalations.schemas import EscalationIn
from escalations.services import intake
from escalations.wire import escalation_dict
from tests.conftest import ensure_default_policies, make_package, need

pytestmark = pytest.mark.django_db

# Columns that name the row itself or the agent it belongs to: the two agents' rows differ there.
OWN = {"id", "agent_id", "run_id", "escalation_id", "user_id", "number"}


def columns(obj: Model | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    obj.refresh_from_db()
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname not in OWN}


@pytest.fixture
def two_agents(db):
    need(connection.vendor == "postgresql", "PostgreSQL (the statement's data-modifying CTEs)")
    ensure_default_policies()
    return [services.agent_create(name=f"twin-{i}", daily_budget=5).agent for i in range(2)]


def create(agent: Agent, body: dict[str, Any], *, together: bool, key: str | None = "key-1", at=None):
    """escalation_create at `at`, its writes by the statement (together) or one by one; the
    result, or the Conflict it raised."""
    writes = intake._write_together if together else intake._write_one_by_one
    at = at or timezone.now()
    agent = Agent.objects.get(pk=agent.pk)  # as the token read gives it
    with mock.patch.object(intake, "_write_together", writes), mock.patch("django.utils.timezone.now", return_value=at):
        try:
            return services.escalation_create(
                agent=agent, package=EscalationIn.model_validate(body).to_input(body), idempotency_key=key, now=at
            )
        except Conflict as conflict:
            return conflict


def named_alike(value: Any, name: str) -> Any:
    """`value` with the agent's name (an event's actor) as AGENT."""
    if isinstance(value, str):
        return "AGENT" if value == name else value
    if isinstance(value, dict):
        return {k: named_alike(v, name) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(named_alike(v, name) for v in value)
    return value


def stored(agent: Agent, result) -> dict[str, Any]:
    """What a create left: the answer (its body, ids aside), and every row of the agent's."""
    if isinstance(result, Conflict):
        answer: Any = (type(result).__name__, result.type, str(result))
    else:
        body = escalation_dict(result.escalation)
        answer = (result.created, {k: v for k, v in body.items() if k not in ("id", "url", "decision")},
                  result.escalation.agent.budget_used, result.escalation.agent.budget_day)
    agent.refresh_from_db()
    escalations = list(Escalation.objects.filter(agent=agent).order_by("created_at", "title"))
    return named_alike({
        "answer": answer,
        "agent": (agent.budget_used, agent.budget_day, agent.decision_seq),
        "runs": [columns(r) for r in Run.objects.filter(agent=agent).order_by("run_id")],
        "escalations": [columns(e) for e in escalations],
        "events": [[columns(ev) for ev in Event.objects.filter(escalation=e).order_by("at", "kind")] for e in escalations],
        "decisions": [columns(Decision.objects.filter(escalation=e).first()) for e in escalations],
    }, agent.name)


def both(two_agents, body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    at = kwargs.pop("at", None) or timezone.now()
    return [stored(agent, create(agent, body, together=together, at=at, **kwargs))
            for agent, together in zip(two_agents, (True, False), strict=True)]


def irreversible() -> dict[str, Any]:
    body = make_package()
    body["options"][1]["irreversible"] = True
    return body


PACKAGES = {
    "tier 3": make_package,
    "tier 4 (halt)": lambda: make_package(confidence=0.3),
    "tier 1, decided by the policy": lambda: make_package(confidence=0.95),
    "tier 2, decided by the policy": lambda: make_package(confidence=0.8),
    "irreversible, a deadline, an action, links and metadata": lambda: {
        **irreversible(),
        "cost_of_delay": {"blocking": False, "impact": "critical", "blocked_tasks": 0,
                          "respond_by": (timezone.now() + timedelta(hours=2)).isoformat(),
                          "stuck_since": (timezone.now() - timedelta(hours=1)).isoformat(), "note": "waiting"},
        "action": {"name": "delete billing/legacy", "irreversible": True,
                   "planned_scope": 3, "actual_scope": 3},
        "links": [{"url": "https://example.com/pr/1", "label": "PR"}],
        "metadata": {"ticket": "B-1", "n": 2},
        "attempts": 2,
    },
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
@pytest.mark.parametrize("key", ["key-1", None])
def test_a_create_writes_the_same_rows(two_agents, name, key):
    together, one_by_one = both(two_agents, PACKAGES[name](), key=key)
    assert together == one_by_one
    assert together["escalations"]
    assert together["events"][0]


def test_the_run_is_upserted_alike(two_agents):
    body = make_package()
    both(two_agents, body, key="first")
    Escalation.objects.filter(agent__in=two_agents).update(status=Escalation.Status.DECIDED)
    together, one_by_one = both(two_agents, body, key="second", at=timezone.now() + timedelta(seconds=1))
    assert together == one_by_one
    assert len(together["runs"]) == 1
    assert len(together["escalations"]) == 2


@pytest.mark.parametrize(("budget_day", "used", "daily_budget"), [
    (None, 0, 5),  # a new agent
    (0, 3, 5),  # today's count goes on
    (-1, 3, 5),  # yesterday's: the count starts again
    (0, 5, 5),  # over the budget: the notice goes out with the create
    (0, 9, 5),
])
def test_the_budget_is_counted_alike(two_agents, budget_day, used, daily_budget):
    today = timezone.now().date()
    day = None if budget_day is None else today + timedelta(days=budget_day)
    Agent.objects.filter(pk__in=[a.pk for a in two_agents]).update(budget_day=day, budget_used=used, daily_budget=daily_budget)
    together, one_by_one = both(two_agents, make_package())
    assert together == one_by_one
    assert together["agent"][:2] == ((used + 1 if day == today else 1), today)


def test_conflicts_write_nothing_and_answer_alike(two_agents):
    body = make_package()
    first = both(two_agents, body, key="key-1")
    # The same key and body: a replay. The same key, another body: 409. Another key while
    # the run's escalation is open: 409. Each after the statement met a unique index.
    replay = both(two_agents, body, key="key-1")
    reused = both(two_agents, {**body, "title": "Another"}, key="key-1")
    open_run = both(two_agents, body, key="key-2")
    for together, one_by_one in (replay, reused, open_run):
        assert together == one_by_one
        assert together["runs"] == first[0]["runs"]
        assert together["escalations"] == first[0]["escalations"]
        assert together["agent"] == first[0]["agent"]
    assert replay[0]["answer"][0] is False
    assert reused[0]["answer"][1] == "idempotency-key-reused"
    assert open_run[0]["answer"][1] == "run-has-open-escalation"


def test_the_statement_stays_within_psycopgs_cached_parameters(two_agents):
    """Over 50 parameters psycopg converts a statement anew on every call (~0.1 ms of a
    create's CPU): rows.insert_select writes NULLs in the statement to keep under it."""
    from psycopg._queries import MAX_CACHED_STATEMENT_PARAMS

    sent: list[int] = []

    def count(execute, sql, params, many, context):
        if sql.startswith("WITH run AS"):
            sent.append(len(params))
        return execute(sql, params, many, context)

    body = PACKAGES["irreversible, a deadline, an action, links and metadata"]()
    with connection.execute_wrapper(count):
        create(two_agents[0], body, together=True, key="a-key")
    assert sent
    assert sent[0] <= MAX_CACHED_STATEMENT_PARAMS
