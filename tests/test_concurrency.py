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
