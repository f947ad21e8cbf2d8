"""Domain announcements, sent after commit: live updates for browsers, wake-ups for agents.

The domain states facts ("escalation X changed: decided"); reviews' consumers decide how
to render them. Both transports are hints on top of the database: a lost message never
loses state, because pages re-sync on reconnect and long-polls re-read the row.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import wakeup

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"


def escalation_group(escalation_id) -> str:
    return f"escalation-{escalation_id}"


def _send(escalation_id: str, agent_id: int, kind: str, status: str) -> None:
    message = {"type": "escalation.changed", "id": escalation_id, "kind": kind, "status": status}
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(QUEUE_GROUP, message)
            async_to_sync(layer.group_send)(escalation_group(escalation_id), message)
    except Exception:  # a channel-layer outage must never undo or fail a committed write
        log.warning("live update for %s (%s) not sent", escalation_id, kind, exc_info=True)
    if status not in ("pending", "claimed"):
        wakeup.notify(escalation_id=escalation_id, agent_id=agent_id)


def announce(escalation, kind: str) -> None:
    """Tell everyone watching that `escalation` changed, once the transaction commits."""
    escalation_id, agent_id, status = str(escalation.id), escalation.agent_id, escalation.status
    transaction.on_commit(lambda: _send(escalation_id, agent_id, kind, status))
