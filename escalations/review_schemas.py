"""The reviewer API's own shapes (API.md, "Reviewer API"): what a reviewer or a machine
reviewer sends beside a decision, and the detail it reads. The escalation object and the
agents' shapes are escalations.schemas."""

from datetime import datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import ConfigDict, Field, StrictStr

from .fields import JsonObject, OptionKey
from .limits import TEXT_MAX_CHARS
from .schemas import (
    ActionOut,
    ClaimOut,
    CostOfDelayOut,
    DecidedByOut,
    EscalationOut,
    LinkOut,
    OptionOut,
    StepOut,
    Strict,
)


class RecommendationIn(Strict):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"option": "update-callers", "note": "The callers all live in billing/; the change is mechanical.",
         "confidence": 0.8},
    ]})

    option: OptionKey
    args: JsonObject | None = None
    note: Annotated[StrictStr, Field(min_length=1, max_length=TEXT_MAX_CHARS)]
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)] | None = None



class RecommendationOut(Schema):
    """A reviewer's advice (a machine's first look, or a person's) that decided nothing."""

    option: str
    args: dict[str, Any] | None
    note: str
    confidence: Annotated[float, Field(ge=0, le=1)] | None
    by: DecidedByOut = Field(description="`type` is `machine` or `human`.")
    at: datetime


class FirstLookOut(Schema):
    name: str = Field(description="The machine reviewer offered the first look.")
    until: datetime = Field(description="When the look ends (or ended): people are told then.")


class ReviewerEscalationOut(EscalationOut):
    """The escalation object, the whole package as posted, and who holds the claim."""

    uncertainty: str
    history: list[StepOut]
    options: list[OptionOut]
    cost_of_delay: CostOfDelayOut
    action: ActionOut | None
    attempts: int
    timeout_option: str | None
    links: list[LinkOut]
    metadata: dict[str, Any]
    claimed_by: ClaimOut | None
    recommendations: list[RecommendationOut] = Field(
        default_factory=list, description="Advice left by reviewers that did not decide, newest first."
    )
    first_look: FirstLookOut | None = None


class ApprovalsOut(Schema):
    required: int
    approved: int
    option: str | None
    approved_by: list[str]


class PendingApprovalOut(EscalationOut):
    """202 under the two-person rule: this approval is recorded, the decision waits."""

    approvals: ApprovalsOut | None




class QuestionIn(Schema):
    text: str = Field(min_length=1, max_length=4000, description="What the agent should tell you.")


class EventOut(Schema):
    at: datetime
    kind: str
    actor: str = Field(description="Who: a reviewer, the agent's name, policy, timeout, webhook...")
    data: dict[str, Any]


class EventsOut(Schema):
    """The audit timeline of one escalation, oldest first."""

    items: list[EventOut]
