"""The timeline: the one writer of `Event` rows, each announced live after commit."""

import json
from datetime import datetime
from typing import Any

from escalations import rows
from escalations.models import Escalation, Event
from escalations.transport import events


def record(
    escalation: Escalation, kind: str, *, actor: str, now: datetime, data: dict[str, Any] | None = None, announce: bool = True
) -> Event:
    """Inside a transaction: one timeline event, announced live (as `kind`) on commit.
    Every service that adds to an escalation's timeline goes through here (an architecture
    test holds it: tests/test_event_writer.py). announce=False leaves the live notice to the
    caller, for one that names another kind or actor, or is sent later in the transaction."""
    event = Event(escalation=escalation, kind=kind, actor=actor, at=now, data=data or {})
    rows.insert(event)
    if announce:
        events.announce(escalation, str(kind), actor=actor)
    return event


def record_in_statement(
    escalation: Escalation, kind: str, *, actor: str, now: datetime, source: str, data: dict[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """record()'s event as part of a caller's statement: (sql, params) of the INSERT of the
    same row for each row of `source` (a CTE that returns the escalation's `id`), for a
    service that writes the escalation and its event in one statement. Not announced: the
    caller announces once the statement has run, as record() would on commit."""
    event = Event(escalation=escalation, kind=kind, actor=actor, at=now, data=data or {})
    return rows.insert_select(event, source, {"escalation_id": f"{source}.id"})


def record_sql(source: str) -> str:
    """The set-based form of record(), for a service that writes a change and its event in one
    statement: an INSERT of one event per row of `source` (a CTE of the statement that returns
    the escalations' `id`), with the named parameters of record_params(). The caller announces
    the change (events.announce) once the statement has run, as record() would on commit."""
    return (
        f"INSERT INTO {Event._meta.db_table} (escalation_id, kind, actor, data, at)"  # noqa: S608 (the model's own table)
        f" SELECT id, %(event_kind)s, %(event_actor)s, %(event_data)s::jsonb, %(event_at)s FROM {source}"
    )


def record_params(kind: str, *, actor: str, now: datetime, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of record_sql()."""
    return {"event_kind": str(kind), "event_actor": actor, "event_data": json.dumps(data or {}), "event_at": now}
