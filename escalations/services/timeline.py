"""The timeline: the one writer of `Event` rows, each announced live after commit."""

from datetime import datetime
from typing import Any

from escalations.models import Escalation, Event
from escalations.transport import events


def record(
    escalation: Escalation, kind: str, *, actor: str, now: datetime, data: dict[str, Any] | None = None, announce: bool = True
) -> Event:
    """Inside a transaction: one timeline event, announced live (as `kind`) on commit.
    Every service that adds to an escalation's timeline goes through here (an architecture
    test holds it: tests/test_event_writer.py). announce=False leaves the live notice to the
    caller, for one that names another kind or actor, or is sent later in the transaction."""
    event = Event.objects.create(
        escalation=escalation, kind=kind, actor=actor, at=now, data=data or {}
    )
    if announce:
        events.announce(escalation, str(kind), actor=actor)
    return event
