"""The domain's own exceptions: what a service refuses, for each caller (the agent API, the
reviewer API, the dashboard) to answer in its own way, in one place each."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from escalations.models import Escalation


class AlreadyDecided(Exception):
    """The escalation is no longer open; `escalation` is it as it stands (decision loaded)."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"escalation {escalation.id} is {escalation.status}")
        self.escalation = escalation


class ClaimedByOther(Exception):
    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"claimed by {escalation.claimed_by}")
        self.escalation = escalation


class ClaimLost(Exception):
    """The user holds no live claim on the escalation any more (released, lapsed, reassigned
    or decided); `escalation` is it as it stands."""

    def __init__(self, escalation: Escalation) -> None:
        super().__init__(f"no live claim on {escalation.id}")
        self.escalation = escalation
