"""pydantic-ai adapter: deferred tool calls that need approval, decided in Handoff.

A tool registered with `requires_approval=True` ends the run with a `DeferredToolRequests`
output (the agent's `output_type` includes it). Each call in `requests.approvals` becomes
one package (run id `<run_id>/<tool_call_id>`) whose recommended option "approve" carries
the call's arguments and whose "deny" option declines. The decisions come back as
`DeferredToolResults` for the next run (`deferred_tool_results=`, with the first run's
`message_history`):

- approve, arguments as proposed: `ToolApproved()`;
- approve with arguments the reviewer edited: `ToolApproved(override_args=...)`: the tool
  runs once, with the reviewer's arguments (no second approval);
- deny, another option or an instruction: `ToolDenied(message=...)` with the reviewer's
  words, which the model reads as the tool's answer.

A halt or take over raises Halted / TakenOver: don't resume the run. Needs the
`pydantic-ai` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic_ai import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied

from ._adapt import aescalate_all, default_package, escalate_all, stop_unless_decided
from .models import Escalation

if TYPE_CHECKING:
    from pydantic_ai.messages import ToolCallPart

    from .aio import AsyncHandoff
    from .client import Handoff

APPROVE = "approve"
DENY = "deny"


def call_args(requests: DeferredToolRequests, call: ToolCallPart) -> dict[str, Any]:
    """The arguments the tool would receive (validated, when pydantic-ai has them), else
    the model's."""
    validated = requests.validated_args.get(call.tool_call_id)
    return dict(validated) if validated is not None else call.args_as_dict()


def package_for(
    requests: DeferredToolRequests,
    call: ToolCallPart,
    *,
    run_id: str,
    confidence: float,
    irreversible: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """The package for one call awaiting approval; `fields` override the defaults (pass a
    real `history` and `uncertainty` from your run)."""
    args = call_args(requests, call)
    options: list[dict[str, Any]] = [
        {
            "key": APPROVE,
            "label": f"Run {call.tool_name}"[:200],
            "description": "Edit the arguments to run the tool with yours instead.",
            "irreversible": irreversible,
            "recommended": True,
            "args": args,
        },
        {"key": DENY, "label": "Deny: don't run it"},
    ]
    metadata = {"pydantic_ai": {"tool_call_id": call.tool_call_id, "tool": call.tool_name}}
    return default_package(
        name=call.tool_name,
        args=args,
        description=None,
        run_id=f"{run_id}/{call.tool_call_id}",
        confidence=confidence,
        options=options,  # type: ignore[arg-type]
        fields={"metadata": metadata, **fields},
    )


def result_for(
    requests: DeferredToolRequests, call: ToolCallPart, escalation: Escalation
) -> ToolApproved | ToolDenied:
    """The decision as pydantic-ai's approval result. Raises Halted / TakenOver / Withdrawn
    when the run must not go on."""
    stop_unless_decided(escalation)
    decision = escalation.decision
    assert decision is not None
    if decision.kind == "option" and decision.option == APPROVE:
        args = decision.args if decision.args is not None else call_args(requests, call)
        if args == call_args(requests, call):
            return ToolApproved()
        return ToolApproved(override_args=dict(args))
    if decision.kind == "instruction":
        return ToolDenied(f"A reviewer declined this call and said: {decision.instruction}")
    if decision.instruction:
        return ToolDenied(decision.instruction)
    return ToolDenied(f"A reviewer denied this call ({escalation.url}).")


def results_for(
    requests: DeferredToolRequests, decided: Sequence[Escalation]
) -> DeferredToolResults:
    """Every decision, keyed by its call, for `agent.run(..., deferred_tool_results=...)`."""
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {
        call.tool_call_id: result_for(requests, call, escalation)
        for call, escalation in zip(requests.approvals, decided, strict=True)
    }
    return DeferredToolResults(approvals=approvals)


def packages(
    requests: DeferredToolRequests, *, run_id: str, confidence: float, **fields: Any
) -> list[dict[str, Any]]:
    """One package a call awaiting approval, in order."""
    return [
        package_for(requests, call, run_id=run_id, confidence=confidence, **fields)
        for call in requests.approvals
    ]


def review(
    client: Handoff,
    requests: DeferredToolRequests,
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> DeferredToolResults:
    """Escalate each call awaiting approval, wait for every decision, return the results
    for the next run. An already open escalation of the same call (an agent restarted
    while waiting) is adopted instead of failing with Conflict."""
    decided = escalate_all(
        client,
        packages(requests, run_id=run_id, confidence=confidence, **fields),
        timeout=timeout,
        ack=ack,
    )
    return results_for(requests, decided)


async def areview(
    client: AsyncHandoff,
    requests: DeferredToolRequests,
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> DeferredToolResults:
    """Async `review`; the waits run side by side."""
    decided = await aescalate_all(
        client,
        packages(requests, run_id=run_id, confidence=confidence, **fields),
        timeout=timeout,
        ack=ack,
    )
    return results_for(requests, decided)
