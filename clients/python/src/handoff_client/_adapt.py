"""Shared pieces of the framework adapters: package defaults and decision dispatch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import Conflict, Halted, TakenOver, Withdrawn
from .models import Escalation, Option

if TYPE_CHECKING:
    from .aio import AsyncHandoff
    from .client import Handoff


def default_package(
    *,
    name: str,
    args: Mapping[str, Any],
    description: str | None,
    run_id: str,
    confidence: float,
    options: list[Option],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """A package for one proposed tool call; `fields` (the caller's) override defaults.

    The defaults are honest but thin: pass a real `history` and `uncertainty` from your
    run whenever you have them (see docs/agents.md)."""
    shown = json.dumps(dict(args), ensure_ascii=False, sort_keys=True, default=str)
    uncertainty = f"Should the agent run `{name}` with {shown[:3000]}?"
    if description:
        uncertainty += " " + description.strip()
    package: dict[str, Any] = {
        "run_id": run_id,
        "title": f"Approve {name}?"[:200],
        "uncertainty": uncertainty[:4000],
        "reason": "irreversible_action",
        "confidence": confidence,
        "history": [
            {
                "at": datetime.now(UTC),
                "action": f"Proposed the tool call {name}"[:200],
                "outcome": "info",
                "detail": shown[:20000],
            }
        ],
        "options": options,
        "cost_of_delay": {"blocking": True, "impact": "medium"},
        "action": {"name": name[:200], "irreversible": True},
    }
    package.update(fields)
    return package


def run_ids(run_id: str, count: int) -> list[str]:
    """One run id per package: a run has at most one open escalation at a time."""
    return [run_id] if count == 1 else [f"{run_id}/{index}" for index in range(count)]


def stop_unless_decided(escalation: Escalation) -> None:
    """Raise for outcomes no framework can resume with: halt, take over, no decision."""
    decision = escalation.decision
    if decision is None:
        raise Withdrawn(escalation, f"escalation {escalation.id} ended without a decision")
    if decision.kind == "halt":
        raise Halted(escalation, f"a reviewer halted the run ({escalation.url})")
    if decision.kind == "take_over":
        raise TakenOver(escalation, f"a human took the run over ({escalation.url})")


def open_one(conflict: Conflict) -> Escalation | None:
    """The run's open escalation from a 409, for adopting it after an agent restart."""
    found = conflict.open_escalation
    return found if found is not None and found.is_open else None


def escalate_all(
    client: Handoff, packages: Iterable[dict[str, Any]], *, timeout: float | None, ack: bool
) -> list[Escalation]:
    """Escalate each package (adopting a run's open one after a restart instead of failing
    with Conflict), wait for every decision, ack them; the decided escalations, in order."""
    escalations = []
    for package in packages:
        try:
            escalation = client.escalate(package)
        except Conflict as conflict:
            if (escalation := open_one(conflict)) is None:  # type: ignore[assignment]
                raise
        escalations.append(escalation)
    decided = [client.wait(e, timeout=timeout, stop_on_question=False) for e in escalations]
    if ack:
        for escalation in decided:
            if escalation.decision is not None:
                client.ack(escalation)
    return decided


async def aescalate_all(
    client: AsyncHandoff, packages: Iterable[dict[str, Any]], *, timeout: float | None, ack: bool
) -> list[Escalation]:
    """Async `escalate_all`; the waits run side by side."""
    escalations = []
    for package in packages:
        try:
            escalation = await client.escalate(package)
        except Conflict as conflict:
            if (escalation := open_one(conflict)) is None:  # type: ignore[assignment]
                raise
        escalations.append(escalation)
    decided = list(
        await asyncio.gather(
            *(client.wait(e, timeout=timeout, stop_on_question=False) for e in escalations)
        )
    )
    if ack:
        for escalation in decided:
            if escalation.decision is not None:
                await client.ack(escalation)
    return decided


def edited_note(name: str, args: Any) -> str:
    shown = json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    return (
        f"A reviewer approved `{name}` only with these arguments: {shown}. "
        "Call it again with exactly them if that still makes sense."
    )
