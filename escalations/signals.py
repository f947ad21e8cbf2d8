"""Named domain events that other apps may act on (notifications, for one).

The domain never imports the apps that listen (DESIGN.md: `reviews` and the like import
`escalations`, never the reverse). Services send `notable` inside the transaction of the
change that causes it (notable_in_transaction), as a decision writes its Delivery row: a
receiver writes its outbox rows there, so they commit or roll back with the change, and a
crash right after the commit loses nothing (the outbox's sweep sends whatever was never
enqueued). Receivers must not block: they write rows, and do their I/O after commit
(transaction.on_commit, Celery tasks).

    notable_in_transaction("halt_created", escalation=...)

Events (the `event` argument):
- "halt_created": a new tier-4 escalation (escalation=)
- "level_raised": an escalation reached a new level (escalation=, data={"level": n})
- "delivery_failed": a decision's webhook delivery failed for good (escalation=)
- "over_budget": an agent went over its daily escalation budget (agent=)
- "drift_alert": an agent's escalation rate climbed (agent=, data={...the numbers})
- "first_look_ended": a machine's first look ended undecided (escalation=, data={...})
- "question_answered": the agent answered a reviewer's question (escalation=,
  data={"asked_by", "asked_at", "question", "answer"})
- "decided": an escalation was decided, on any path (escalation=). Sent after commit
  (notable_on_commit): its receivers only start I/O (Slack messages updated in place).
- "withdrawn": the agent took an escalation back (escalation=). After commit, as "decided".
- "expired": a decision expired before the agent acted on it (escalation=). After commit,
  as "decided".
"""

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

notable = Signal()


def notable_in_transaction(event: str, **kwargs: Any) -> None:
    """Send `notable` now, inside the current transaction (call it inside the change's own
    `transaction.atomic()`); nothing is kept if that transaction rolls back.

    The receivers run in a savepoint. One that raises is logged, never raised, and the
    receivers' writes are undone: the change itself stands and its answer is not a 500.
    """
    try:
        with transaction.atomic():
            for receiver, result in notable.send_robust(sender=None, event=event, **kwargs):
                if isinstance(result, Exception):
                    log.error("notable %s: receiver %r failed", event, receiver, exc_info=result)
    except Exception:  # a receiver left the savepoint unusable (a failed query)
        log.exception("notable %s: a receiver's writes failed and were undone", event)


def notable_on_commit(event: str, **kwargs: Any) -> None:
    """Send `notable` once the current transaction commits (never if it rolls back), for an
    event whose receivers only start I/O and write nothing with the change: it costs the
    change's transaction nothing. A receiver that raises is logged, never raised."""

    def send() -> None:
        for receiver, result in notable.send_robust(sender=None, event=event, **kwargs):
            if isinstance(result, Exception):
                log.error("notable %s: receiver %r failed", event, receiver, exc_info=result)

    transaction.on_commit(send)
