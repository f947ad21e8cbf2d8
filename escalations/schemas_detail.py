"""The reviewer API's detail: the escalation as the other reviewer answers give it, plus
its precedents (escalations.precedents)."""

import uuid
from datetime import datetime

from ninja import Schema
from pydantic import Field

from .review_schemas import ReviewerEscalationOut
from .schemas import DecisionOut


class PrecedentOut(Schema):
    """A decided escalation like this one: what was decided, by whom, when."""

    id: uuid.UUID
    title: str
    decision: DecisionOut
    decided_at: datetime
    url: str


class ReviewerDetailOut(ReviewerEscalationOut):
    similar: list[PrecedentOut] = Field(
        description="Up to 5 decided escalations of the same agent or domain with the closest titles."
    )
