"""What the domain's services take from a caller: plain, already-checked values, whatever
the transport (the agent API's ninja schemas build these in the view; a test or a command
builds them directly)."""

from dataclasses import dataclass


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
