"""The OpenAI Agents SDK adapter with the real SDK: RunState / ToolApprovalItem objects,
and full runs on the SDK's own ScriptedModel (no network, no API key)."""

import pytest

pytest.importorskip("agents")

from agents import (
    Agent,
    RunContextWrapper,
    Runner,
    RunState,
    ToolApprovalItem,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ScriptedModel, assistant_message, function_call

from handoff_client import Backoff, Escalation, Halted, Handoff, TakenOver
from handoff_client.openai_agents import (
    apply_decision,
    call_args,
    package_for,
    pending_approvals,
    review,
)
from stub import Reply, StubServer, decided_json, escalation_json

set_tracing_disabled(True)


def decided(option=None, **kwargs) -> Escalation:
    return Escalation.from_dict(decided_json(option, **kwargs))


def janitor():
    """An agent with one approval-gated tool and a script: call it, then say done."""
    deleted: list[str] = []

    @function_tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file for good."""
        deleted.append(path)
        return f"deleted {path}"

    model = ScriptedModel(
        [
            [function_call("delete_file", {"path": "/srv/old.log"}, call_id="call-1")],
            [assistant_message("done")],
        ]
    )
    return Agent(name="janitor", model=model, tools=[delete_file]), model, deleted


# -- objects built by hand, no run at all


def hand_built():
    agent = Agent(name="payer")
    item = ToolApprovalItem(
        agent=agent,
        raw_item={
            "type": "function_call",
            "call_id": "call-9",
            "name": "pay_invoice",
            "arguments": '{"invoice": "INV-7", "amount": 120}',
        },
    )
    state = RunState(RunContextWrapper(context=None), "pay INV-7", agent)
    return state, item


def test_package_for_a_tool_approval_item():
    _, item = hand_built()
    package = package_for(item, run_id="run-1", confidence=0.8, title="Pay INV-7?")
    assert package["run_id"] == "run-1/call-9"
    assert package["title"] == "Pay INV-7?"
    approve, reject = package["options"]
    assert approve["key"] == "approve" and approve["recommended"] and approve["irreversible"]
    assert approve["args"] == {"invoice": "INV-7", "amount": 120}
    assert reject["key"] == "reject"
    assert package["metadata"]["openai_agents"] == {
        "call_id": "call-9",
        "tool": "pay_invoice",
        "agent": "payer",
    }
    assert call_args(item) == {"invoice": "INV-7", "amount": 120}


def test_apply_decision_records_approval_on_the_state():
    state, item = hand_built()
    outcome = apply_decision(
        state, item, decided("approve", args={"invoice": "INV-7", "amount": 120})
    )
    assert outcome == "approved"
    assert state._context.is_tool_approved("pay_invoice", "call-9") is True


def test_apply_decision_rejects_with_the_reviewers_words():
    state, item = hand_built()
    assert apply_decision(state, item, decided("reject", instruction="Wait for the PO.")) == (
        "rejected"
    )
    assert state._context.is_tool_approved("pay_invoice", "call-9") is False
    assert state._context.get_rejection_message("pay_invoice", "call-9") == "Wait for the PO."


@pytest.mark.parametrize(("kind", "error"), [("halt", Halted), ("take_over", TakenOver)])
def test_stop_decisions_raise(kind, error):
    state, item = hand_built()
    with pytest.raises(error):
        apply_decision(state, item, decided(kind=kind))
    assert state._context.is_tool_approved("pay_invoice", "call-9") is None


# -- full runs on the scripted model


@pytest.mark.parametrize(
    ("escalation", "deleted_expected", "tool_output"),
    [
        (
            decided("approve", args={"path": "/srv/old.log"}),
            ["/srv/old.log"],
            "deleted /srv/old.log",
        ),
        (decided("reject", instruction="Keep it for the audit."), [], "Keep it for the audit."),
        (
            decided(kind="instruction", instruction="Compress it instead."),
            [],
            "Compress it instead.",
        ),
        (decided("approve", args={"path": "/srv/other.log"}), [], "/srv/other.log"),
    ],
    ids=["approve", "reject", "instruction", "edited-args"],
)
async def test_run_pauses_and_resumes_with_the_decision(escalation, deleted_expected, tool_output):
    agent, model, deleted = janitor()
    result = await Runner.run(agent, "clean up")
    (item,) = pending_approvals(result)
    assert package_for(item, run_id="r", confidence=0.5)["options"][0]["args"] == {
        "path": "/srv/old.log"
    }
    # Persist and restore the state, as an agent waiting for a human would.
    state = await RunState.from_string(agent, result.to_state().to_string())
    (restored,) = pending_approvals(state)
    apply_decision(state, restored, escalation)
    final = await Runner.run(agent, state)
    assert final.final_output == "done"
    assert deleted == deleted_expected
    output = next(i for i in model.last_call.input if i.get("type") == "function_call_output")
    assert tool_output in output["output"]


async def test_review_against_a_local_server():
    """escalate -> wait -> ack -> approve, over HTTP, then the run completes."""
    agent, _, deleted = janitor()
    result = await Runner.run(agent, "clean up")
    state = result.to_state()

    def app(request):
        if request.path.endswith("/escalations"):
            return Reply(201, escalation_json(run_id="run-5/call-1"))
        return Reply(200, decided_json("approve", args={"path": "/srv/old.log"}))

    with StubServer(app) as server, Handoff(server.url, "t", backoff=Backoff(base=0.01)) as c:
        review(c, state, run_id="run-5", confidence=0.7)
    posted = server.requests[0].json()
    assert posted["run_id"] == "run-5/call-1"
    final = await Runner.run(agent, state)
    assert deleted == ["/srv/old.log"] and final.final_output == "done"
