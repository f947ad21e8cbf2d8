"""The domain's own exceptions: what a service refuses, for each caller (the agent API, the
reviewer API, the dashboard) to answer in its own way, in one place each.

Nothing here knows HTTP: escalations.problems.from_domain turns them into problem+json,
reviews.refusals into form errors and notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from escalations.models import Escalation


@dataclass
class FieldError:
    """What is wrong with one field; `field` is its dotted path (`history.3.at`)."""

    field: str
    message: str


class DomainError(Exception):
    """A write a rule refused. `detail` is for a person to read; `type` and `title` name
    the kind of refusal when a caller shows it (empty: the caller's default for the class);
    `extra` is what the refusal carries beside (the escalation that stands, ...)."""

    def __init__(
        self, detail: str, *, type: str = "", title: str = "", extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.type = type
        self.title = title
        self.extra = extra or {}


class Invalid(DomainError):
    """The input breaks a rule; each FieldError names the field."""

    def __init__(self, errors: list[FieldError], *, type: str = "", title: str = "") -> None:
        count = len(errors)
        super().__init__(
            f"{count} field{'s' if count != 1 else ''} need{'s' if count == 1 else ''} attention",
            type=type,
            title=title,
        )
        self.errors = errors


class NotFound(DomainError):
    """What the write is about does not exist (for this caller)."""


class Conflict(DomainError):
    """The state of things refuses the write (decided already, a key used with another
    body, a run with an open escalation, ...)."""


class Forbidden(DomainError):
    """The caller may not make this write."""


class AlreadyDecided(Conflict):
    """The escalation is no longer open; `escalation` is it as it stands (decision loaded)."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"escalation {escalation.id} is {escalation.status}")
        self.escalation = escalation


class ClaimedByOther(Conflict):
    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"claimed by {escalation.claimed_by}")
        self.escalation = escalation


class ClaimLost(Conflict):
    """The user holds no live claim on the escalation any more (released, lapsed, reassigned
    or decided); `escalation` is it as it stands."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"no live claim on {escalation.id}")
        self.escalation = escalation
