"""The wire objects of API.md as dataclasses, and the package fields as TypedDicts.

Parsing keeps unknown fields in `raw`: the API only ever adds fields, so a newer server
never breaks an older client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

Status = Literal[
    "pending", "claimed", "awaiting_agent", "decided", "resumed", "withdrawn", "expired"
]
DecisionKind = Literal["option", "instruction", "take_over", "halt"]
Reason = Literal[
    "approach_choice",
    "missing_information",
    "missing_access",
    "irreversible_action",
    "novelty",
    "scope_mismatch",
    "repeated_failure",
    "other",
]
# Open: not decided yet. awaiting_agent is open, and waits for the agent's answer to a
# reviewer's question (Handoff.answer).
OPEN_STATUSES: frozenset[str] = frozenset({"pending", "claimed", "awaiting_agent"})


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 with a zone (`Z` included) to an aware datetime; None stays None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class DecidedBy:
    type: Literal["human", "machine", "policy", "timeout"] | str
    name: str | None = None


@dataclass(frozen=True)
class Decision:
    """A decision; it never changes once made.

    `kind="option"`: proceed with `option` using `args` (the reviewer may have edited
    them), and heed `instruction` if any. `"instruction"`: do what `instruction` says.
    `"take_over"`: stop, a human continues by hand. `"halt"`: stop and abandon the step.
    """

    kind: DecisionKind | str
    option: str | None
    args: dict[str, Any] | None
    instruction: str | None
    decided_by: DecidedBy
    decided_at: datetime | None
    # Not to act on after this (the domain's decision lifetime); None: no limit.
    valid_until: datetime | None = None
    # `<payload>.<signature>`: checked by the client when given the signing secret.
    receipt: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        by = data.get("decided_by") or {}
        return cls(
            kind=data.get("kind", ""),
            option=data.get("option"),
            args=data.get("args"),
            instruction=data.get("instruction"),
            decided_by=DecidedBy(type=by.get("type", ""), name=by.get("name")),
            decided_at=parse_time(data.get("decided_at")),
            valid_until=parse_time(data.get("valid_until")),
            receipt=data.get("receipt"),
            raw=data,
        )


@dataclass(frozen=True)
class Question:
    """A reviewer's open question to the agent (status awaiting_agent): answer it with
    `Handoff.answer`."""

    text: str
    asked_by: str | None
    asked_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Question:
        return cls(
            text=data.get("text", ""),
            asked_by=data.get("asked_by"),
            asked_at=parse_time(data.get("asked_at")),
        )


@dataclass(frozen=True)
class Escalation:
    """The escalation object. `url` is the reviewer's page in the dashboard."""

    id: str
    run_id: str
    title: str
    status: Status | str
    tier: int | None
    priority: int | None
    priority_reasons: list[str]
    reason: str
    confidence: float | None
    domain: str | None
    respond_by: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    url: str
    decision: Decision | None
    question: Question | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        """Pending, claimed or awaiting the agent: nobody has decided yet."""
        return self.status in OPEN_STATUSES

    @property
    def awaiting_agent(self) -> bool:
        """A reviewer asked a question (`question`): answer it with `Handoff.answer`."""
        return self.status == "awaiting_agent"

    @property
    def needs_agent(self) -> bool:
        """The agent's turn: decided (or withdrawn), or a question to answer."""
        return not self.is_open or self.awaiting_agent

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Escalation:
        decision, question = data.get("decision"), data.get("question")
        return cls(
            id=str(data["id"]),
            run_id=data.get("run_id", ""),
            title=data.get("title", ""),
            status=data.get("status", ""),
            tier=data.get("tier"),
            priority=data.get("priority"),
            priority_reasons=list(data.get("priority_reasons") or []),
            reason=data.get("reason", ""),
            confidence=data.get("confidence"),
            domain=data.get("domain"),
            respond_by=parse_time(data.get("respond_by")),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            url=data.get("url", ""),
            decision=Decision.from_dict(decision) if isinstance(decision, dict) else None,
            question=Question.from_dict(question) if isinstance(question, dict) else None,
            raw=data,
        )


@dataclass(frozen=True)
class GateVerdict:
    """The governance policy's answer to `gate()`."""

    verdict: Literal["proceed", "flag", "escalate", "halt"] | str
    tier: int
    reasons: list[str]
    policy: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateVerdict:
        return cls(
            verdict=data.get("verdict", ""),
            tier=int(data.get("tier", 0)),
            reasons=list(data.get("reasons") or []),
            policy=data.get("policy", ""),
            raw=data,
        )


# The package (POST /api/v1/escalations). Times may be datetimes or ISO strings.


class Step(TypedDict):
    at: datetime | str
    action: str
    outcome: NotRequired[Literal["ok", "failed", "skipped", "info"]]
    detail: NotRequired[str]


class Option(TypedDict):
    key: str
    label: str
    description: NotRequired[str]
    irreversible: NotRequired[bool]
    recommended: NotRequired[bool]
    args: NotRequired[dict[str, Any]]


class CostOfDelay(TypedDict):
    blocking: bool
    impact: Literal["low", "medium", "high", "critical"]
    blocked_tasks: NotRequired[int]
    stuck_since: NotRequired[datetime | str]
    respond_by: NotRequired[datetime | str]
    note: NotRequired[str]


class Action(TypedDict, total=False):
    name: str
    irreversible: bool
    planned_scope: int
    actual_scope: int


class Link(TypedDict):
    label: str
    url: str


class PackageFields(TypedDict, total=False):
    """The fields of an escalation package; see API.md for each rule."""

    run_id: str
    title: str
    uncertainty: str
    reason: Reason
    confidence: float
    history: list[Step]
    options: list[Option]
    cost_of_delay: CostOfDelay
    action: Action
    attempts: int
    domain: str
    timeout_option: str
    links: list[Link]
    metadata: dict[str, Any]
