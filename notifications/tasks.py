"""Celery tasks of notifications: send one message, sweep the stragglers (the rows are
written in the transaction of the event, notifications.receivers).

Ids in, services do the work; every task is safe to run twice, late, or on a row that is
gone (rows are keyed per event and claimed by compare-and-swap).
"""

# celery-types makes Task generic for the checker only: annotations stay unevaluated.
from __future__ import annotations

import logging

from celery import Task, shared_task
from django.utils import timezone

from escalations.models import Escalation
from escalations.services.outbox import outbox_retry_wait
from escalations.tasks import enqueue_send, follow_lease, lease_seconds, outbox_send_task, publish

from . import channels, selectors, services, slack
from .models import Notification, slack_settles

log = logging.getLogger(__name__)

# Short retries ride on a countdown; later ones are the sweep's (as webhook deliveries do).
COUNTDOWN_LIMIT_SECONDS = 300


@outbox_send_task
def send_notification_task(self: Task[[str], None], notification_id: str) -> None:
    """Send one row if it is due and nobody else is sending it; record the attempt. A
    transient failure due again within COUNTDOWN_LIMIT_SECONDS is re-enqueued with a
    countdown; a failed channel never holds up another row (each row is its own task). A
    message put back after its worker child died comes back when the lease lapses."""
    notification = services.notification_claim(
        notification_id=notification_id, lease_seconds=lease_seconds(self)
    )
    if notification is None:
        follow_lease(self, Notification, notification_id)
        return
    result = channels.send(notification)
    # As channels.send saw it: a message posted with its buttons about an open escalation,
    # or one posted closed (showing that status).
    escalation = notification.escalation if result.slack_ts else None
    posted_open = escalation is not None and escalation.is_open
    shown = escalation if escalation is not None and not posted_open else None
    try:
        notification = services.notification_record(
            notification=notification, ok=result.ok, retryable=result.retryable, error=result.error,
            slack_channel=result.slack_channel, slack_ts=result.slack_ts,
            slack_shown_status=shown.status if shown is not None else "",
            slack_settled=shown is not None and slack_settles(shown),
        )
    except Notification.DoesNotExist:
        return
    if escalation is not None and posted_open and not Escalation.objects.filter(
        pk=escalation.pk, status__in=Escalation.OPEN_STATUSES
    ).exists():  # decided while the message was on its way, after slack_close looked for it
        enqueue_slack_close(str(escalation.pk))
    if notification.status == Notification.Status.RETRYING:
        wait = (notification.next_attempt_at - timezone.now()).total_seconds()
        if wait <= COUNTDOWN_LIMIT_SECONDS:
            _enqueue_send(notification_id, countdown=max(0.0, wait))


def _enqueue_send(notification_id: str, countdown: float = 0) -> bool:
    return enqueue_send(send_notification_task, notification_id, countdown=countdown)


@shared_task(ignore_result=True)
def sweep_notifications_task() -> int:
    """Re-enqueue rows a lost message or a crashed worker left behind. Returns how many."""
    enqueued = 0
    for notification_id in services.notifications_sweep():
        if not _enqueue_send(notification_id):
            break
        enqueued += 1
    return enqueued


# A Slack message left with its buttons after a decision misleads only until someone clicks
# (the click then says "already decided"): a few quick tries, with the outbox's backoff;
# beat's sweep (sweep_slack_task) takes over after them.
SLACK_CLOSE_RETRIES = 6


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=70)
def slack_close_task(escalation_id: str, tried: int = 0) -> None:
    """After an escalation is closed (decided, withdrawn, expired): its Slack messages say
    so, without buttons (channels.slack_close). Slack down or busy: enqueued again with
    backoff, as the outbox's tasks are (`tried` counts the tries before this one; eager,
    they all run at once), then left to the sweep; nothing else waits on it."""
    if not channels.slack_close(escalation_id):
        return
    if tried >= SLACK_CLOSE_RETRIES:
        log.warning("slack messages of escalation %s not updated: Slack kept failing; left to the sweep", escalation_id)
        return
    wait = outbox_retry_wait(tried + 1).total_seconds()
    enqueue_slack_close(escalation_id, tried=tried + 1, countdown=wait)


def enqueue_slack_close(escalation_id: str, *, tried: int = 0, countdown: float = 0) -> None:
    """After commit (a receiver of the domain's `decided`, `withdrawn`, `expired`), or a try
    again: a failure is logged (publish), and beat's sweep (sweep_slack_task) updates the
    messages once the broker is back."""
    publish(slack_close_task, (escalation_id, tried), countdown=countdown,
            missed=f"the slack messages of escalation {escalation_id}; the sweep will update them")  # fmt: skip


# At most this many escalations' messages a sweep (Slack's chat.update allows ~50 a minute).
SLACK_SWEEP_BATCH = 20


@shared_task(ignore_result=True, soft_time_limit=45, time_limit=55)
def sweep_slack_task() -> int:
    """Bring Slack messages behind their escalation's closed status up to date
    (channels.slack_close): a decision whose update was never enqueued (the broker was
    down), one Slack kept refusing, a decision that expired since. Stops at the first
    Slack outage (the next sweep goes on). Returns how many escalations' messages it
    brought up to date."""
    if not slack.configured():
        return 0
    done = 0
    for escalation_id in selectors.slack_behind(limit=SLACK_SWEEP_BATCH):
        if channels.slack_close(escalation_id):
            break
        done += 1
    return done


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=40)
def slack_reply_task(reply: dict) -> None:
    """After a Slack click: update the message in place, explain a refusal ephemerally."""
    from . import inbound

    inbound.slack_reply(**reply)
