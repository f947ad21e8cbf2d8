"""The timeline: the one writer of `Event` rows, each announced live after commit."""

from datetime import datetime

from escalations.models import Escalation, Event
from escalations.transport import events


def record(escalation: Escalation, kind: str, *, actor: str, now: datetime, data=None) -> Event:
    """Inside a transaction: one timeline event, announced live (as `kind`) on commit.
    Every service that adds to an escalation's timeline goes through here."""
    event = Event.objects.create(
        escalation=escalation, kind=kind, actor=actor, at=now, data=data or {}
    )
    events.announce(escalation, str(kind), actor=actor)
    return event
