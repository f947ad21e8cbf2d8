"""Polling, ETags, the decisions feed, ack, withdraw and the gate."""

import pytest

from escalations import services
from escalations.models import Decision, Escalation, GateCheck
from tests.conftest import make_package

pytestmark = pytest.mark.django_db


def decide(escalation_id, user, kind="option", option="shim", **kwargs):
    return services.escalation_decide(
        escalation_id=escalation_id,
        request=services.DecisionRequest(kind=kind, option=option if kind == "option" else None, **kwargs),
        user=user,
    )


def test_get_answers_the_escalation_with_an_etag(api):
    created = api.escalate(make_package()).json()
    response = api.get(f"/api/v1/escalations/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response["ETag"].startswith('"')
    assert response["Handoff-Budget-Limit"] == "50"
    assert response["Handoff-Budget-Remaining"] == "49"


BUDGET = ("Handoff-Budget-Limit", "Handoff-Budget-Used", "Handoff-Budget-Remaining")


def test_every_answer_to_an_agent_carries_its_budget(api, agent):
    """API.md: Limit, Used and Remaining on every answer to an agent, errors included."""
    created = api.escalate(make_package())
    escalation_id = created.json()["id"]
    answers = {
        "create": created,
        "get": api.get(f"/api/v1/escalations/{escalation_id}"),
        "304": api.get(f"/api/v1/escalations/{escalation_id}", HTTP_IF_NONE_MATCH=created["ETag"]),
        "open run 409": api.escalate(make_package()),
        "ack 409": api.post(f"/api/v1/escalations/{escalation_id}/ack"),
        "withdraw": api.post(f"/api/v1/escalations/{escalation_id}/withdraw"),
        "decisions": api.get("/api/v1/decisions"),
        "bad query 400": api.get("/api/v1/decisions?limit=0"),
        "gate": api.post_json("/api/v1/gate", {"confidence": 0.5}),
        "422": api.post_json("/api/v1/gate", {"confidence": 2}),
        "415": api.post("/api/v1/gate", "{}", content_type="text/plain"),
        "404": api.post("/api/v1/escalations/00000000-0000-0000-0000-000000000000/ack"),
    }
    for name, response in answers.items():
        assert [response.get(h) for h in BUDGET] == ["50", "1", "49"], name


def test_if_none_match_answers_304_until_it_changes(api, reviewer):
    escalation_id = api.escalate(make_package()).json()["id"]
    etag = api.get(f"/api/v1/escalations/{escalation_id}")["ETag"]

    not_modified = api.get(f"/api/v1/escalations/{escalation_id}", HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified["ETag"] == etag
    assert not_modified["Handoff-Budget-Remaining"] == "49"

    decide(escalation_id, reviewer)
    changed = api.get(f"/api/v1/escalations/{escalation_id}", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag


def test_a_human_decision_is_what_the_agent_reads(api, reviewer):
    escalation_id = api.escalate(make_package()).json()["id"]
    decide(escalation_id, reviewer, option="update-callers", args={"paths": ["billing/core"]},
           instruction="Leave billing/legacy alone.")

    body = api.get(f"/api/v1/escalations/{escalation_id}").json()
    assert body["status"] == "decided"
    decision = body["decision"]
    assert decision["kind"] == "option"
    assert decision["option"] == "update-callers"
    assert decision["args"] == {"paths": ["billing/core"]}
    assert decision["instruction"] == "Leave billing/legacy alone."
    assert decision["decided_by"] == {"type": "human", "name": "alice"}
    assert decision["decided_at"].endswith("Z")


def test_an_option_keeps_its_args_when_the_reviewer_does_not_edit_them(api, reviewer):
    escalation_id = api.escalate(make_package()).json()["id"]
    decide(escalation_id, reviewer, option="update-callers")
    assert api.get(f"/api/v1/escalations/{escalation_id}").json()["decision"]["args"] == {"paths": ["billing/"]}


@pytest.mark.parametrize(("kind", "extra"), [("instruction", {"instruction": "Ask the billing team first."}),
                                             ("take_over", {}), ("halt", {})])
def test_other_decision_kinds(api, reviewer, kind, extra):
    escalation_id = api.escalate(make_package()).json()["id"]
    decide(escalation_id, reviewer, kind=kind, **extra)
    decision = api.get(f"/api/v1/escalations/{escalation_id}").json()["decision"]
    assert decision["kind"] == kind
    assert decision["option"] is None
    assert decision["args"] is None
    escalation = Escalation.objects.select_related("run").get(pk=escalation_id)
    expected_run = {"instruction": "active", "take_over": "taken_over", "halt": "halted"}[kind]
    assert escalation.run.status == expected_run


def test_the_decisions_feed_pages_oldest_first(api, reviewer):
    ids = [api.escalate(make_package(run_id=f"run-{i}")).json()["id"] for i in range(5)]
    for escalation_id in reversed(ids):
        decide(escalation_id, reviewer)

    first = api.get("/api/v1/decisions?limit=2").json()
    assert [item["id"] for item in first["items"]] == list(reversed(ids))[:2]
    second = api.get(f"/api/v1/decisions?limit=2&after={first['next_cursor']}").json()
    third = api.get(f"/api/v1/decisions?limit=2&after={second['next_cursor']}").json()
    rest = api.get(f"/api/v1/decisions?after={third['next_cursor']}").json()

    seen = [i["id"] for page in (first, second, third) for i in page["items"]]
    assert seen == list(reversed(ids))
    assert rest == {"items": [], "next_cursor": third["next_cursor"]}
    assert all(item["decision"]["decided_by"]["name"] == "alice" for item in first["items"])


def test_the_feed_includes_policy_decisions_and_only_this_agents(api, reviewer):
    from tests.conftest import AgentClient

    other = AgentClient(services.agent_create(name="other").token)
    other.escalate(make_package(confidence=0.99))
    mine = api.escalate(make_package(confidence=0.99)).json()

    items = api.get("/api/v1/decisions").json()["items"]
    assert [item["id"] for item in items] == [mine["id"]]
    assert items[0]["decision"]["decided_by"]["type"] == "policy"


def test_feed_sequence_numbers_are_per_agent_and_gapless(api, reviewer):
    for i in range(3):
        api.escalate(make_package(run_id=f"r{i}", confidence=0.99))
    assert list(Decision.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]


def test_ack_marks_resumed_and_is_idempotent(api, reviewer):
    escalation_id = api.escalate(make_package()).json()["id"]
    conflict = api.post(f"/api/v1/escalations/{escalation_id}/ack")
    assert conflict.status_code == 409

    decide(escalation_id, reviewer)
    first = api.post(f"/api/v1/escalations/{escalation_id}/ack")
    again = api.post(f"/api/v1/escalations/{escalation_id}/ack")
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == again.json()["status"] == "resumed"
    events = Escalation.objects.get(pk=escalation_id).events.filter(kind="resumed")
    assert events.count() == 1


def test_withdraw_closes_an_open_escalation_and_is_idempotent(api):
    escalation_id = api.escalate(make_package()).json()["id"]
    first = api.post(f"/api/v1/escalations/{escalation_id}/withdraw")
    again = api.post(f"/api/v1/escalations/{escalation_id}/withdraw")
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == "withdrawn"
    with pytest.raises(services.AlreadyDecided):
        decide(escalation_id, None)


def test_withdraw_after_a_decision_is_409(api, reviewer):
    escalation_id = api.escalate(make_package()).json()["id"]
    decide(escalation_id, reviewer)
    response = api.post(f"/api/v1/escalations/{escalation_id}/withdraw")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert Escalation.objects.get(pk=escalation_id).status == "decided"


def test_ack_of_a_withdrawn_escalation_is_409(api):
    escalation_id = api.escalate(make_package()).json()["id"]
    api.post(f"/api/v1/escalations/{escalation_id}/withdraw")
    assert api.post(f"/api/v1/escalations/{escalation_id}/ack").status_code == 409


@pytest.mark.parametrize(
    ("body", "verdict", "tier", "reason"),
    [
        ({"confidence": 0.95}, "proceed", 1, "confidence 0.95"),
        ({"confidence": 0.75}, "flag", 2, "below autonomous"),
        ({"confidence": 0.55}, "escalate", 3, "below 0.70"),
        ({"confidence": 0.2}, "halt", 4, "halt"),
        ({"confidence": 0.99, "action": {"name": "drop table", "irreversible": True}}, "escalate", 3,
         "irreversible action needs approval"),
        ({"confidence": 0.99, "attempts": 3}, "escalate", 3, "retry cap"),
        ({"confidence": 0.99, "novel": True}, "escalate", 3, "novel situation"),
        ({"confidence": 0.99, "action": {"name": "refactor", "planned_scope": 3, "actual_scope": 9}}, "escalate", 3,
         "scope 9 exceeds planned 3"),
        ({"confidence": 0.86, "domain": "code"}, "proceed", 1, "0.86"),
    ],
)
def test_gate_answers_from_the_policy_with_reasons(api, body, verdict, tier, reason):
    response = api.post_json("/api/v1/gate", body)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["verdict"], answer["tier"]) == (verdict, tier)
    assert any(reason in r for r in answer["reasons"]), answer["reasons"]
    assert answer["policy"] == body.get("domain", "default")
    assert response["Handoff-Budget-Limit"] == "50"


def test_every_gate_call_is_counted(api, agent):
    for _ in range(3):
        api.post_json("/api/v1/gate", {"confidence": 0.9, "run_id": "r-1"})
    assert GateCheck.objects.filter(agent=agent, run_id="r-1", verdict="proceed").count() == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "confidence"), ({"confidence": 2}, "confidence"), ({"confidence": 0.5, "domain": "nope"}, "domain"),
     ({"confidence": 0.5, "novel": "yes"}, "novel"), ({"confidence": 0.5, "action": {"irreversible": True}}, "action.name")],
)
def test_gate_validates_fields(api, body, field):
    response = api.post_json("/api/v1/gate", body)
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["errors"]}


def test_openapi_document_describes_every_endpoint(api):
    spec = api.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/v1/escalations", "/api/v1/escalations/{escalation_id}", "/api/v1/decisions",
                 "/api/v1/escalations/{escalation_id}/ack", "/api/v1/escalations/{escalation_id}/withdraw",
                 "/api/v1/gate", "/api/v1/review/queue", "/api/v1/review/escalations/{escalation_id}/decision"):
        assert path in paths, sorted(paths)
    assert "EscalationIn" in spec["components"]["schemas"]
    assert api.get("/api/v1/docs").status_code == 200


def test_ack_racing_the_webhook_answers_resumed(api, reviewer):
    """The agent read `decided`; the webhook resumed it before the ack landed."""
    escalation_id = api.escalate(make_package()).json()["id"]
    decide(escalation_id, reviewer)
    stale = Escalation.objects.select_related("agent").get(pk=escalation_id)
    Escalation.objects.filter(pk=escalation_id).update(status="resumed")

    assert services.escalation_acknowledge(escalation=stale).status == "resumed"


def test_openapi_documents_what_conflicts_carry(api):
    problem = api.get("/api/v1/openapi.json").json()["components"]["schemas"]["ProblemOut"]["properties"]
    assert {"errors", "open_escalation", "escalation", "decision", "claimed_by"} <= set(problem)
