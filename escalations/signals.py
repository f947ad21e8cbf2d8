"""Named domain events that other apps may act on (notifications, for one).

The domain never imports the apps that listen (DESIGN.md: `reviews` and the like import
`escalations`, never the reverse). Services send `notable` from `transaction.on_commit`,
so a receiver only ever sees what was committed, and must not block: receivers enqueue
Celery tasks and return.

    notable.send(sender=None, event="halt_created", escalation=..., data={...})

Events (the `event` argument):
- "halt_created": a new tier-4 escalation (escalation=)
- "level_raised": an escalation reached a new level (escalation=, data={"level": n})
- "delivery_failed": a decision's webhook delivery failed for good (escalation=)
- "over_budget": an agent went over its daily escalation budget (agent=)
- "drift_alert": an agent's escalation rate climbed (agent=, data={...the numbers})
"""

import logging

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

notable = Signal()


def notable_on_commit(event: str, **kwargs) -> None:
    """Send `notable` once the current transaction commits (at once outside one).

    Nothing is sent if the transaction rolls back. A receiver that raises is logged, never
    raised: the write has committed and its answer must not become a 500.
    """

    def send() -> None:
        for receiver, result in notable.send_robust(sender=None, event=event, **kwargs):
            if isinstance(result, Exception):
                log.error(
                    "notable %s: receiver %r failed", event, receiver, exc_info=result
                )

    transaction.on_commit(send)
