"""LangGraph adapter: `interrupt()` payloads in, `Command(resume=...)` values out.

Speaks the two approval shapes graphs raise with `interrupt()`:

- Agent Inbox `HumanInterrupt` (`{"action_request": {"action", "args"}, "config":
  {"allow_accept", "allow_edit", "allow_respond", "allow_ignore"}, "description"}`,
  usually raised as a one-element list). Resume value: a list with one
  `{"type": "accept" | "edit" | "response" | "ignore", "args": ...}` per request.
- LangChain v1 `HumanInTheLoopMiddleware`: `HITLRequest` (`{"action_requests": [{"name",
  "args", "description"}], "review_configs": [{"action_name", "allowed_decisions"}]}`),
  resumed with `{"decisions": [{"type": "approve"} | {"type": "edit", "edited_action":
  {"name", "args"}} | {"type": "reject", "message"?} | {"type": "respond", "message"}]}`,
  one per action in order; and its per-call `ToolApprovalRequest` (`{"type":
  "tool_approval", "tool_call_id", "name", "args", "description"}`), resumed with one
  such decision.

Each proposed action becomes one package whose recommended option carries the action's
args (editable by the reviewer when the shape allows edits). A halt or take over raises
Halted / TakenOver: no resume value expresses "stop the run". Needs the `langgraph` extra
only for `resume_command`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._adapt import (
    aescalate_all,
    default_package,
    edited_note,
    escalate_all,
    run_ids,
    stop_unless_decided,
)
from .errors import HandoffError, InstructionGiven
from .models import Escalation, Option

if TYPE_CHECKING:
    from langgraph.types import Command

    from .aio import AsyncHandoff
    from .client import Handoff

Shape = Literal["agent_inbox", "hitl_request", "tool_approval"]
ALL_DECISIONS = ("approve", "edit", "reject", "respond")


@dataclass(frozen=True)
class Proposal:
    """One proposed action of an interrupt, as the reviewer will see it."""

    name: str
    args: dict[str, Any]
    description: str | None
    can_edit: bool
    can_accept: bool
    can_decline: bool  # inbox: ignore; LangChain: reject
    can_message: bool  # inbox: response; LangChain: reject with message or respond


def interrupt_value(interrupt: Any) -> Any:
    """The payload of a langgraph `Interrupt` (or the payload itself)."""
    return getattr(interrupt, "value", interrupt)


def shape_of(value: Any) -> Shape:
    """Which approval shape an interrupt payload has; ValueError for anything else."""
    value = interrupt_value(value)
    if isinstance(value, Mapping):
        if value.get("type") == "tool_approval":
            return "tool_approval"
        if "action_requests" in value:
            return "hitl_request"
        if "action_request" in value:
            return "agent_inbox"
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and value
        and all(isinstance(item, Mapping) and "action_request" in item for item in value)
    ):
        return "agent_inbox"
    raise ValueError("not an Agent Inbox HumanInterrupt, HITLRequest or ToolApprovalRequest")


def proposals(value: Any) -> list[Proposal]:
    """The proposed actions of an interrupt payload, in order."""
    value = interrupt_value(value)
    shape = shape_of(value)
    if shape == "agent_inbox":
        requests = [value] if isinstance(value, Mapping) else list(value)
        found = []
        for request in requests:
            action, config = request["action_request"], request.get("config") or {}
            found.append(
                Proposal(
                    name=str(action.get("action", "")),
                    args=dict(action.get("args") or {}),
                    description=request.get("description"),
                    can_edit=bool(config.get("allow_edit")),
                    can_accept=bool(config.get("allow_accept")),
                    can_decline=bool(config.get("allow_ignore")),
                    can_message=bool(config.get("allow_respond")),
                )
            )
        return found
    if shape == "tool_approval":
        actions, allowed = [value], [list(ALL_DECISIONS)]
    else:
        actions = list(value["action_requests"])
        configs = {c.get("action_name"): c for c in value.get("review_configs") or []}
        allowed = [
            list((configs.get(a.get("name")) or {}).get("allowed_decisions") or ALL_DECISIONS)
            for a in actions
        ]
    return [
        Proposal(
            name=str(action.get("name", "")),
            args=dict(action.get("args") or {}),
            description=action.get("description"),
            can_edit="edit" in kinds,
            can_accept="approve" in kinds,
            can_decline="reject" in kinds,
            can_message="reject" in kinds or "respond" in kinds,
        )
        for action, kinds in zip(actions, allowed, strict=True)
    ]


def _keys(shape: Shape) -> tuple[str, str]:
    return ("accept", "ignore") if shape == "agent_inbox" else ("approve", "reject")


def packages_for(
    interrupt: Any,
    *,
    run_id: str,
    confidence: float,
    irreversible: bool = True,
    **fields: Any,
) -> list[dict[str, Any]]:
    """One package per proposed action (run ids `run_id`, or `run_id/0`, `/1`... when
    there are several). `fields` are package fields overriding the defaults (pass a real
    `history` and `uncertainty`); `irreversible` marks the run option."""
    value = interrupt_value(interrupt)
    shape = shape_of(value)
    found = proposals(value)
    run_key, decline_key = _keys(shape)
    packages = []
    for proposal, rid in zip(found, run_ids(run_id, len(found)), strict=True):
        options: list[Option] = []
        if proposal.can_accept or proposal.can_edit:
            edit_note = (
                "A reviewer may edit the arguments."
                if proposal.can_edit
                else ("Edited arguments are not applied: they reach the agent as a message.")
            )
            options.append(
                {
                    "key": run_key,
                    "label": f"Run {proposal.name}"[:200],
                    "description": edit_note,
                    "irreversible": irreversible,
                    "args": proposal.args,
                }
            )
        if proposal.can_decline:
            label = "Ignore: skip this action" if shape == "agent_inbox" else "Reject: don't run it"
            options.append({"key": decline_key, "label": label})
        if not options:
            raise ValueError(f"{proposal.name}: the interrupt allows no choice to make")
        options[0]["recommended"] = True
        packages.append(
            default_package(
                name=proposal.name,
                args=proposal.args,
                description=proposal.description,
                run_id=rid,
                confidence=confidence,
                options=options,
                fields=fields,
            )
        )
    return packages


def _inbox_response(proposal: Proposal, escalation: Escalation) -> dict[str, Any]:
    decision = escalation.decision
    assert decision is not None
    if decision.kind == "option" and decision.option == "accept":
        args = decision.args if decision.args is not None else proposal.args
        action = {"action": proposal.name, "args": args}
        if args == proposal.args and proposal.can_accept:
            return {"type": "accept", "args": action}
        if proposal.can_edit:
            return {"type": "edit", "args": action}
        if proposal.can_message:
            return {"type": "response", "args": edited_note(proposal.name, args)}
        raise HandoffError(f"{proposal.name}: edited args but the interrupt allows no edit")
    if decision.kind == "option":  # "ignore"
        return {"type": "ignore", "args": None}
    if proposal.can_message:  # an instruction
        return {"type": "response", "args": decision.instruction or ""}
    raise InstructionGiven(
        escalation, f"instruction, but the interrupt allows no response: {decision.instruction}"
    )


def _langchain_decision(proposal: Proposal, escalation: Escalation) -> dict[str, Any]:
    decision = escalation.decision
    assert decision is not None
    if decision.kind == "option" and decision.option == "approve":
        args = decision.args if decision.args is not None else proposal.args
        if args == proposal.args and proposal.can_accept:
            return {"type": "approve"}
        if proposal.can_edit:
            return {"type": "edit", "edited_action": {"name": proposal.name, "args": args}}
        if proposal.can_decline:
            return {"type": "reject", "message": edited_note(proposal.name, args)}
        raise HandoffError(f"{proposal.name}: edited args but the interrupt allows no edit")
    message = decision.instruction
    if decision.kind == "option":  # "reject"
        return {"type": "reject", "message": message} if message else {"type": "reject"}
    if proposal.can_decline:  # an instruction: the model reads it as the user's rejection
        return {"type": "reject", "message": message or ""}
    if proposal.can_message:
        return {"type": "respond", "message": message or ""}
    raise InstructionGiven(escalation, f"instruction, but the interrupt allows no reply: {message}")


def resume_value(interrupt: Any, escalations: Sequence[Escalation]) -> Any:
    """The resume value the interrupt's shape expects, from one decided escalation per
    proposed action (in order). Raises Halted / TakenOver / Withdrawn when any decision
    stops the run, InstructionGiven when the shape has no way to pass the instruction."""
    value = interrupt_value(interrupt)
    shape = shape_of(value)
    found = proposals(value)
    if len(found) != len(escalations):
        raise ValueError(f"{len(found)} proposed actions but {len(escalations)} escalations")
    for escalation in escalations:
        stop_unless_decided(escalation)
    pairs = list(zip(found, escalations, strict=True))
    if shape == "agent_inbox":
        return [_inbox_response(p, e) for p, e in pairs]
    decisions = [_langchain_decision(p, e) for p, e in pairs]
    return decisions[0] if shape == "tool_approval" else {"decisions": decisions}


def resume_command(interrupt: Any, escalations: Sequence[Escalation]) -> Command[Any]:
    """`Command(resume=...)` for the interrupt; keyed by interrupt id when it has one
    (so several pending interrupts can be answered one by one)."""
    from langgraph.types import Command

    resume = resume_value(interrupt, escalations)
    interrupt_id = getattr(interrupt, "id", None)
    return Command(resume={interrupt_id: resume} if interrupt_id else resume)


def escalate_interrupt(
    client: Handoff,
    interrupt: Any,
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> list[Escalation]:
    """Escalate every proposed action of an interrupt, wait for all decisions, return the
    decided escalations (feed them to `resume_value` / `resume_command`). A run that
    already has an open escalation (an agent restarted while waiting) adopts it."""
    return escalate_all(
        client,
        packages_for(interrupt, run_id=run_id, confidence=confidence, **fields),
        timeout=timeout,
        ack=ack,
    )


async def aescalate_interrupt(
    client: AsyncHandoff,
    interrupt: Any,
    *,
    run_id: str,
    confidence: float,
    timeout: float | None = None,
    ack: bool = True,
    **fields: Any,
) -> list[Escalation]:
    """Async `escalate_interrupt`."""
    return await aescalate_all(
        client,
        packages_for(interrupt, run_id=run_id, confidence=confidence, **fields),
        timeout=timeout,
        ack=ack,
    )
