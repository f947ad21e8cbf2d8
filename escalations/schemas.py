"""The agent API's wire shapes (API.md), as ninja schemas: input validation and OpenAPI.

Field rules that pydantic can check alone live here; rules that look at several fields,
the clock or the database live in escalations.validation.
"""

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from .models import Decision, Escalation

MAX_INT = 2_147_483_647  # fits the database's integer columns
SLUG_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
JSON_OBJECT_MAX_BYTES = 16 * 1024

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
Impact = Literal["low", "medium", "high", "critical"]
Outcome = Literal["ok", "failed", "skipped", "info"]
DecisionKind = Literal["option", "instruction", "take_over", "halt"]

assert set(Reason.__args__) == set(Escalation.Reason.values)
assert set(DecisionKind.__args__) == set(Decision.Kind.values)

# These say nothing about what, specifically, the agent is unsure of.
GENERIC_WORDS = frozenset(
    ["i", "im", "i'm", "am", "is", "it", "its", "it's", "me", "my", "we", "this", "that", "something", "somehow", "stuck", "help", "need", "needs", "needed", "please", "pls", "error", "errors", "an", "a", "the", "went", "wrong", "go", "going", "problem", "problems", "issue", "issues", "not", "working", "work", "works", "doesnt", "doesn't", "dont", "don't", "know", "unsure", "sure", "what", "do", "to", "and", "with", "failed", "failure", "fail", "fails", "broken", "happened", "occurred", "there", "here", "again", "really", "so", "very", "some", "can", "can't", "cant", "cannot", "get", "got", "any", "anything", "idea", "ideas", "unclear", "confused", "trouble", "having", "have", "has", "hit", "ran", "into", "run"]
)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "is out of range") from None


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > JSON_OBJECT_MAX_BYTES:
        raise PydanticCustomError(
            "object_too_large", "must be at most 16 KiB of JSON ({size} bytes given)", {"size": size}
        )
    return value


def _not_generic(value: str) -> str:
    words = re.findall(r"[a-z']+|\d+", value.lower())
    meaningful = [w for w in words if w.strip("'") not in GENERIC_WORDS]
    if len(meaningful) < 3:
        raise PydanticCustomError(
            "generic_uncertainty",
            "is too generic: say what specifically you are unsure of "
            "(the choice, the missing fact, the risk), not that you are stuck",
        )
    return value


UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


def Text(min_length: int, max_length: int):
    return Annotated[StrictStr, Field(min_length=min_length, max_length=max_length)]


def Count(le: int = MAX_INT):
    return Annotated[StrictInt, Field(ge=0, le=le)]


class Strict(Schema):
    model_config = ConfigDict(extra="ignore")


class StepIn(Strict):
    at: UtcTime
    action: Text(1, 200)
    outcome: Outcome = "info"
    detail: Text(0, 20000) | None = None


class OptionIn(Strict):
    key: Annotated[StrictStr, Field(pattern=SLUG_RE)]
    label: Text(1, 200)
    description: Text(0, 4000) | None = None
    irreversible: StrictBool = False
    recommended: StrictBool = False
    args: JsonObject | None = None


class CostOfDelayIn(Strict):
    blocking: StrictBool
    impact: Impact
    blocked_tasks: Count(1_000_000) = 0
    stuck_since: UtcTime | None = None
    respond_by: UtcTime | None = None
    note: Text(0, 500) | None = None


class ActionIn(Strict):
    name: Text(1, 200)
    irreversible: StrictBool = False
    planned_scope: Count() | None = None
    actual_scope: Count() | None = None


class LinkIn(Strict):
    label: Text(1, 200)
    url: Text(1, 2000)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value, re.IGNORECASE):
            raise PydanticCustomError("url_scheme", "must be an http or https URL")
        return value


class EscalationIn(Strict):
    run_id: Text(1, 200)
    title: Text(1, 200)
    uncertainty: Annotated[Text(20, 4000), AfterValidator(_not_generic)]
    reason: Reason
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
    history: Annotated[list[StepIn], Field(min_length=1, max_length=2000)]
    options: Annotated[list[OptionIn], Field(min_length=1, max_length=10)]
    cost_of_delay: CostOfDelayIn
    action: ActionIn | None = None
    attempts: Count(1_000_000) = 0
    domain: Annotated[StrictStr, Field(pattern=SLUG_RE)] | None = None
    timeout_option: Text(1, 64) | None = None
    links: Annotated[list[LinkIn], Field(max_length=20)] = []
    metadata: JsonObject = {}

    @field_validator("options")
    @classmethod
    def _one_recommended_unique_keys(cls, options: list[OptionIn]) -> list[OptionIn]:
        recommended = sum(1 for o in options if o.recommended)
        if recommended != 1:
            raise PydanticCustomError(
                "recommended_count",
                "exactly one option must be recommended ({count} are)",
                {"count": recommended},
            )
        keys = [o.key for o in options]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise PydanticCustomError(
                "duplicate_keys", "option keys must be unique ({keys} repeated)",
                {"keys": ", ".join(duplicates)},
            )
        return options


class GateIn(Strict):
    domain: Annotated[StrictStr, Field(pattern=SLUG_RE)] | None = None
    action: ActionIn | None = None
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
    attempts: Count(1_000_000) = 0
    novel: StrictBool = False
    run_id: Text(1, 200) | None = None


class DecisionIn(Strict):
    kind: DecisionKind
    option: Text(1, 64) | None = None
    args: JsonObject | None = None
    instruction: Text(0, 4000) | None = None


# ---------------------------------------------------------------- output (OpenAPI)


class DecidedByOut(Schema):
    type: Literal["human", "policy", "timeout"]
    name: str


class DecisionOut(Schema):
    kind: DecisionKind
    option: str | None
    args: dict[str, Any] | None
    instruction: str | None
    decided_by: DecidedByOut
    decided_at: datetime


class EscalationOut(Schema):
    id: str
    run_id: str
    title: str
    status: Literal["pending", "claimed", "decided", "resumed", "withdrawn"]
    tier: int
    priority: int
    priority_reasons: list[str]
    reason: Reason
    confidence: float
    domain: str
    respond_by: datetime | None
    created_at: datetime
    updated_at: datetime
    url: str
    decision: DecisionOut | None


class DecisionsPageOut(Schema):
    items: list[EscalationOut]
    next_cursor: str | None


class GateOut(Schema):
    verdict: Literal["proceed", "flag", "escalate", "halt"]
    tier: int
    reasons: list[str]
    policy: str


class FieldErrorOut(Schema):
    field: str
    message: str


class ClaimOut(Schema):
    name: str
    until: datetime | None


class ProblemOut(Schema):
    """RFC 9457 problem details. Conflicts carry what they conflict with."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorOut] | None = None
    open_escalation: EscalationOut | None = Field(
        None, description="409 run-has-open-escalation: the run's open escalation"
    )
    escalation: EscalationOut | None = Field(
        None, description="409 idempotency-key-reused / already-decided: the escalation as it stands"
    )
    decision: DecisionOut | None = Field(None, description="409 already-decided: the decision that stands")
    claimed_by: ClaimOut | None = Field(None, description="409 claimed: who holds the claim, and until when")
