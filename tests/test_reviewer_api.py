"""The reviewer API: personal tokens, the queue, the package, claims and decisions."""

import json

import pytest
from django.core.management import call_command
from django.test import Client

from escalations import services
from escalations.models import Decision
from reviews.models import ReviewerToken
from reviews.services import reviewer_token_issue, reviewer_token_revoke
from tests.conftest import make_package

pytestmark = pytest.mark.django_db


class ReviewerClient(Client):
    def __init__(self, token: str) -> None:
        super().__init__(HTTP_AUTHORIZATION=f"Bearer {token}")

    def post_json(self, path: str, data=None):
        return self.post(path, json.dumps(data or {}), content_type="application/json")


@pytest.fixture
def review(reviewer) -> ReviewerClient:
    return ReviewerClient(reviewer_token_issue(user=reviewer))


@pytest.fixture
def review_bob(other_reviewer) -> ReviewerClient:
    return ReviewerClient(reviewer_token_issue(user=other_reviewer))


def test_agent_tokens_get_403_and_unknown_tokens_401(api, db):
    assert api.get("/api/v1/review/queue").status_code == 403
    assert ReviewerClient("hnr_nope").get("/api/v1/review/queue").status_code == 401
    assert Client().get("/api/v1/review/queue").status_code == 401


def test_revoked_reviewer_tokens_are_401(reviewer):
    token = reviewer_token_issue(user=reviewer)
    reviewer_token_revoke(token=ReviewerToken.objects.get(user=reviewer))
    assert ReviewerClient(token).get("/api/v1/review/queue").status_code == 401


def test_tokens_are_stored_hashed(reviewer):
    token = reviewer_token_issue(user=reviewer)
    stored = ReviewerToken.objects.get(user=reviewer)
    assert token not in (stored.token_hash, stored.prefix)
    assert stored.token_hash == ReviewerToken.hash(token)


def test_the_queue_is_open_escalations_in_priority_order_with_cursor_paging(api, review):
    low = api.escalate(make_package(run_id="low", cost_of_delay={"blocking": False, "impact": "low"})).json()
    high = api.escalate(make_package(run_id="high", confidence=0.2)).json()
    mid = api.escalate(make_package(run_id="mid")).json()
    api.escalate(make_package(run_id="auto", confidence=0.99))  # decided by policy: not in the queue

    first = review.get("/api/v1/review/queue?limit=2").json()
    second = review.get(f"/api/v1/review/queue?limit=2&cursor={first['next_cursor']}").json()

    assert [i["id"] for i in first["items"]] == [high["id"], mid["id"]]
    assert [i["id"] for i in second["items"]] == [low["id"]]
    assert second["next_cursor"] is None


def test_queue_filters(api, review):
    api.escalate(make_package(run_id="a", reason="novelty"))
    api.escalate(make_package(run_id="b", domain="code"))
    assert [i["reason"] for i in review.get("/api/v1/review/queue?reason=novelty").json()["items"]] == ["novelty"]
    assert [i["domain"] for i in review.get("/api/v1/review/queue?domain=code").json()["items"]] == ["code"]
    assert review.get("/api/v1/review/queue?cursor=garbage").status_code == 400


def test_the_escalation_carries_the_whole_package_and_the_claim(api, review, reviewer):
    package = make_package(links=[{"label": "PR", "url": "https://example.com/pr/1"}], metadata={"k": "v"})
    escalation_id = api.escalate(package).json()["id"]
    services.escalation_claim(escalation_id=escalation_id, user=reviewer)

    body = review.get(f"/api/v1/review/escalations/{escalation_id}").json()

    assert body["status"] == "claimed"
    assert body["uncertainty"] == package["uncertainty"]
    assert len(body["history"]) == 2 and body["history"][1]["outcome"] == "failed"
    assert [o["key"] for o in body["options"]] == ["update-callers", "shim"]
    assert body["cost_of_delay"]["impact"] == "high"
    assert body["links"] == package["links"]
    assert body["metadata"] == {"k": "v"}
    assert body["claimed_by"]["name"] == "alice"


def test_a_claim_held_by_someone_else_is_409_naming_them(api, review, review_bob):
    escalation_id = api.escalate(make_package()).json()["id"]
    assert review.post(f"/api/v1/review/escalations/{escalation_id}/claim").status_code == 200

    taken = review_bob.post(f"/api/v1/review/escalations/{escalation_id}/claim")
    assert taken.status_code == 409
    assert taken.json()["claimed_by"]["name"] == "alice"
    assert review_bob.post(f"/api/v1/review/escalations/{escalation_id}/release").status_code == 409

    assert review.post(f"/api/v1/review/escalations/{escalation_id}/release").json()["status"] == "pending"
    assert review_bob.post(f"/api/v1/review/escalations/{escalation_id}/claim").json()["claimed_by"]["name"] == "bob"


def test_deciding_answers_201_and_a_second_decision_409_with_the_one_that_stands(api, review, review_bob):
    escalation_id = api.escalate(make_package()).json()["id"]

    decided = review.post_json(
        f"/api/v1/review/escalations/{escalation_id}/decision",
        {"kind": "option", "option": "update-callers", "args": {"paths": ["billing/core"]}},
    )
    late = review_bob.post_json(f"/api/v1/review/escalations/{escalation_id}/decision", {"kind": "halt"})

    assert decided.status_code == 201
    assert decided.json()["decision"]["args"] == {"paths": ["billing/core"]}
    assert late.status_code == 409
    assert late.json()["decision"]["decided_by"]["name"] == "alice"
    assert Decision.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "option", "option": "nope"}, "option"),
        ({"kind": "option"}, "option"),
        ({"kind": "option", "option": "shim", "args": [1, 2]}, "args"),
        ({"kind": "instruction"}, "instruction"),
        ({"kind": "instruction", "instruction": "   "}, "instruction"),
        ({"kind": "approve"}, "kind"),
    ],
)
def test_invalid_decisions_are_422(api, review, body, field):
    escalation_id = api.escalate(make_package()).json()["id"]
    response = review.post_json(f"/api/v1/review/escalations/{escalation_id}/decision", body)
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["errors"]}
    assert Decision.objects.count() == 0


def test_reviewer_token_command_prints_the_token_on_its_last_line(reviewer, capsys):
    call_command("reviewer_token", "alice")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert ReviewerClient(token).get("/api/v1/review/queue").status_code == 200


def test_agent_create_prints_one_json_line(db, capsys):
    from tests.conftest import AgentClient

    call_command("agent_create", "deploy-bot", "--domain", "code", "--resume-url", "https://agent.example/resume",
                 "--budget", "7")
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    data = json.loads(out)
    assert set(data) == {"agent", "token", "signing_secret"}
    assert data["agent"] == "deploy-bot"
    response = AgentClient(data["token"]).get("/api/v1/decisions")
    assert response.status_code == 200
    assert response["Handoff-Budget-Limit"] == "7"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["x", "--domain", "nope"], "Unknown domain"), (["x", "--resume-url", "ftp://x"], r"http\(s\) URL")],
)
def test_agent_create_refuses_bad_arguments(db, args, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message):
        call_command("agent_create", *args)
