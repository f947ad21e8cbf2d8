"""The LangGraph adapter with real graphs: a MemorySaver checkpointer, interrupt(), and
Command(resume=...). The decisions here are escalation objects as the server sends them
(test_live.py gets them from a real server)."""

from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt

from handoff_client import Backoff, Escalation, Halted, Handoff, InstructionGiven, TakenOver
from handoff_client.langgraph import (
    escalate_interrupt,
    packages_for,
    resume_command,
    resume_value,
    shape_of,
)
from stub import Reply, StubServer, decided_json, escalation_json

CONFIG = {
    "allow_accept": True,
    "allow_edit": True,
    "allow_respond": True,
    "allow_ignore": True,
}


class MailState(TypedDict, total=False):
    to: str
    outcome: Any


def inbox_graph(config: dict[str, bool] = CONFIG):
    """A graph whose node asks Agent Inbox style before sending an email."""

    def send_email(state: MailState) -> MailState:
        request = {
            "action_request": {"action": "send_email", "args": {"to": state["to"], "body": "Hi"}},
            "config": config,
            "description": "About to email a customer; the address came from an old ticket.",
        }
        response = interrupt([request])[0]
        return {"outcome": response}

    builder = StateGraph(MailState)
    builder.add_node("send_email", send_email)
    builder.add_edge(START, "send_email")
    return builder.compile(checkpointer=MemorySaver())


def paused(graph, thread: str, to: str = "old@example.com"):
    config = {"configurable": {"thread_id": thread}}
    result = graph.invoke({"to": to}, config)
    (pending,) = result["__interrupt__"]
    return pending, config


def decided(option=None, **kwargs) -> Escalation:
    return Escalation.from_dict(decided_json(option, **kwargs))


def test_inbox_interrupt_becomes_a_package():
    pending, _ = paused(inbox_graph(), "p1")
    assert shape_of(pending) == "agent_inbox"
    (package,) = packages_for(
        pending,
        run_id="thread-p1",
        confidence=0.7,
        history=[{"at": "2026-11-21T10:00:00Z", "action": "Read ticket"}],
    )
    assert package["run_id"] == "thread-p1"
    assert package["confidence"] == 0.7
    assert package["history"] == [{"at": "2026-11-21T10:00:00Z", "action": "Read ticket"}]
    assert "old ticket" in package["uncertainty"] and len(package["uncertainty"]) >= 20
    accept, ignore = package["options"]
    assert accept["key"] == "accept" and accept["recommended"] and accept["irreversible"]
    assert accept["args"] == {"to": "old@example.com", "body": "Hi"}
    assert ignore["key"] == "ignore" and "recommended" not in ignore


@pytest.mark.parametrize(
    ("escalation", "expected"),
    [
        (
            decided("accept", args={"to": "old@example.com", "body": "Hi"}),
            {
                "type": "accept",
                "args": {"action": "send_email", "args": {"to": "old@example.com", "body": "Hi"}},
            },
        ),
        (
            decided("accept", args={"to": "new@example.com", "body": "Hi"}),
            {
                "type": "edit",
                "args": {"action": "send_email", "args": {"to": "new@example.com", "body": "Hi"}},
            },
        ),
        (
            decided(kind="instruction", instruction="Ask support for the current address."),
            {"type": "response", "args": "Ask support for the current address."},
        ),
        (decided("ignore"), {"type": "ignore", "args": None}),
    ],
    ids=["accept", "edit", "response", "ignore"],
)
def test_inbox_graph_resumes_with_the_decision(escalation, expected):
    graph = inbox_graph()
    pending, config = paused(graph, f"t-{expected['type']}")
    assert resume_value(pending, [escalation]) == [expected]
    final = graph.invoke(resume_command(pending, [escalation]), config)
    assert final["outcome"] == expected
    assert "__interrupt__" not in final


@pytest.mark.parametrize(("kind", "error"), [("halt", Halted), ("take_over", TakenOver)])
def test_stop_decisions_raise(kind, error):
    pending, _ = paused(inbox_graph(), f"s-{kind}")
    with pytest.raises(error):
        resume_value(pending, [decided(kind=kind)])


def test_inbox_without_respond_cannot_carry_an_instruction():
    config = {**CONFIG, "allow_respond": False}
    pending, _ = paused(inbox_graph(config), "no-respond")
    with pytest.raises(InstructionGiven):
        resume_value(pending, [decided(kind="instruction", instruction="Do X instead")])


def test_inbox_edit_not_allowed_becomes_a_response():
    config = {**CONFIG, "allow_edit": False}
    pending, _ = paused(inbox_graph(config), "no-edit")
    (value,) = resume_value(pending, [decided("accept", args={"to": "x@example.com"})])
    assert value["type"] == "response" and "x@example.com" in value["args"]


# -- LangChain v1 HumanInTheLoopMiddleware: a real agent on a scripted chat model


class ToolCallingFake(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def hitl_agent(mode: str = "batched"):
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware

    deleted: list[str] = []

    @tool
    def delete_file(path: str) -> str:
        """Delete a file for good."""
        deleted.append(path)
        return f"deleted {path}"

    calls = [{"name": "delete_file", "args": {"path": "/srv/old.log"}, "id": "call-1"}]
    model = ToolCallingFake(
        messages=iter([AIMessage(content="", tool_calls=calls), AIMessage(content="done")])
    )
    agent = create_agent(
        model,
        tools=[delete_file],
        middleware=[
            HumanInTheLoopMiddleware(interrupt_on={"delete_file": True}, interrupt_mode=mode)
        ],
        checkpointer=MemorySaver(),
    )
    return agent, deleted


def run_until_interrupt(agent, thread):
    config = {"configurable": {"thread_id": thread}}
    result = agent.invoke({"messages": [{"role": "user", "content": "clean up"}]}, config)
    (pending,) = result["__interrupt__"]
    return pending, config


@pytest.mark.parametrize("mode", ["batched", "per_call"])
@pytest.mark.parametrize(
    ("escalation", "expected_deleted", "expected_text"),
    [
        (decided("approve", args={"path": "/srv/old.log"}), ["/srv/old.log"], "deleted"),
        (decided("approve", args={"path": "/srv/older.log"}), ["/srv/older.log"], "older"),
        (decided("reject", instruction="Keep logs for the audit."), [], "Keep logs"),
        (decided(kind="instruction", instruction="Compress it instead."), [], "Compress"),
    ],
    ids=["approve", "edit", "reject", "instruction"],
)
def test_hitl_middleware_resumes_with_the_decision(
    mode, escalation, expected_deleted, expected_text
):
    agent, deleted = hitl_agent(mode)
    pending, config = run_until_interrupt(agent, f"{mode}-{escalation.decision.kind}")
    assert shape_of(pending) == ("hitl_request" if mode == "batched" else "tool_approval")
    (package,) = packages_for(pending, run_id="r", confidence=0.4)
    assert [o["key"] for o in package["options"]] == ["approve", "reject"]
    assert package["options"][0]["args"] == {"path": "/srv/old.log"}
    final = agent.invoke(resume_command(pending, [escalation]), config)
    assert deleted == expected_deleted
    tool_message = final["messages"][-2]
    assert expected_text in str(tool_message.content)
    assert final["messages"][-1].content == "done"


def test_hitl_request_shape_of_the_resume_value():
    agent, _ = hitl_agent()
    pending, _ = run_until_interrupt(agent, "shape")
    assert resume_value(pending, [decided("approve", args={"path": "/srv/old.log"})]) == {
        "decisions": [{"type": "approve"}]
    }
    assert resume_value(pending, [decided("reject")]) == {"decisions": [{"type": "reject"}]}


def test_several_actions_become_several_packages():
    value = {
        "action_requests": [
            {"name": "a", "args": {"x": 1}},
            {"name": "b", "args": {"y": 2}},
        ],
        "review_configs": [
            {"action_name": "a", "allowed_decisions": ["approve", "reject"]},
            {"action_name": "b", "allowed_decisions": ["approve", "edit", "reject"]},
        ],
    }
    packages = packages_for(value, run_id="run", confidence=0.5)
    assert [p["run_id"] for p in packages] == ["run/0", "run/1"]
    answer = resume_value(
        value, [decided("approve", args={"x": 2}), decided("approve", args={"y": 3})]
    )
    first, second = answer["decisions"]
    assert first["type"] == "reject" and '"x": 2' in first["message"]  # edit not allowed for a
    assert second == {"type": "edit", "edited_action": {"name": "b", "args": {"y": 3}}}


def test_escalate_interrupt_against_a_local_server():
    """The whole loop over HTTP: escalate, wait, ack, resume the graph."""
    decision = decided_json("accept", args={"to": "support@example.com", "body": "Hi"})

    def app(request):
        if request.path.endswith("/escalations"):
            return Reply(201, escalation_json())
        return Reply(200, decision)

    graph = inbox_graph()
    pending, config = paused(graph, "http")
    with StubServer(app) as server, Handoff(server.url, "t", backoff=Backoff(base=0.01)) as c:
        escalations = escalate_interrupt(c, pending, run_id="thread-http", confidence=0.6)
    final = graph.invoke(resume_command(pending, escalations), config)
    assert final["outcome"]["type"] == "edit"
    assert final["outcome"]["args"]["args"]["to"] == "support@example.com"
    assert [r.method + " " + r.path.rsplit("/", 1)[-1] for r in server.requests] == [
        "POST escalations",
        f"GET {escalation_json()['id']}",
        "POST ack",
    ]
