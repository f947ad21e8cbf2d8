"""Questions to the agent (issue 14; API.md: awaiting_agent, POST /escalations/{id}/answer,
the `escalation.question` webhook, the reviewer API's /question and /events).

The round trip runs over real HTTP: the agent long-polls the ASGI server (uvicorn on
127.0.0.1), a reviewer asks through the reviewer API, the signed webhook reaches a real
receiver on 127.0.0.1, and the agent answers. The clocks (levels, respond_by, timeouts)
are checked with time-machine."""

import threading
import time
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from escalations import services
from escalations.errors import ClaimedByOther, Conflict
from escalations.inputs import AnswerInput
from escalations.models import Delivery, Escalation, EscalationLevel, Event, Policy
from escalations.tasks import deliver_webhook_task
from reviews.services import reviewer_token_issue
from tests.conftest import AgentClient, make_package, post_package
from tests.test_delivery import verified_json


@pytest.fixture
def review(reviewer):
    """The reviewer API as `reviewer` (Django's test client, a reviewer token)."""
    return AgentClient(reviewer_token_issue(user=reviewer))


def ask(escalation, user, text="Which table did the export write to?"):
    return services.escalation_ask(escalation_id=escalation.pk, user=user, text=text)


@pytest.mark.django_db(transaction=True)
def test_a_question_round_trips_through_webhook_long_poll_and_answer(
    live_server_asgi, agent_with_token, hooked, receiver, reviewer
):
    agent, token = agent_with_token
    agent_http = httpx.Client(
        base_url=live_server_asgi, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    reviewer_http = httpx.Client(
        base_url=live_server_asgi,
        headers={"Authorization": f"Bearer {reviewer_token_issue(user=reviewer)}"},
        timeout=30,
    )
    created = agent_http.post("/api/v1/escalations", json=make_package()).json()
    assert created["question"] is None
    path = f"/api/v1/escalations/{created['id']}"

    def ask_later():
        time.sleep(0.5)
        asked = reviewer_http.post(
            f"/api/v1/review/escalations/{created['id']}/question",
            json={"text": "How many rows does users_old hold?"},
        )
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "awaiting_agent"

    thread = threading.Thread(target=ask_later)
    thread.start()
    started = time.monotonic()
    waited = agent_http.get(path, params={"wait": 20})
    took = time.monotonic() - started
    thread.join()
    # The long-poll answers on the question, not after its 20 s.
    assert waited.status_code == 200
    assert waited.json()["status"] == "awaiting_agent"
    assert took < 5, f"the long-poll took {took:.1f} s"
    question = waited.json()["question"]
    assert question["text"] == "How many rows does users_old hold?"
    assert question["asked_by"] == "alice"
    assert question["asked_at"].endswith("Z")
    # Awaiting the agent, a long-poll answers at once (it is the agent's turn).
    started = time.monotonic()
    assert agent_http.get(path, params={"wait": 20}).json()["status"] == "awaiting_agent"
    assert time.monotonic() - started < 3

    # The webhook: signed, Handoff-Event escalation.question, the escalation with its question.
    delivery = Delivery.objects.get(escalation_id=created["id"])
    deliver_webhook_task(str(delivery.id))
    (request,) = receiver.wait_for(1)
    assert request.header("handoff-event") == "escalation.question"
    body = verified_json(request, agent.signing_secret)
    assert body["event"] == "escalation.question"
    assert body["delivery_id"] == str(delivery.id) == request.header("handoff-delivery")
    assert body["escalation"]["status"] == "awaiting_agent"
    assert body["escalation"]["question"]["text"] == "How many rows does users_old hold?"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    # Its 2xx changes no status (a decision's would mark it resumed).
    assert Escalation.objects.get(pk=created["id"]).status == "awaiting_agent"

    answered = agent_http.post(
        f"{path}/answer",
        json={
            "text": "3 rows, all written by the nightly export.",
            "history": [{"at": timezone.now().isoformat(), "action": "counted rows", "outcome": "ok"}],
            "links": [{"label": "query", "url": "https://example.com/q/1"}],
        },
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "pending"
    assert answered.json()["question"] is None
    assert answered.headers["ETag"]
    assert "Handoff-Budget-Limit" in answered.headers
    again = agent_http.post(f"{path}/answer", json={"text": "Once more"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "No question is open" in again.json()["detail"]

    detail = reviewer_http.get(f"/api/v1/review/escalations/{created['id']}").json()
    assert detail["history"][-1]["action"] == "counted rows"
    assert detail["links"][-1]["url"] == "https://example.com/q/1"
    events = reviewer_http.get(f"/api/v1/review/escalations/{created['id']}/events").json()["items"]
    kinds = [e["kind"] for e in events]
    # alice, who asked, is told of the answer (by e-mail, the default).
    assert kinds == ["created", "question_asked", "question_answered", "notified"]
    assert events[3]["data"] == {"event": "question_answered", "people": ["alice"], "channels": ["email"]}
    assert events[1]["actor"] == "alice"
    assert events[2]["actor"] == agent.name
    assert events[2]["data"]["text"] == "3 rows, all written by the nightly export."
    assert events[2]["data"]["question"]["text"] == "How many rows does users_old hold?"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    agent_http.close()
    reviewer_http.close()


@pytest.mark.django_db
def test_the_answer_is_validated_field_by_field_and_409_without_a_question(api, reviewer):
    escalation = post_package(api)
    path = f"/api/v1/escalations/{escalation.pk}/answer"
    not_asked = api.post_json(path, {"text": "Nobody asked"})
    assert not_asked.status_code == 409
    assert not_asked.json()["type"].endswith("/no-open-question")

    ask(escalation, reviewer)
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    bad = api.post_json(
        path,
        {
            "history": [{"at": "yesterday", "action": "x"}],
            "links": [{"label": "l", "url": "ftp://example.com"}],
        },
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"text", "history.0.at", "links.0.url"} <= fields
    assert api.post_json(path, {"text": "x" * 4001}).json()["errors"][0]["field"] == "text"
    blank = api.post_json(path, {"text": "   "})
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["field"] == "text"
    ahead = api.post_json(path, {"text": "ok", "history": [{"at": future, "action": "later"}]})
    assert ahead.status_code == 422
    assert ahead.json()["errors"] == [{"field": "history.0.at", "message": "must not be in the future"}]
    assert Escalation.objects.get(pk=escalation.pk).status == "awaiting_agent"  # nothing changed

    other = services.agent_create(name="other-agent", domain="default")
    stranger = AgentClient(other.token).post_json(path, {"text": "Not mine"})
    assert stranger.status_code == 404
    assert api.post_json(path, {"text": "Fine now"}).status_code == 200


@pytest.mark.django_db
def test_asking_takes_it_out_of_the_queue_into_the_waiting_tab(api, review, reviewer, other_reviewer):
    escalation = post_package(api)
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    with pytest.raises(ClaimedByOther):
        ask(escalation, reviewer)
    refused = review.post_json(
        f"/api/v1/review/escalations/{escalation.pk}/question", {"text": "Is it safe?"}
    )
    assert refused.status_code == 409
    assert refused.json()["claimed_by"]["name"] == "bob"
    services.escalation_release(escalation_id=escalation.pk, user=other_reviewer)

    blank = review.post_json(f"/api/v1/review/escalations/{escalation.pk}/question", {"text": " "})
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["field"] == "text"
    asked = review.post_json(
        f"/api/v1/review/escalations/{escalation.pk}/question", {"text": "Is it safe?"}
    )
    assert asked.status_code == 201, asked.content
    assert asked.json()["question"]["asked_by"] == "alice"
    twice = review.post_json(
        f"/api/v1/review/escalations/{escalation.pk}/question", {"text": "And now?"}
    )
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/question-open")
    with pytest.raises(Conflict):
        services.escalation_claim(escalation_id=escalation.pk, user=reviewer)

    queue = review.get("/api/v1/review/queue").json()["items"]
    assert str(escalation.pk) not in [e["id"] for e in queue]
    waiting = review.get("/api/v1/review/queue", {"tab": "waiting"}).json()["items"]
    assert [e["id"] for e in waiting] == [str(escalation.pk)]
    assert waiting[0]["question"]["text"] == "Is it safe?"

    # Still open: the run keeps its one open escalation, and a person may still decide it.
    assert api.escalate(make_package()).status_code == 409
    decided = review.post_json(
        f"/api/v1/review/escalations/{escalation.pk}/decision", {"kind": "halt"}
    )
    assert decided.status_code == 201
    assert decided.json()["question"] is None
    late = api.post_json(f"/api/v1/escalations/{escalation.pk}/answer", {"text": "Too late"})
    assert late.status_code == 409


@pytest.mark.django_db
def test_time_waiting_on_the_agent_does_not_count_against_reviewers(api, reviewer):
    """Levels count from creation plus the time waited; respond_by moves on by the wait;
    neither timeouts nor levels act while the agent is being asked."""
    policy = Policy.objects.get(domain="default")
    EscalationLevel.objects.create(policy=policy, level=2, after_minutes=60, priority_boost=10)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        escalation = post_package(
            api,
            timeout_option="shim",
            cost_of_delay={"blocking": True, "impact": "high", "respond_by": (start + timedelta(minutes=50)).isoformat()},
        )
    respond_by = escalation.respond_by
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        ask(escalation, reviewer)
    with time_machine.travel(start + timedelta(minutes=70), tick=False):
        # Past respond_by and past level 2's hour, but the agent has the question.
        assert services.timeouts_apply() == 0
        assert services.levels_advance() == 0
        assert services.priorities_refresh() == 0
    with time_machine.travel(start + timedelta(minutes=70), tick=False):
        answered = services.escalation_answer(
            escalation=Escalation.objects.get(pk=escalation.pk),
            answer=AnswerInput("It writes to users_old."),
        )
    assert answered.status == "pending"
    assert answered.waited_on_agent == timedelta(minutes=60)
    assert answered.respond_by == respond_by + timedelta(minutes=60)
    event = Event.objects.get(escalation=escalation, kind="question_answered")
    assert event.data["waited_seconds"] == 3600
    with time_machine.travel(start + timedelta(minutes=100), tick=False):
        # 100 min after creation, 40 of them with reviewers: not yet level 2, not yet due.
        assert services.levels_advance() == 0
        assert services.timeouts_apply() == 0
    with time_machine.travel(start + timedelta(minutes=121), tick=False):
        assert services.levels_advance() == 1
        assert Escalation.objects.get(pk=escalation.pk).level == 2
        assert services.timeouts_apply() == 1
    assert Escalation.objects.get(pk=escalation.pk).decision.decided_by_type == "timeout"
