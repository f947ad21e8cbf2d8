"""The client against the real server (started by conftest.py), over real HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest

from handoff_client import (
    AsyncHandoff,
    Conflict,
    Handoff,
    NotFound,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
    requires_approval,
    verify_webhook,
)

pytestmark = pytest.mark.live

UNCERTAINTY = (
    "billing_legacy received 3 writes last week, although the migration plan says nothing "
    "uses it any more; dropping it loses those rows for good."
)


def package(run_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    data = {
        "run_id": run_id or f"run-{uuid.uuid4().hex[:10]}",
        "title": "Drop the legacy billing table?",
        "uncertainty": UNCERTAINTY,
        "reason": "irreversible_action",
        "confidence": 0.55,
        "history": [
            {"at": datetime.now(UTC), "action": "Listed unused tables", "outcome": "ok"},
            {
                "at": datetime.now(UTC),
                "action": "Counted recent writes",
                "outcome": "info",
                "detail": "3 rows since 2026-11-14",
            },
        ],
        "options": [
            {
                "key": "drop",
                "label": "Drop the table",
                "irreversible": True,
                "recommended": True,
                "args": {"table": "billing_legacy"},
            },
            {"key": "keep", "label": "Keep it and report the writers"},
        ],
        "cost_of_delay": {"blocking": True, "impact": "medium", "blocked_tasks": 2},
        "action": {"name": "drop_table", "irreversible": True},
    }
    data.update(overrides)
    return data


@pytest.fixture
def client(live_server):
    base_url, token, _ = live_server
    with Handoff(base_url, token) as handoff:
        yield handoff


def test_escalate_is_idempotent(client):
    body = package()
    key = f"test-{uuid.uuid4()}"
    first = client.escalate(body, idempotency_key=key)
    assert first.status == "pending" and first.is_open
    assert first.tier is not None and first.tier >= 3  # irreversible: a human decides
    assert first.url.endswith(first.id)
    assert first.decision is None
    again = client.escalate(body, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(Conflict) as caught:
        client.escalate(body, title="Another body", idempotency_key=key)
    assert caught.value.status == 409
    client.withdraw(first)


def test_one_open_escalation_per_run(client):
    first = client.escalate(package())
    with pytest.raises(Conflict) as caught:
        client.escalate(package(first.run_id))
    assert caught.value.open_escalation is not None
    assert caught.value.open_escalation.id == first.id
    client.withdraw(first)


def test_invalid_packages_name_their_fields(client):
    with pytest.raises(ValidationFailed) as caught:
        client.escalate(package(uncertainty="I'm stuck", options=[]))
    fields = {e.field for e in caught.value.errors}
    assert "uncertainty" in fields and "options" in fields
    assert caught.value.status == 422
    assert caught.value.type.startswith("http")


def test_wait_returns_the_reviewers_decision(client, reviewer):
    escalation = client.escalate(package())
    threading.Timer(
        1.5,
        reviewer.decide,
        args=(escalation.id,),
        kwargs={
            "option": "drop",
            "args": {"table": "billing_legacy_v1"},
            "instruction": "Take a dump first.",
        },
    ).start()
    started = time.monotonic()
    decided = client.wait(escalation, timeout=30)
    assert time.monotonic() - started >= 1.0
    assert decided.status in ("decided", "resumed")  # resumed: its webhook was already delivered
    assert decided.decision.kind == "option"
    assert decided.decision.option == "drop"
    assert decided.decision.args == {"table": "billing_legacy_v1"}
    assert decided.decision.instruction == "Take a dump first."
    assert decided.decision.decided_by.type == "human"
    resumed = client.ack(decided)
    assert resumed.status == "resumed"
    assert client.ack(decided).status == "resumed"  # idempotent
    with pytest.raises(Conflict):
        client.withdraw(decided)


def test_a_question_comes_back_through_wait_and_the_answer_returns_it(client, reviewer):
    escalation = client.escalate(package())
    threading.Timer(1.0, reviewer.ask, args=(escalation.id, "How many rows, exactly?")).start()
    started = time.monotonic()
    waiting = client.wait(escalation, timeout=30)
    assert time.monotonic() - started < 10  # the long-poll answers on the question
    assert waiting.status == "awaiting_agent"
    assert waiting.is_open and waiting.awaiting_agent and waiting.needs_agent
    assert waiting.question is not None
    assert waiting.question.text == "How many rows, exactly?"
    assert waiting.question.asked_at is not None
    assert client.wait(waiting) is waiting  # already the agent's turn: no request
    answered = client.answer(
        waiting,
        "Three rows, all written by the nightly export.",
        history=[{"at": datetime.now(UTC), "action": "counted rows again", "outcome": "ok"}],
    )
    assert answered.status == "pending"
    assert answered.question is None
    with pytest.raises(Conflict):
        client.answer(answered, "Nobody asked")
    with pytest.raises(ValidationFailed) as caught:
        client.answer(answered, "")
    assert {e.field for e in caught.value.errors} == {"text"}
    client.withdraw(answered)


def test_wait_times_out_while_open(client):
    escalation = client.escalate(package())
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(escalation.id, timeout=2)
    assert 1.5 <= time.monotonic() - started < 10
    assert caught.value.escalation.is_open
    with pytest.raises(Conflict):
        client.ack(escalation)  # nothing decided yet
    withdrawn = client.withdraw(escalation)
    assert withdrawn.status == "withdrawn"
    assert client.wait(escalation, timeout=5).status == "withdrawn"


def test_not_found_and_unauthorized(client, live_server, other_agent):
    escalation = client.escalate(package())
    with Handoff(other_agent.base_url, other_agent.token) as other, pytest.raises(NotFound):
        other.get(escalation.id)
    with Handoff(live_server.base_url, "hnd_not-a-token") as stranger:
        with pytest.raises(Unauthorized):
            stranger.get(escalation.id)
    with pytest.raises(NotFound):
        client.get(str(uuid.uuid4()))
    client.withdraw(escalation)


def test_decisions_feed(client, reviewer):
    everything = list(client.decisions())
    cursor = client.decisions()
    for _ in cursor:
        pass
    escalation = client.escalate(package())
    reviewer.decide(escalation.id, kind="instruction", instruction="Ask the billing team.")
    feed = client.decisions(after=cursor.cursor)
    new = list(feed)
    assert [e.id for e in new] == [escalation.id]
    assert new[0].decision.kind == "instruction"
    assert feed.cursor != cursor.cursor
    assert len(list(client.decisions())) == len(everything) + 1


def test_decisions_feed_long_polls(client, reviewer):
    caught_up = client.decisions()
    for _ in caught_up:
        pass
    escalation = client.escalate(package())
    threading.Timer(1.0, reviewer.decide, args=(escalation.id,), kwargs={"kind": "halt"}).start()
    feed = client.decisions(after=caught_up.cursor, wait=10)
    started = time.monotonic()
    first = next(feed)
    assert first.id == escalation.id and first.decision.kind == "halt"
    assert time.monotonic() - started < 10


def test_gate(client):
    verdict = client.gate(action={"name": "drop_table", "irreversible": True}, confidence=0.9)
    assert verdict.verdict in {"proceed", "flag", "escalate", "halt"}
    assert verdict.tier >= 3
    assert verdict.reasons


def test_webhook_signature_verifies(client, reviewer, live_server, webhooks):
    escalation = client.escalate(package())
    reviewer.decide(escalation.id, option="keep")
    headers, body = webhooks.for_escalation(escalation.id)
    event = verify_webhook(headers, body, live_server.secret)
    assert event["event"] == "escalation.decided"
    assert event["delivery_id"] == headers["Handoff-Delivery"]
    assert event["escalation"]["decision"]["option"] == "keep"
    with pytest.raises(ValueError):
        verify_webhook(headers, body + b" ", live_server.secret)
    deadline = time.monotonic() + 15
    while client.get(escalation).status != "resumed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get(escalation).status == "resumed"  # the 2xx marked it resumed


def test_requires_approval_runs_with_the_approved_args(client, reviewer):
    run_id = f"run-{uuid.uuid4().hex[:10]}"
    dropped: list[tuple[str, bool]] = []

    @requires_approval(
        client,
        title="Drop a table",
        uncertainty=UNCERTAINTY,
        confidence=0.5,
        run_id=run_id,
        timeout=30,
    )
    def drop_table(table: str, cascade: bool = False) -> str:
        dropped.append((table, cascade))
        return "dropped"

    reviewer.decide_later(
        run_id, option="proceed", args={"table": "billing_legacy", "cascade": True}
    )
    assert drop_table("billing_legacy") == "dropped"
    assert dropped == [("billing_legacy", True)]


async def test_async_client(live_server, reviewer):
    base_url, token, _ = live_server
    async with AsyncHandoff(base_url, token) as client:
        escalation = await client.escalate(package())
        threading.Timer(
            1.0, reviewer.decide, args=(escalation.id,), kwargs={"kind": "take_over"}
        ).start()
        decided = await client.wait(escalation, timeout=30)
        assert decided.decision.kind == "take_over"
        assert (await client.ack(decided)).status == "resumed"


# -- the adapters against the real server


class MailState(TypedDict, total=False):
    to: str
    sent_to: str | None
    note: str | None


def test_langgraph_graph_pauses_escalates_and_resumes(client, reviewer):
    pytest.importorskip("langgraph")
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.graph import START, StateGraph
    from langgraph.types import interrupt

    from handoff_client.langgraph import escalate_interrupt, resume_command

    def send_email(state: MailState) -> MailState:
        request = {
            "action_request": {"action": "send_email", "args": {"to": state["to"]}},
            "config": {
                "allow_accept": True,
                "allow_edit": True,
                "allow_respond": True,
                "allow_ignore": True,
            },
            "description": "The address comes from a ticket closed two years ago.",
        }
        response = interrupt([request])[0]
        if response["type"] in ("accept", "edit"):
            return {"sent_to": response["args"]["args"]["to"]}
        return {"note": str(response["args"])}

    builder = StateGraph(MailState)
    builder.add_node("send_email", send_email)
    builder.add_edge(START, "send_email")
    graph = builder.compile(checkpointer=MemorySaver())
    thread = f"thread-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    paused = graph.invoke({"to": "old@example.com"}, config)
    (pending,) = paused["__interrupt__"]

    reviewer.decide_later(thread, option="accept", args={"to": "current@example.com"})
    decided = escalate_interrupt(client, pending, run_id=thread, confidence=0.5, timeout=30)
    final = graph.invoke(resume_command(pending, decided), config)
    assert final["sent_to"] == "current@example.com"
    assert client.get(decided[0]).status == "resumed"


async def test_openai_agents_run_pauses_escalates_and_resumes(live_server, reviewer):
    pytest.importorskip("agents")
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.testing import ScriptedModel, assistant_message, function_call

    from handoff_client.openai_agents import areview

    set_tracing_disabled(True)
    paid: list[str] = []

    @function_tool(needs_approval=True)
    def pay_invoice(invoice: str) -> str:
        """Pay an invoice; money leaves the account."""
        paid.append(invoice)
        return "paid"

    model = ScriptedModel(
        [
            [function_call("pay_invoice", {"invoice": "INV-7"}, call_id="c1")],
            [assistant_message("done")],
        ]
    )
    agent = Agent(name="payer", model=model, tools=[pay_invoice])
    result = await Runner.run(agent, "pay INV-7")
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    reviewer.decide_later(f"{run_id}/c1", option="reject", instruction="Wait for the PO.")
    async with AsyncHandoff(live_server.base_url, live_server.token) as client:
        state = await areview(client, result.to_state(), run_id=run_id, confidence=0.6, timeout=30)
    final = await Runner.run(agent, state)
    assert paid == [] and final.final_output == "done"
    output = next(i for i in model.last_call.input if i.get("type") == "function_call_output")
    assert output["output"] == "Wait for the PO."


def test_long_poll_answers_304_for_the_current_etag(client, live_server):
    import httpx

    escalation = client.escalate(package())
    url = f"{live_server.base_url}/api/v1/escalations/{escalation.id}"
    auth = {"Authorization": f"Bearer {live_server.token}"}
    first = httpx.get(url, headers=auth)
    assert first.status_code == 200 and first.headers.get("etag")
    assert first.headers.get("handoff-budget-limit") is not None
    started = time.monotonic()
    again = httpx.get(
        url,
        params={"wait": 1},
        headers={**auth, "If-None-Match": first.headers["etag"]},
        timeout=10,
    )
    assert again.status_code == 304
    assert time.monotonic() - started >= 0.9  # it did wait
    client.withdraw(escalation)
