"""The pydantic-ai adapter with the real pydantic-ai: deferred tool calls that need approval
(`requires_approval=True`), models from pydantic-ai's own test kit (TestModel,
FunctionModel: no provider, no network), decided by a reviewer on the real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent, DeferredToolRequests, ToolApproved, ToolDenied
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from handoff_client import Escalation, Halted, Handoff
from handoff_client.pydantic_ai import package_for, result_for, review
from stub import decided_json

BRANCHES = ["spike/graphql", "feature/dark-mode"]


class Janitor:
    """An agent with one tool that needs approval, on a FunctionModel that calls it once and
    then reports what the tool answered (what a model would read)."""

    def __init__(self) -> None:
        self.deleted: list[list[str]] = []
        self.read: list[str] = []
        self.model_calls = 0
        self.agent = Agent(FunctionModel(self.respond), output_type=[str, DeferredToolRequests])

        @self.agent.tool_plain(requires_approval=True)
        def delete_branches(branches: list[str]) -> str:
            """Delete remote branches for good."""
            self.deleted.append(branches)
            return f"deleted {', '.join(branches)}"

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.model_calls += 1
        answers = [
            part
            for message in messages
            for part in getattr(message, "parts", [])
            if isinstance(part, ToolReturnPart | RetryPromptPart)
        ]
        if not answers:
            return ModelResponse(
                parts=[
                    ToolCallPart("delete_branches", {"branches": BRANCHES}, tool_call_id="call-1")
                ]
            )
        self.read.append(str(answers[-1].content))
        return ModelResponse(parts=[TextPart(f"done: {answers[-1].content}")])


def decided(option: str | None = None, **kwargs: Any) -> Escalation:
    return Escalation.from_dict(decided_json(option, **kwargs))


def test_package_and_results_from_a_test_model_run():
    agent = Agent(TestModel(), output_type=[str, DeferredToolRequests])

    @agent.tool_plain(requires_approval=True)
    def pay_invoice(invoice: str, amount: int) -> str:
        return f"paid {invoice}"

    requests = agent.run_sync("pay it").output
    assert isinstance(requests, DeferredToolRequests)
    (call,) = requests.approvals
    package = package_for(requests, call, run_id="run-1", confidence=0.7, title="Pay?")
    assert package["run_id"] == f"run-1/{call.tool_call_id}"
    assert package["title"] == "Pay?"
    approve, deny = package["options"]
    assert approve["key"] == "approve" and approve["recommended"] and approve["irreversible"]
    assert set(approve["args"]) == {"invoice", "amount"}
    assert deny["key"] == "deny"
    args = approve["args"]
    assert isinstance(result_for(requests, call, decided("approve", args=args)), ToolApproved)
    assert result_for(requests, call, decided("approve", args=args)).override_args is None
    edited = result_for(requests, call, decided("approve", args={**args, "amount": 1}))
    assert edited == ToolApproved(override_args={**args, "amount": 1})
    denied = result_for(requests, call, decided("deny", instruction="Not this month."))
    assert denied == ToolDenied("Not this month.")
    told = result_for(requests, call, decided(kind="instruction", instruction="Ask finance."))
    assert isinstance(told, ToolDenied) and "Ask finance." in told.message
    with pytest.raises(Halted):
        result_for(requests, call, decided(kind="halt"))


@pytest.fixture
def client(live_server):
    base_url, token, _ = live_server
    with Handoff(base_url, token) as handoff:
        yield handoff


def paused(janitor: Janitor) -> tuple[Any, DeferredToolRequests]:
    first = janitor.agent.run_sync("clean up the stale branches")
    assert isinstance(first.output, DeferredToolRequests)
    assert janitor.deleted == []  # nothing runs before a decision
    return first, first.output


@pytest.mark.live
def test_approved_as_proposed_runs_the_call(client, reviewer):
    janitor, run_id = Janitor(), f"janitor-{uuid.uuid4().hex[:8]}"
    first, requests = paused(janitor)
    reviewer.decide_later(f"{run_id}/call-1", option="approve")
    results = review(client, requests, run_id=run_id, confidence=0.6, timeout=30)
    second = janitor.agent.run_sync(
        message_history=first.all_messages(), deferred_tool_results=results
    )
    assert janitor.deleted == [BRANCHES]
    assert second.output == "done: deleted spike/graphql, feature/dark-mode"


@pytest.mark.live
def test_edited_args_run_once_with_the_reviewers_args(client, reviewer):
    janitor, run_id = Janitor(), f"janitor-{uuid.uuid4().hex[:8]}"
    first, requests = paused(janitor)
    reviewer.decide_later(
        f"{run_id}/call-1", option="approve", args={"branches": ["spike/graphql"]}
    )
    results = review(client, requests, run_id=run_id, confidence=0.6, timeout=30)
    assert results.approvals["call-1"] == ToolApproved(
        override_args={"branches": ["spike/graphql"]}
    )
    second = janitor.agent.run_sync(
        message_history=first.all_messages(), deferred_tool_results=results
    )
    # Run once, with the reviewer's arguments: no rejection, no second call, no second approval.
    assert janitor.deleted == [["spike/graphql"]]
    assert second.output == "done: deleted spike/graphql"
    assert janitor.model_calls == 2


@pytest.mark.live
def test_denied_with_a_message_the_model_reads(client, reviewer):
    janitor, run_id = Janitor(), f"janitor-{uuid.uuid4().hex[:8]}"
    first, requests = paused(janitor)
    reviewer.decide_later(
        f"{run_id}/call-1", option="deny", instruction="feature/dark-mode ships Friday: keep it."
    )
    results = review(client, requests, run_id=run_id, confidence=0.6, timeout=30)
    second = janitor.agent.run_sync(
        message_history=first.all_messages(), deferred_tool_results=results
    )
    assert janitor.deleted == []
    assert janitor.read == ["feature/dark-mode ships Friday: keep it."]
    assert second.output == "done: feature/dark-mode ships Friday: keep it."


@pytest.mark.live
def test_a_halt_stops_the_run(client, reviewer):
    janitor, run_id = Janitor(), f"janitor-{uuid.uuid4().hex[:8]}"
    _, requests = paused(janitor)
    reviewer.decide_later(f"{run_id}/call-1", kind="halt")
    with pytest.raises(Halted):
        review(client, requests, run_id=run_id, confidence=0.6, timeout=30)
    assert janitor.deleted == []
