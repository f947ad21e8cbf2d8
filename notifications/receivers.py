"""Listens to the domain's `notable` signal and hands each event to a Celery task.

The signal is sent after commit (escalations.signals.notable_on_commit); the receiver only
enqueues, so no request ever waits on a mail server or a webhook. When the broker is down
the receiver writes the outbox rows itself, so an outage delays a notification but never
loses it (the sweep sends the rows once the broker is back).
"""

import json
import logging

from django.core.serializers.json import DjangoJSONEncoder

from escalations.signals import notable

from .models import Kind

log = logging.getLogger(__name__)


def on_notable(sender, *, event: str, escalation=None, agent=None, data=None, **kwargs) -> None:
    if event not in Kind.values or event == Kind.TEST:
        log.warning("notable event %r is not one notifications knows", event)
        return
    # Ids and plain JSON only: the task re-reads the rows.
    _enqueue_fan_out(
        event,
        str(escalation.pk) if escalation is not None else None,
        agent.pk if agent is not None else None,
        json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
    )


def _enqueue_fan_out(event: str, escalation_id: str | None, agent_id: int | None, data: dict) -> None:
    from .tasks import fan_out_task

    try:
        fan_out_task.delay(event, escalation_id, agent_id, data)
    except Exception as exc:
        # The broker is down. Write the outbox rows here instead (a few queries, only during
        # an outage): their sends fail to enqueue too, and the sweep sends them once it is back.
        log.warning(
            "notification of %s not enqueued (%s: %s); writing its outbox rows here",
            event, type(exc).__name__, exc,
        )
        from .services import notifications_fan_out

        notifications_fan_out(
            kind=event, escalation_id=escalation_id, agent_id=agent_id, data=data
        )


def connect() -> None:
    notable.connect(on_notable, dispatch_uid="notifications.on_notable")
