"""The agents' hot read (one hand-written statement) answers exactly what the ORM answers."""

from datetime import timedelta

import pytest

from escalations import selectors, services
from escalations.models import AgentToken, Escalation, hash_token
from escalations.wire import escalation_dict
from tests.conftest import make_package, now

pytestmark = pytest.mark.django_db


def orm_wire(escalation_id) -> dict:
    return escalation_dict(Escalation.objects.select_related("run", "decision").get(pk=escalation_id))


def decide(escalation_id, user, **request):
    services.escalation_decide(escalation_id=escalation_id, request=services.DecisionRequest(**request), user=user)


STATES = {
    "pending with a deadline": lambda eid, user: None,
    "an option with edited args and an instruction": lambda eid, user: decide(
        eid, user, kind="option", option="update-callers", args={"paths": ["a/", "ü/"], "n": 1.5},
        instruction="Leave billing/legacy alone."),
    "an option with the agent's args": lambda eid, user: decide(eid, user, kind="option", option="shim"),
    "an instruction": lambda eid, user: decide(eid, user, kind="instruction", instruction="Ask first."),
    "halted": lambda eid, user: decide(eid, user, kind="halt"),
    "resumed": lambda eid, user: (decide(eid, user, kind="take_over"),
                                  services.escalation_acknowledge(escalation=Escalation.objects.select_related("agent").get(pk=eid))),
    "withdrawn": lambda eid, user: services.escalation_withdraw(escalation=Escalation.objects.select_related("agent").get(pk=eid)),
    "claimed": lambda eid, user: services.escalation_claim(escalation_id=eid, user=user),
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_hot_read_equals_the_orm_read(api, agent_with_token, reviewer, state):
    package = make_package(title="Déployer 🚀 \"quoted\" <b>", cost_of_delay={
        "blocking": True, "impact": "high", "respond_by": (now() + timedelta(hours=2)).isoformat()})
    escalation_id = api.escalate(package).json()["id"]
    STATES[state](escalation_id, reviewer)

    read = selectors.escalation_read_for_token(Escalation.objects.get(pk=escalation_id).pk, hash_token(agent_with_token[1]))

    assert read.wire == orm_wire(escalation_id)
    assert read.agent.id == agent_with_token[0].id
    assert read.status == read.wire["status"]


def test_a_policy_decision_reads_the_same(api, agent_with_token):
    escalation_id = api.escalate(make_package(confidence=0.99)).json()["id"]
    read = selectors.escalation_read_for_token(Escalation.objects.get(pk=escalation_id).pk, hash_token(agent_with_token[1]))
    assert read.wire == orm_wire(escalation_id)
    assert read.wire["decision"]["decided_by"]["type"] == "policy"


def test_the_hot_read_needs_a_live_token_of_the_owner(api, agent_with_token):
    agent, token = agent_with_token
    pk = Escalation.objects.get(pk=api.escalate(make_package()).json()["id"]).pk
    other_token = services.agent_create(name="other").token

    assert selectors.escalation_read_for_token(pk, hash_token(other_token)) is None
    assert selectors.escalation_read_for_token(pk, hash_token("hnd_nope")) is None
    agent.is_active = False
    agent.save()
    assert selectors.escalation_read_for_token(pk, hash_token(token)) is None
    agent.is_active = True
    agent.save()
    services.token_revoke(token=AgentToken.objects.get(agent=agent))
    assert selectors.escalation_read_for_token(pk, hash_token(token)) is None
