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


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("tier=9", ["tier"]),
        ("reason=nope", ["reason"]),
        ("agent=nobody", ["agent"]),
        ("domain=nowhere", ["domain"]),
        ("blocking=maybe", ["blocking"]),
        ("overdue=yes", ["overdue"]),
        ("claimed=bob", ["claimed"]),
        ("impact=huge", ["impact"]),
        ("status=withdrawn", ["status"]),
        ("tab=nonsense&sort=sideways", ["tab", "sort"]),
        ("teir=3", ["teir"]),
        ("tier=3&tier=4", ["tier"]),
        ("limit=0", ["limit"]),
        ("cursor=not%20a%20cursor", ["cursor"]),
    ],
)
def test_an_invalid_or_unknown_filter_is_400_never_ignored(api, review, query, fields):
    """The filters were a second, smaller set: unknown values (blocking=maybe) and unknown
    names (teir=3) were dropped without a word, answering a wider list than asked for."""
    api.escalate(make_package())
    response = review.get(f"/api/v1/review/queue?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == fields


def test_the_queue_takes_the_dashboards_filters_tabs_and_sorts(api, review, reviewer):
    first = api.escalate(make_package(run_id="a", title="Rotate the signing keys")).json()
    second = api.escalate(make_package(
        run_id="b", title="Pick a cache", cost_of_delay={"blocking": False, "impact": "low"},
    )).json()
    services.escalation_claim(escalation_id=second["id"], user=reviewer)

    def ids(query: str) -> list[str]:
        response = review.get(f"/api/v1/review/queue?{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids("") == [first["id"], second["id"]]
    assert ids("q=signing") == [first["id"]]
    assert ids("impact=low") == [second["id"]]
    assert ids("blocking=false") == [second["id"]]
    assert ids("claimed=me") == [second["id"]]
    assert ids("tab=mine") == [second["id"]]
    assert ids("sort=age") == [first["id"], second["id"]]
    assert ids("agent=agent-007&tier=3&blocking=") == [first["id"], second["id"]]  # empty: any


def test_a_cursor_belongs_to_its_sort(api, review):
    for run in "abc":
        api.escalate(make_package(run_id=run))
    page = review.get("/api/v1/review/queue?limit=1&sort=age").json()
    assert review.get(f"/api/v1/review/queue?limit=1&sort=age&cursor={page['next_cursor']}").status_code == 200
    assert review.get(f"/api/v1/review/queue?limit=1&cursor={page['next_cursor']}").status_code == 400


def test_a_cursor_nested_too_deeply_is_400_not_500(review):
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    response = review.get(f"/api/v1/review/queue?cursor={cursor}")
    assert response.status_code == 400, response.content


def test_the_escalation_carries_the_whole_package_and_the_claim(api, review, reviewer):
    package = make_package(links=[{"label": "PR", "url": "https://example.com/pr/1"}], metadata={"k": "v"})
    escalation_id = api.escalate(package).json()["id"]
    services.escalation_claim(escalation_id=escalation_id, user=reviewer)

    body = review.get(f"/api/v1/review/escalations/{escalation_id}").json()

    assert body["status"] == "claimed"
    assert body["uncertainty"] == package["uncertainty"]
    assert len(body["history"]) == 2
    assert body["history"][1]["outcome"] == "failed"
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


def test_deciding_over_someone_elses_live_claim_is_409_naming_them_unless_override_claim(
    api, review, review_bob
):
    """The "decide anyway" rule lived only in the dashboard's form: the API decided over
    another reviewer's live claim without asking."""
    escalation_id = api.escalate(make_package()).json()["id"]
    assert review.post(f"/api/v1/review/escalations/{escalation_id}/claim").status_code == 200
    url = f"/api/v1/review/escalations/{escalation_id}/decision"

    refused = review_bob.post_json(url, {"kind": "halt"})
    assert refused.status_code == 409, refused.content
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["claimed_by"]["name"] == "alice"
    assert "alice" in refused.json()["detail"]
    assert not Decision.objects.exists()

    decided = review_bob.post_json(url, {"kind": "halt", "override_claim": True})
    assert decided.status_code == 201, decided.content
    assert decided.json()["decision"]["decided_by"]["name"] == "bob"


def test_the_claims_holder_decides_without_override_claim(api, review):
    escalation_id = api.escalate(make_package()).json()["id"]
    review.post(f"/api/v1/review/escalations/{escalation_id}/claim")
    decided = review.post_json(f"/api/v1/review/escalations/{escalation_id}/decision", {"kind": "halt"})
    assert decided.status_code == 201, decided.content


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


def test_edited_args_beyond_a_double_are_422_naming_the_field(api, review):
    """{"n": 1e999} read as infinity, and args were stored as the JSON encoder wrote it."""
    escalation_id = api.escalate(make_package()).json()["id"]
    body = '{"kind": "option", "option": "update-callers", "args": {"paths": [], "n": 1e999}}'
    response = review.post(
        f"/api/v1/review/escalations/{escalation_id}/decision", body, content_type="application/json"
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["args.n"]
    assert Decision.objects.count() == 0


def test_args_the_package_could_carry_can_be_decided_with(api, review):
    """The 16 KiB limit was measured twice: compact JSON in the schema, with spaces after
    every comma and colon in the decision service, which refused the agent's own args."""
    args = {"paths": ["a" * 7] * 1600}  # ~16,000 bytes compact, ~17,600 with spaces
    package = make_package()
    package["options"][0]["args"] = args
    created = api.escalate(package)
    assert created.status_code == 201, created.content
    response = review.post_json(
        f"/api/v1/review/escalations/{created.json()['id']}/decision",
        {"kind": "option", "option": package["options"][0]["key"], "args": args},
    )
    assert response.status_code == 201, response.content


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
