"""Listens to the domain's `notable` signal and writes each event's outbox rows.

The signal comes inside the transaction of the change that causes it
(escalations.signals.notable_in_transaction), so the rows commit, or roll back, with that
change, as a decision's Delivery row does; their send tasks are enqueued after commit. A
crash between the commit and the enqueue, or a broker outage then, delays a notification
but never loses it: the sweep sends the rows. No request waits on a mail server or a
webhook: the receiver only writes rows.
"""

import json
import logging

from django.core.serializers.json import DjangoJSONEncoder

from escalations.signals import notable

from . import slack
from .models import Channel, Kind, Notification

log = logging.getLogger(__name__)


def on_notable(sender, *, event: str, escalation=None, agent=None, data=None, **kwargs) -> None:
    if event in CLOSED:
        on_closed(escalation)
        return
    if event not in Kind.values or event == Kind.TEST:
        log.warning("notable event %r is not one notifications knows", event)
        return
    from .services import notifications_fan_out

    notifications_fan_out(
        kind=event,
        escalation_id=str(escalation.pk) if escalation is not None else None,
        agent_id=agent.pk if agent is not None else None,
        # Plain JSON only: the rows store it.
        data=json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
    )


# Sent after commit (notable_on_commit), no message of their own: a decision (any path), the
# agent's withdrawal, and a decision's expiry, each of which leaves the escalation closed.
CLOSED = ("decided", "withdrawn", "expired")


def on_closed(escalation) -> None:
    """After a decision, a withdrawal or an expiry commits: the Slack messages the app posted
    about the escalation are updated in place (tasks.slack_close_task), when there are any.
    Should the broker be down, beat's sweep does it (tasks.sweep_slack_task)."""
    if escalation is None or not slack.configured():
        return
    from .tasks import enqueue_slack_close

    posted = Notification.objects.filter(escalation_id=escalation.pk, channel=Channel.SLACK).exclude(slack_ts="")
    if posted.exists():
        enqueue_slack_close(str(escalation.pk))


def connect() -> None:
    notable.connect(on_notable, dispatch_uid="notifications.on_notable")
