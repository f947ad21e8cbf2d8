"""Typed exceptions. HTTP errors carry the RFC 9457 problem+json fields of the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Decision, Escalation


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem's `errors` list: a dotted `field` path and its `message`."""

    field: str
    message: str


class HandoffError(Exception):
    """Base of every error this package raises on purpose.

    For an HTTP error answer, `status`, `type`, `title`, `detail` and `errors` are the
    problem+json fields (empty when the body was not problem+json), `body` the parsed
    body and `headers` the response headers.
    """

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        type: str = "",
        title: str = "",
        errors: list[FieldError] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.body = dict(body or {})
        self.headers = dict(headers or {})
        super().__init__(self._message())

    def _message(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.title) if part)
        text = f"{head}: {self.detail}" if head and self.detail else head or self.detail
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        return text


class InvalidReceipt(HandoffError):
    """A decision's receipt did not verify: forged or altered, or not for the args or the
    decision at hand. Do not act on the decision."""


class DecisionExpired(InvalidReceipt):
    """The decision's valid_until has passed: do not act on it; escalate again."""


class BadRequest(HandoffError):
    """400 (malformed JSON or query), 413 (body over 1 MiB) or 415 (not JSON)."""


class Unauthorized(HandoffError):
    """401: unknown or revoked token (or 403: an agent token on the reviewer API)."""


class NotFound(HandoffError):
    """404: no such escalation for this agent (another agent's is not found either)."""


class Conflict(HandoffError):
    """409. `open_escalation` is the run's open escalation when that is the conflict,
    `escalation` the one an idempotency key already names, `decision` the decision that
    stands when something was already decided. Each is None when the body lacks it."""

    @property
    def open_escalation(self) -> Escalation | None:
        return self._escalation("open_escalation")

    @property
    def escalation(self) -> Escalation | None:
        return self._escalation("escalation")

    @property
    def decision(self) -> Decision | None:
        from .models import Decision

        if isinstance(self.body.get("decision"), dict):
            return Decision.from_dict(self.body["decision"])
        found = self.escalation or self.open_escalation
        return found.decision if found else None

    def _escalation(self, key: str) -> Escalation | None:
        from .models import Escalation

        value = self.body.get(key)
        return Escalation.from_dict(value) if isinstance(value, dict) else None


class ValidationFailed(HandoffError):
    """422: the package (or request) is invalid; `errors` names each field."""


class RateLimited(HandoffError):
    """429 after the retries ran out. `retry_after` is the server's hint in seconds."""

    @property
    def retry_after(self) -> float | None:
        from ._core import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(HandoffError):
    """5xx after the retries ran out."""


class TransportError(HandoffError):
    """The server could not be reached (after the retries ran out). `__cause__` is httpx's."""


class WaitTimeout(HandoffError, TimeoutError):
    """`wait()` gave up: the escalation is still open. `escalation` is its last state."""

    def __init__(self, escalation: Escalation, timeout: float) -> None:
        self.escalation = escalation
        super().__init__(
            f"escalation {escalation.id} is still {escalation.status} after {timeout:g} s"
        )


class InvalidSignature(HandoffError, ValueError):
    """A webhook's Handoff-Signature is missing, malformed, stale or does not match."""


# Outcomes of a decision that the agent must not treat as "go ahead" (see requires_approval).


class DecisionOutcome(HandoffError):
    """The decision tells the agent not to run the step. `escalation` carries it."""

    def __init__(self, escalation: Escalation, message: str) -> None:
        self.escalation = escalation
        super().__init__(message)

    @property
    def decision(self) -> Decision | None:
        return self.escalation.decision


class Halted(DecisionOutcome):
    """The reviewer halted the run: stop it and abandon the step."""


class TakenOver(DecisionOutcome):
    """A human took the run over: stop it and do not resume it."""


class InstructionGiven(DecisionOutcome):
    """The reviewer chose none of the options; `instruction` says what to do instead."""

    @property
    def instruction(self) -> str:
        decision = self.escalation.decision
        return (decision.instruction or "") if decision else ""


class Rejected(DecisionOutcome):
    """The reviewer chose an option that declines the action (e.g. "skip")."""

    @property
    def option(self) -> str | None:
        decision = self.escalation.decision
        return decision.option if decision else None


class Withdrawn(DecisionOutcome):
    """The escalation was withdrawn: there is no decision to act on."""


STATUS_ERRORS: dict[int, type[HandoffError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    422: ValidationFailed,
    429: RateLimited,
}
