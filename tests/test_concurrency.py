"""Races, with real threads on their own database connections: one decision, one escalation."""

import threading

import pytest
from django.db import connection

from escalations import services
from escalations.models import Decision, Delivery, Escalation
from tests.conftest import AgentClient, make_package

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(count: int, work) -> list:
    """Run work(i) in `count` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected and asserted by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("trial", range(3))
def test_twenty_reviewers_deciding_at_once_record_exactly_one_decision(
    trial, api, agent, django_user_model
):
    agent.resume_url = "http://127.0.0.1:9/never-called"
    agent.save()
    escalation_id = api.escalate(make_package()).json()["id"]
    users = [django_user_model.objects.create_user(f"reviewer-{i}") for i in range(20)]

    def decide(i: int):
        return services.escalation_decide(
            escalation_id=escalation_id,
            request=services.DecisionRequest(kind="option", option=["shim", "update-callers"][i % 2]),
            user=users[i],
        )

    results = run_at_once(20, decide)

    winners = [r for r in results if isinstance(r, Escalation)]
    losers = [r for r in results if isinstance(r, services.AlreadyDecided)]
    assert len(winners) == 1, results
    assert len(losers) == 19, results
    decision = Decision.objects.get(escalation_id=escalation_id)
    assert Delivery.objects.filter(escalation_id=escalation_id).count() == 1
    # Everyone who lost is told who decided and what.
    assert {loser.escalation.decision.decided_by_name for loser in losers} == {decision.decided_by_name}


def test_concurrent_posts_with_one_key_create_exactly_one_escalation(agent_with_token):
    token = agent_with_token[1]
    package = make_package()

    def post(i: int):
        response = AgentClient(token).escalate(package, HTTP_IDEMPOTENCY_KEY="same-key")
        return response.status_code, response.json()["id"]

    results = run_at_once(10, post)

    assert all(isinstance(r, tuple) for r in results), results
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 9 + [201]
    assert len({escalation_id for _, escalation_id in results}) == 1
    assert Escalation.objects.count() == 1


def test_concurrent_posts_for_one_run_open_exactly_one_escalation(agent_with_token):
    token = agent_with_token[1]

    def post(i: int):
        response = AgentClient(token).escalate(make_package(title=f"question {i}"))
        return response.status_code, response.json()

    results = run_at_once(8, post)

    codes = sorted(code for code, _ in results)
    assert codes == [201] + [409] * 7, results
    created = next(body for code, body in results if code == 201)
    for code, body in results:
        if code == 409:
            assert body["open_escalation"]["id"] == created["id"]


def test_claims_race_to_one_holder(api, django_user_model):
    escalation_id = api.escalate(make_package()).json()["id"]
    users = [django_user_model.objects.create_user(f"claimer-{i}") for i in range(6)]

    results = run_at_once(6, lambda i: services.escalation_claim(escalation_id=escalation_id, user=users[i]))

    assert sum(isinstance(r, Escalation) for r in results) == 1, results
    assert sum(isinstance(r, services.ClaimedByOther) for r in results) == 5


@pytest.mark.postgres
def test_a_halt_racing_a_new_escalation_of_its_run_deadlocks_neither(
    api, agent_with_token, reviewer, monkeypatch
):
    """The decide locks the escalation and its run together: a halt writes the run after the
    flip, and the agent's next escalation of that run takes the run first, then waits on the
    flipped escalation (the one-open-per-run index). Locked one after the other, PostgreSQL
    found a deadlock and aborted the create: a 503 'database unavailable' for no outage."""
    from escalations import policy

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    first = api.escalate(make_package(run_id="run-race")).json()["id"]
    flipped, go = threading.Event(), threading.Event()
    real_valid_until = policy.valid_until

    def held(rules, now):  # decide_open calls it after the flip, before it writes the run
        if threading.current_thread().name == "decider":
            flipped.set()
            go.wait(10)
        return real_valid_until(rules, now)

    monkeypatch.setattr(policy, "valid_until", held)
    outcome: dict = {}

    def decide() -> None:
        try:
            services.escalation_decide(
                escalation_id=first, request=services.DecisionRequest(kind="halt"), user=reviewer
            )
            outcome["decide"] = "ok"
        except Exception as exc:  # asserted below
            outcome["decide"] = repr(exc)
        finally:
            connection.close()

    def create() -> None:
        try:
            response = AgentClient(agent_with_token[1]).escalate(make_package(run_id="run-race"))
            outcome["create"] = (response.status_code, response.json())
        finally:
            connection.close()

    decider = threading.Thread(target=decide, name="decider")
    decider.start()
    assert flipped.wait(10)
    creator = threading.Thread(target=create)
    creator.start()
    creator.join(1.0)  # the create is on its way: it waits for the decide, or has its answer
    go.set()
    decider.join(30)
    creator.join(30)
    assert outcome["decide"] == "ok", outcome
    assert outcome["create"][0] in (201, 409), outcome
    assert Escalation.objects.get(pk=first).status == "decided"
