"""What the domain's services take from a caller: plain, already-checked values, whatever
the transport (the agent API's ninja schemas build these in the view; a test or a command
builds them directly)."""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ActionInput:
    """The action an agent is about to take, as the policy weighs it."""

    name: str
    irreversible: bool = False
    planned_scope: int | None = None
    actual_scope: int | None = None


@dataclass(frozen=True)
class GateInput:
    """A gate check: may the agent go ahead? `domain` None means the agent's own."""

    confidence: float
    domain: str | None = None
    action: ActionInput | None = None
    attempts: int = 0
    novel: bool = False
    run_id: str | None = None


@dataclass(frozen=True)
class StepInput:
    """One step of the agent's history: `at` for the clock checks, `record` as it is stored."""

    at: datetime
    record: dict[str, Any]


@dataclass(frozen=True)
class OptionInput:
    """One option the agent sees; `record` is the option as it is stored and shown."""

    key: str
    irreversible: bool
    record: dict[str, Any]


@dataclass(frozen=True)
class DelayInput:
    """The cost of delay: what waiting costs, and by when a person should answer."""

    blocking: bool
    impact: str
    blocked_tasks: int = 0
    stuck_since: datetime | None = None
    respond_by: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class PackageInput:
    """An escalation package, checked field by field (escalations.schemas.EscalationIn
    builds it); the service checks what spans fields or needs the clock and the policy.
    `fingerprint` identifies the request body for idempotent replays (intake.fingerprint)."""

    run_id: str
    title: str
    uncertainty: str
    reason: str
    confidence: float
    history: tuple[StepInput, ...]
    options: tuple[OptionInput, ...]
    cost_of_delay: DelayInput
    fingerprint: str
    action: ActionInput | None = None
    action_record: dict[str, Any] | None = None
    attempts: int = 0
    domain: str | None = None
    timeout_option: str | None = None
    links: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerInput:
    """The agent's answer to a reviewer's question: text, and history steps and links to
    append to the package."""

    text: str
    history: tuple[StepInput, ...] = ()
    links: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, text: str, history: Any, links: Any) -> "AnswerInput":
        """From the agent API's schema (escalations.schemas.AnswerIn): steps and links as
        the package stores them."""
        steps = tuple(StepInput(s.at, s.model_dump(mode="json", exclude_none=True)) for s in history)
        return cls(text, steps, tuple(link.model_dump(mode="json") for link in links))


def fingerprint(body: Any) -> str:
    """The same body, whatever its key order or spacing, gives the same fingerprint."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
