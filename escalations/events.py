"""Domain announcements, sent after commit: live updates for browsers, wake-ups for agents.

The domain states facts ("escalation X changed: decided"); reviews' consumers decide how
to render them. Both transports are hints on top of the database: a lost message never
loses state, because pages re-sync on reconnect and long-polls re-read the row.
"""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from . import wakeup

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"

# The event loop that serves websockets in this process. The in-memory channel layer is not
# thread-safe, so in the embedded mode a write from another thread (the in-process Celery
# worker) hands its group_send to this loop instead of running it on a loop of its own.
_serving_loop: asyncio.AbstractEventLoop | None = None


def serve_on_running_loop() -> None:
    """Called by consumers: live updates of this process go out on the current loop."""
    global _serving_loop
    _serving_loop = asyncio.get_running_loop()


def _group_send(layer, group: str, message: dict) -> None:
    loop = _serving_loop
    if loop is not None and not loop.is_closed() and isinstance(layer, InMemoryChannelLayer):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=5)
            return
    async_to_sync(layer.group_send)(group, message)


def escalation_group(escalation_id) -> str:
    return f"escalation-{escalation_id}"


def _send(escalation_id: str, agent_id: int, kind: str, status: str) -> None:
    message = {"type": "escalation.changed", "id": escalation_id, "kind": kind, "status": status}
    try:
        layer = get_channel_layer()
        if layer is not None:
            _group_send(layer, QUEUE_GROUP, message)
            _group_send(layer, escalation_group(escalation_id), message)
    except Exception:  # a channel-layer outage must never undo or fail a committed write
        log.warning("live update for %s (%s) not sent", escalation_id, kind, exc_info=True)
    if status not in ("pending", "claimed"):
        wakeup.notify(escalation_id=escalation_id, agent_id=agent_id)


def announce(escalation, kind: str) -> None:
    """Tell everyone watching that `escalation` changed, once the transaction commits."""
    escalation_id, agent_id, status = str(escalation.id), escalation.agent_id, escalation.status
    transaction.on_commit(lambda: _send(escalation_id, agent_id, kind, status))
