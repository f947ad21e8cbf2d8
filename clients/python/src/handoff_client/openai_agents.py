"""OpenAI Agents SDK adapter: pending tool approvals in, `approve` / `reject` out.

A run paused on tools with `needs_approval` has `result.interruptions` (or
`state.get_interruptions()`): `ToolApprovalItem`s. Each becomes one package (run id
`<run_id>/<call_id>`) whose recommended option "approve" carries the call's arguments and
whose "reject" option declines. Decisions come back as `state.approve(item)` or
`state.reject(item, rejection_message=<the reviewer's instruction>)`; then continue with
`Runner.run(agent, state)`.

The SDK cannot run a call with other arguments (`RunState.approve` takes none, and an
approval is bound to the exact call: openai/openai-agents-python#2695, which would have
added `override_arguments`, was closed unmerged), so arguments a reviewer edited become a
rejection whose message gives the model the approved arguments to call with again; that
call needs a second approval. The pydantic-ai adapter applies edited arguments once.
A halt or take over raises Halted / TakenOver: don't resume the run. Needs the
`openai-agents` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._adapt import aescalate_all, default_package, edited_note, escalate_all, stop_unless_decided
from .models import Escalation

if TYPE_CHECKING:
    from agents import RunResult, RunResultStreaming, RunState, ToolApprovalItem

    from .aio import AsyncHandoff
    from .client import Handoff

Applied = Literal["approved", "rejected"]


def pending_approvals(
    source: RunResult | RunResultStreaming | RunState[Any, Any],
) -> list[ToolApprovalItem]:
    """The tool approvals a run result or run state is waiting for."""
    get = getattr(source, "get_interruptions", None)
    if callable(get):
        return list(get())
    return list(getattr(source, "interruptions", None) or [])


def call_args(item: ToolApprovalItem) -> dict[str, Any]:
    """The call's arguments as an object (the SDK keeps them as a JSON string)."""
    raw = item.arguments
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"arguments": raw}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def package_for(
    item: ToolApprovalItem,
    *,
    run_id: str,
    confidence: float,
    irreversible: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """The package for one pending approval; `fields` override the defaults (pass a real
    `history` and `uncertainty` from your run)."""
    name = item.qualified_name or item.name or "tool"
    args = call_args(item)
    agent_name = getattr(getattr(item, "agent", None), "name", None)
    options: list[dict[str, Any]] = [
        {
            "key": "approve",
            "label": f"Run {name}"[:200],
            "description": "Edited arguments are not run as such: the model is asked to "
            "call the tool again with them.",
            "irreversible": irreversible,
            "recommended": True,
            "args": args,
        },
        {"key": "reject", "label": "Reject: don't run it"},
    ]
    metadata = {"openai_agents": {"call_id": item.call_id, "tool": name, "agent": agent_name}}
    package = default_package(
        name=name,
        args=args,
        description=None,
        run_id=f"{run_id}/{item.call_id}",
        confidence=confidence,
        options=options,  # type: ignore[arg-type]
        fields={"metadata": metadata, **fields},
    )
    return package


def apply_decision(
    state: RunState[Any, Any], item: ToolApprovalItem, escalation: Escalation
) -> Applied:
    """Record the decision on the run state: approve, or reject with the reviewer's words.

    Raises Halted / TakenOver / Withdrawn instead when the run must not go on."""
    stop_unless_decided(escalation)
    decision = escalation.decision
    assert decision is not None
    if decision.kind == "option" and decision.option == "approve":
        args = decision.args if decision.args is not None else call_args(item)
        if args == call_args(item):
            state.approve(item)
            return "approved"
        state.reject(item, rejection_message=edited_note(item.name or "the tool", args))
        return "rejected"
    state.reject(item, rejection_message=decision.instruction or None)
    return "rejected"


def escalate_approvals(
    client: Handoff,
    items: Sequence[ToolApprovalItem],
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> list[Escalation]:
    """Escalate each pending approval, wait for every decision, return the decided
    escalations in the items' order. An already open escalation for the same call (an
    agent restarted while waiting) is adopted instead of failing with Conflict."""
    return escalate_all(
        client,
        (package_for(item, run_id=run_id, confidence=confidence, **fields) for item in items),
        timeout=timeout,
        ack=ack,
    )


async def aescalate_approvals(
    client: AsyncHandoff,
    items: Sequence[ToolApprovalItem],
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> list[Escalation]:
    """Async `escalate_approvals`."""
    return await aescalate_all(
        client,
        (package_for(item, run_id=run_id, confidence=confidence, **fields) for item in items),
        timeout=timeout,
        ack=ack,
    )


def review(
    client: Handoff,
    state: RunState[Any, Any],
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    **fields: Any,
) -> RunState[Any, Any]:
    """Escalate every pending approval of `state`, apply the decisions, return the state
    for `Runner.run(agent, state)`."""
    items = pending_approvals(state)
    decided = escalate_approvals(
        client, items, run_id=run_id, confidence=confidence, timeout=timeout, **fields
    )
    for item, escalation in zip(items, decided, strict=True):
        apply_decision(state, item, escalation)
    return state


async def areview(
    client: AsyncHandoff,
    state: RunState[Any, Any],
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    **fields: Any,
) -> RunState[Any, Any]:
    """Async `review`."""
    items = pending_approvals(state)
    decided = await aescalate_approvals(
        client, items, run_id=run_id, confidence=confidence, timeout=timeout, **fields
    )
    for item, escalation in zip(items, decided, strict=True):
        apply_decision(state, item, escalation)
    return state
