"""One definition of a live agent token (AgentToken.objects.live: the hash matches, the token
is not revoked, its agent is active), and every place that authenticates an agent answers by it:
the API's bearer check (services.agent_for_token), both long-poll lookups, and the hot read's
hand-written SQL (selectors.AGENT_READ_SQL), which is held equal to it here."""

import uuid

import pytest

from escalations import selectors, services
from escalations.auth import AgentBearer
from escalations.models import AgentToken, Escalation, hash_token
from escalations.transport import longpoll
from tests.conftest import make_package

pytestmark = pytest.mark.django_db


def live(agent, token):
    return token


def revoked(agent, token):
    services.token_revoke(token=AgentToken.objects.get(agent=agent))
    return token


def inactive_agent(agent, token):
    agent.is_active = False
    agent.save(update_fields=["is_active"])
    return token


def wrong_hash(agent, token):
    return token + "x"


def another_agents_token(agent, token):
    return services.agent_create(name="another").token


CASES = {
    "live": (live, True),
    "revoked": (revoked, False),
    "inactive agent": (inactive_agent, False),
    "wrong hash": (wrong_hash, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_lookup_answers_by_the_one_definition(api, agent_with_token, case):
    agent, token = agent_with_token
    escalation_id = uuid.UUID(api.escalate(make_package()).json()["id"])
    make, expected = CASES[case]
    token = make(agent, token)

    assert AgentToken.objects.live(token).exists() is expected
    expected_agent = agent if expected else None
    assert services.agent_for_token(token) == expected_agent
    assert AgentBearer().authenticate(None, token) == expected_agent
    assert longpoll._agent_id(token) == (agent.id if expected else None)
    target = longpoll._target(longpoll.Wait(token, 5, escalation_id=escalation_id))
    assert (target is not None) is expected
    read = selectors.escalation_read_for_token(Escalation.objects.get(pk=escalation_id).pk, hash_token(token))
    assert (read is not None) is expected


def test_a_live_token_of_another_agent_reads_nothing_of_this_one(api, agent_with_token):
    agent, token = agent_with_token
    escalation_id = uuid.UUID(api.escalate(make_package()).json()["id"])
    other = another_agents_token(agent, token)

    assert AgentToken.objects.live(other).exists()
    assert longpoll._target(longpoll.Wait(other, 5, escalation_id=escalation_id)) is None
    pk = Escalation.objects.get(pk=escalation_id).pk
    assert selectors.escalation_read_for_token(pk, hash_token(other)) is None
