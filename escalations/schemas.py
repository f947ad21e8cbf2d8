"""The agent API's wire shapes (API.md), as ninja schemas: input validation and OpenAPI.

Field rules that pydantic can check alone live here; rules that look at several fields,
the clock or the database live in the services (escalations.services.intake). The field
types are escalations.fields.
"""

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from ninja import Schema
from ninja.schema import DjangoGetter
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from .fields import (
    Count,
    JsonObject,
    Line,
    OptionKey,
    Prose,
    SmallCount,
    UtcTime,
    not_generic,
)
from .inputs import (
    ActionInput,
    AnswerInput,
    DelayInput,
    GateInput,
    OptionInput,
    PackageInput,
    StepInput,
    fingerprint,
)
from .limits import TEXT_MAX_CHARS
from .models import Decision, Escalation
from .problems import PATTERN_MESSAGES

SLUG_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
IDEMPOTENCY_KEY_RE = r"^[\x20-\x7e]{1,255}$"
DECISIONS_CURSOR_RE = r"^[0-9]{0,18}$"
QUEUE_CURSOR_RE = r"^[A-Za-z0-9_-]+$"
PATTERN_MESSAGES.update({
    SLUG_RE: "must be a slug: lowercase letters, digits, '-' and '_', "
    "starting with a letter or digit, at most 64 characters",
    IDEMPOTENCY_KEY_RE: "must be 1-255 printable ASCII characters",
    DECISIONS_CURSOR_RE: "must be a next_cursor (digits)",
    QUEUE_CURSOR_RE: "must be a next_cursor",
})

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

assert set(get_args(Reason)) == set(Escalation.Reason.values)
assert set(get_args(DecisionKind)) == set(Decision.Kind.values)

class Strict(Schema):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="wrap")
    @classmethod
    def _run_root_validator(cls, values: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo) -> Any:
        """A JSON object is validated as it is. ninja's Schema (the validator of this name,
        replaced here) wraps every value in its DjangoGetter, which reads attributes from ORM
        objects and reads a dict's keys unchanged (these schemas have no resolvers): 15 Python
        wrappers and their lookups for figure 2's package, whose validation took over 150 us
        of CPU and takes 38 now. Anything else (a string where an object belongs, say) still
        goes through it, so its errors are ninja's. tests/test_input_fast_paths.py holds both equal."""
        if type(values) is dict:
            return handler(values)
        return handler(DjangoGetter(values, cls, info.context))


class StepIn(Strict):
    at: UtcTime
    action: Line
    outcome: Outcome = "info"
    detail: Annotated[StrictStr, Field(min_length=0, max_length=20000)] | None = None


class OptionIn(Strict):
    key: Annotated[StrictStr, Field(pattern=SLUG_RE)]
    label: Line
    description: Prose | None = None
    irreversible: StrictBool = False
    recommended: StrictBool = False
    args: JsonObject | None = None


class CostOfDelayIn(Strict):
    blocking: StrictBool
    impact: Impact
    blocked_tasks: SmallCount = 0
    stuck_since: UtcTime | None = None
    respond_by: UtcTime | None = None
    note: Annotated[StrictStr, Field(min_length=0, max_length=500)] | None = None


class ActionIn(Strict):
    name: Line
    irreversible: StrictBool = False
    planned_scope: Count | None = None
    actual_scope: Count | None = None

    def to_input(self) -> ActionInput:
        return ActionInput(
            name=self.name,
            irreversible=self.irreversible,
            planned_scope=self.planned_scope,
            actual_scope=self.actual_scope,
        )


class LinkIn(Strict):
    label: Line
    url: Annotated[StrictStr, Field(min_length=1, max_length=2000)]

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value, re.IGNORECASE):
            raise PydanticCustomError("url_scheme", "must be an http or https URL")
        return value


EXAMPLE_PACKAGE: JsonDict = {
    "run_id": "run-42",
    "title": "Update the 14 callers of charge() or add a shim?",
    "uncertainty": "charge() changed signature; 14 callers in billing/ break. Updating them touches "
    "billing/legacy, which has no tests; a shim keeps them working but doubles the API.",
    "reason": "approach_choice",
    "confidence": 0.62,
    "history": [
        {"at": "2026-01-15T09:00:00Z", "action": "read billing/charge.py", "outcome": "ok"},
        {"at": "2026-01-15T09:20:00Z", "action": "ran the test suite", "outcome": "failed",
         "detail": "14 failures in billing/"},
    ],
    "options": [
        {"key": "update-callers", "label": "Update all 14 callers", "recommended": True,
         "args": {"paths": ["billing/"]}},
        {"key": "shim", "label": "Add a compatibility shim"},
    ],
    "cost_of_delay": {"blocking": True, "impact": "high", "blocked_tasks": 3},
}
# Exactly one option is recommended: as JSON Schema says it (the validator below checks it).
ONE_RECOMMENDED = {
    "contains": {"type": "object", "properties": {"recommended": {"const": True}}, "required": ["recommended"]},
    "minContains": 1,
    "maxContains": 1,
}


class EscalationIn(Strict):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [EXAMPLE_PACKAGE]})

    run_id: Line
    title: Line
    uncertainty: Annotated[StrictStr, Field(min_length=20, max_length=TEXT_MAX_CHARS), AfterValidator(not_generic)]
    reason: Reason
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
    history: Annotated[list[StepIn], Field(min_length=1, max_length=2000)]
    options: Annotated[list[OptionIn], Field(min_length=1, max_length=10, json_schema_extra=ONE_RECOMMENDED)]
    cost_of_delay: CostOfDelayIn
    action: ActionIn | None = None
    attempts: SmallCount = 0
    domain: Annotated[StrictStr, Field(pattern=SLUG_RE)] | None = None
    timeout_option: OptionKey | None = None
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

    def to_input(self, body: Any) -> PackageInput:
        """The service's input (escalations.inputs), with the fingerprint of `body` (the
        request's JSON as parsed: an idempotent replay must send the same body)."""
        action, delay = self.action, self.cost_of_delay
        return PackageInput(
            run_id=self.run_id,
            title=self.title,
            uncertainty=self.uncertainty,
            reason=self.reason,
            confidence=self.confidence,
            history=tuple(
                StepInput(at=step.at, record=step.model_dump(mode="json", exclude_none=True))
                for step in self.history
            ),
            options=tuple(
                OptionInput(
                    key=option.key,
                    irreversible=option.irreversible,
                    record=option.model_dump(mode="json", exclude_none=True),
                )
                for option in self.options
            ),
            cost_of_delay=DelayInput(
                blocking=delay.blocking,
                impact=delay.impact,
                blocked_tasks=delay.blocked_tasks,
                stuck_since=delay.stuck_since,
                respond_by=delay.respond_by,
                note=delay.note,
            ),
            fingerprint=fingerprint(body),
            action=action.to_input() if action else None,
            action_record=action.model_dump(mode="json", exclude_none=True) if action else None,
            attempts=self.attempts,
            domain=self.domain,
            timeout_option=self.timeout_option,
            links=tuple(link.model_dump(mode="json") for link in self.links),
            metadata=self.metadata,
        )


class GateIn(Strict):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "action": {"name": "drop the sessions table", "irreversible": True}, "confidence": 0.9,
    }]})

    domain: Annotated[StrictStr, Field(pattern=SLUG_RE)] | None = None
    action: ActionIn | None = None
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
    attempts: SmallCount = 0
    novel: StrictBool = False
    run_id: Line | None = None

    def to_input(self) -> GateInput:
        """The service's input (escalations.inputs): the same values, no transport."""
        action = self.action
        return GateInput(
            confidence=self.confidence,
            domain=self.domain,
            action=action.to_input() if action else None,
            attempts=self.attempts,
            novel=self.novel,
            run_id=self.run_id,
        )


class AnswerIn(Strict):
    """POST /escalations/{id}/answer: the agent's answer to a reviewer's question."""

    text: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    history: Annotated[list[StepIn], Field(max_length=2000)] = []
    links: Annotated[list[LinkIn], Field(max_length=20)] = []

    def to_input(self) -> AnswerInput:
        return AnswerInput.of(self.text, self.history, self.links)


class DecisionIn(Strict):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"kind": "option", "option": "update-callers", "args": {"paths": ["billing/"]},
         "instruction": "Leave billing/legacy alone."},
        {"kind": "halt"},
    ]})

    kind: DecisionKind
    option: OptionKey | None = None
    args: JsonObject | None = None
    instruction: Prose | None = None
    override_claim: StrictBool = Field(
        False,
        description="Decide over another reviewer's live claim (the dashboard's "
        "\"Decide anyway\"); without it such a decision is 409 naming the holder.",
    )


# ---------------------------------------------------------------- output (OpenAPI)
# What the server answers, for the OpenAPI document: the views build their JSON by hand
# (escalations.wire), and tests/test_schemathesis.py holds every answer to these shapes.

Status = Literal["pending", "claimed", "awaiting_agent", "decided", "resumed", "withdrawn", "expired"]
DecidedByType = Literal["human", "machine", "policy", "timeout"]
assert set(get_args(Status)) == set(Escalation.Status.values)
assert set(get_args(DecidedByType)) == set(Decision.DecidedBy.values)


class DecidedByOut(Schema):
    type: DecidedByType
    name: str


class DecisionOut(Schema):
    kind: DecisionKind
    option: str | None
    args: dict[str, Any] | None
    instruction: str | None
    decided_by: DecidedByOut
    decided_at: datetime
    valid_until: datetime | None = Field(
        None, description="Not to act on after this (the domain's decision lifetime); null: no limit."
    )
    receipt: str | None = Field(
        None,
        description="`<payload>.<signature>`: base64url (unpadded) of the JSON {escalation, run_id,"
        " kind, option, args_sha256, decided_by, decided_at, valid_until} and the hex HMAC-SHA256"
        " of that payload under the agent's signing secret. args_sha256 hashes the args as"
        " canonical JSON (docs/receipts.md).",
    )


class QuestionOut(Schema):  # asked_by: the reviewer (a person or a machine reviewer)
    text: str
    asked_by: str
    asked_at: datetime


class EscalationOut(Schema):
    id: uuid.UUID
    run_id: str
    title: str
    status: Status
    tier: Annotated[int, Field(ge=1, le=4)]
    tier_reasons: list[str] = Field(description="Why the policy gave this tier (the gate's reasons).")
    priority: Annotated[int, Field(ge=0, le=100)]
    priority_reasons: list[str]
    reason: Reason
    confidence: Annotated[float, Field(ge=0, le=1)]
    calibrated_confidence: float | None = Field(description="`confidence` through the agent's calibration, or null.")
    domain: str
    question: QuestionOut | None = Field(description="The open question (awaiting_agent) or null.")
    respond_by: datetime | None
    created_at: datetime
    updated_at: datetime
    url: str = Field(description="The escalation's page in the dashboard.")
    decision: DecisionOut | None


class DecisionsPageOut(Schema):
    items: list[EscalationOut]
    next_cursor: Annotated[str, Field(pattern=DECISIONS_CURSOR_RE)] = Field(
        description="Pass as `after` for the decisions after these (the same when none came)."
    )


class QueuePageOut(Schema):
    items: list[EscalationOut]
    next_cursor: Annotated[str, Field(pattern=QUEUE_CURSOR_RE)] | None = Field(
        description="Pass as `cursor` (with the same sort) for the next page; null on the last."
    )


class GateOut(Schema):
    verdict: Literal["proceed", "flag", "escalate", "halt"]
    tier: Annotated[int, Field(ge=1, le=4)]
    reasons: list[str]
    policy: str
    calibrated_confidence: float | None = Field(description="Through the agent's calibration (null: too little history).")


class StepOut(Schema):
    at: datetime
    action: str
    outcome: Outcome
    detail: str | None = None


class OptionOut(Schema):
    key: str
    label: str
    description: str | None = None
    irreversible: bool = False
    recommended: bool = False
    args: dict[str, Any] | None = None


class CostOfDelayOut(Schema):
    blocking: bool
    impact: Impact
    blocked_tasks: int
    stuck_since: datetime
    respond_by: datetime | None
    note: str | None


class ActionOut(Schema):
    name: str
    irreversible: bool = False
    planned_scope: int | None = None
    actual_scope: int | None = None


class LinkOut(Schema):
    label: str
    url: str


class ClaimOut(Schema):
    name: str
    until: datetime | None


class WebhookEventOut(Schema):
    """The body of a webhook POST to the agent's resume_url."""

    event: Literal["escalation.decided", "escalation.question"]
    delivery_id: uuid.UUID = Field(description="Dedupe on it: deliveries are at least once.")
    escalation: EscalationOut


class FieldErrorOut(Schema):
    field: str = Field(description="A dotted path: history.3.at")
    message: str


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
