"""Every write of notifications: preferences, the fan-out of an event into outbox rows,
and the life of one row (claimed for sending, its attempt recorded).

Sending happens in tasks, outside any transaction; rows are enqueued after commit, and a
periodic sweep sends whatever a lost message or a crashed worker left behind.
"""

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.models import Agent, Escalation, Event
from escalations.services import outbox, timeline
from escalations.transport import events
from operations import metrics

from . import push, rules, selectors, slack
from .messages import Message, compose, slack_body, webhook_body
from .models import Channel, Kind, Notification, NotificationPreference

log = logging.getLogger(__name__)

SUBJECT_CHARS = 300

# ---------------------------------------------------------------- preferences


def preferences_save(
    *,
    user,
    choices: dict[str, list[str]],
    slack_url: str = "",
    webhook_url: str = "",
    slack_user_id: str | None = None,
    now: datetime | None = None,
) -> tuple[NotificationPreference, str | None]:
    """Save a person's choices (event kind -> channels) and where their channels go.

    Unknown kinds and channels are dropped. A webhook URL set for the first time gets a
    signing secret. `slack_user_id` links the person's Slack member id (the Slack app messages
    them there, and their clicks decide as them). Returns (preferences, the new secret or None): the secret is shown to
    the person once, by the caller.
    """
    now = now or timezone.now()
    clean = {
        kind: [channel for channel in Channel.values if channel in channels]
        for kind, channels in choices.items()
        if kind in Kind.values and kind != Kind.TEST
    }
    with transaction.atomic():
        preference, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
        preference.choices, preference.updated_at = clean, now
        preference.slack_url, preference.webhook_url = slack_url, webhook_url
        if slack_user_id is not None:  # None: left as it was
            preference.slack_user_id = slack_user_id.strip()
        secret = None
        if webhook_url and not preference.webhook_secret:
            secret = preference.webhook_secret = NotificationPreference.new_secret()
        preference.save()
    return preference, secret


def webhook_secret_rotate(*, user, now: datetime | None = None) -> str:
    """A new signing secret for the person's webhook (the old one stops working at once).
    Returns it: the only time it is shown."""
    now = now or timezone.now()
    secret = NotificationPreference.new_secret()
    with transaction.atomic():
        preference, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
        preference.webhook_secret, preference.updated_at = secret, now
        preference.save(update_fields=["webhook_secret", "updated_at"])
    return secret


# ---------------------------------------------------------------- fan-out


def notifications_fan_out(
    *,
    kind: str,
    escalation_id: str | None = None,
    agent_id: int | None = None,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Turn one event into outbox rows: one per recipient and channel they chose.

    Who: selectors.recipients; which channels: their preferences (rules.channels_for).
    Idempotent: rows are keyed by the event's identity (rules.event_key), recipient and
    channel, so the same event told twice creates nothing new. The escalation's timeline
    gets a NOTIFIED event naming who was told and how. On commit, each new row's send task
    is enqueued. A vanished escalation or agent sends nothing. Returns the new rows' ids.
    """
    now = now or timezone.now()
    data = data or {}
    escalation = agent = None
    try:
        if escalation_id is not None:
            escalation = (
                Escalation.objects.select_related("agent", "run").filter(pk=escalation_id).first()
            )
            agent = escalation.agent if escalation is not None else None
        elif agent_id is not None:
            agent = Agent.objects.filter(pk=agent_id).first()
    except (ValidationError, ValueError, TypeError):  # not an id at all
        agent = None
    if agent is None:
        log.warning("notification %s names no escalation or agent that exists", kind)
        return []
    domain = escalation.domain if escalation is not None else agent.domain
    people = selectors.recipients(kind, domain=domain, level=data.get("level"), asked_by=data.get("asked_by"))
    # Agent events are about the agent (one over-budget message a day, whichever escalation
    # went over); the rest about their escalation.
    agent_event = kind in (Kind.OVER_BUDGET, Kind.DRIFT_ALERT) or escalation is None
    subject = str(escalation.pk) if escalation is not None and not agent_event else f"agent-{agent.pk}"
    event_key = rules.event_key(kind, subject, data)
    # A drift alert is about the agent alone; over budget names (and links to) the
    # escalation that went over.
    about = escalation if kind != Kind.DRIFT_ALERT else None
    message = compose(kind, escalation=about, agent=agent, data=data)
    rows = _rows(kind, people, message, event_key=event_key, escalation=about, agent=agent, data=data, now=now)
    return _insert(rows, escalation=escalation, kind=kind, now=now)


def notification_test(*, user, now: datetime | None = None) -> list[Notification]:
    """A test message to every channel the person has set up, sent like any other.
    Returns the rows (none when no channel is set up)."""
    now = now or timezone.now()
    user = get_user_model().objects.select_related("notification_preference").get(pk=user.pk)
    message = compose(Kind.TEST, data={})
    rows = _rows(
        Kind.TEST, [user], message, event_key=f"test:{user.pk}:{now.isoformat()}", now=now
    )
    _insert(rows, escalation=None, kind=Kind.TEST, now=now)
    return rows


def _preference(user) -> NotificationPreference | None:
    try:
        return user.notification_preference
    except NotificationPreference.DoesNotExist:
        return None


def _rows(
    kind: str,
    people: list,
    message: Message,
    *,
    event_key: str,
    now: datetime,
    escalation: Escalation | None = None,
    agent: Agent | None = None,
    data: dict | None = None,
) -> list[Notification]:
    subject = " ".join(message.subject.split())[:SUBJECT_CHARS]  # no header injection
    pushable = selectors.with_push_subscriptions([user.pk for user in people])
    rows = []
    for user in people:
        preference = _preference(user)
        where: dict[str, Any] = {
            "email": user.email or "",
            "slack_url": preference.slack_url if preference else "",
            "webhook_url": preference.webhook_url if preference else "",
            # Through the Slack app when it is set up and the person linked their member id.
            "slack_member": preference.slack_user_id if preference and slack.configured() else "",
            "push": push.configured() and user.pk in pushable,
        }
        choices = preference.choices if preference else None
        for channel in rules.channels_for(kind, choices=choices, **where):
            row = Notification(
                key=f"{event_key}:{user.pk}:{channel}",
                kind=kind,
                channel=channel,
                user=user,
                recipient=user.get_username(),
                target=rules.target(channel, **where),
                subject=subject,
                text=message.text,
                link=message.link,
                escalation=escalation,
                created_at=now,
                next_attempt_at=now,
            )
            if channel == Channel.SLACK and where["slack_member"]:
                row.payload = slack.message_payload(message, escalation, with_text=kind == Kind.QUESTION_ANSWERED)
            elif channel == Channel.SLACK:
                row.payload = slack_body(message)
            elif channel == Channel.WEBHOOK:
                row.payload = webhook_body(
                    kind, message, notification_id=str(row.id), escalation=escalation,
                    agent=agent, data=data,
                )
            rows.append(row)
    return rows


def _insert(rows: list[Notification], *, escalation: Escalation | None, kind: str, now: datetime) -> list[str]:
    with transaction.atomic():
        known = set(
            Notification.objects.filter(key__in=[row.key for row in rows]).values_list("key", flat=True)
        )
        new = [row for row in rows if row.key not in known]
        # A concurrent fan-out of the same event may insert first: its rows win, quietly.
        Notification.objects.bulk_create(new, ignore_conflicts=True)
        if escalation is not None and new:
            timeline.record(
                escalation,
                Event.Kind.NOTIFIED,
                actor="notifications",
                now=now,
                announce=False,
                data={
                    "event": kind,
                    "people": sorted({row.recipient for row in new}),
                    "channels": sorted({row.channel for row in new}),
                },
            )
            events.announce(escalation, "notified")
        ids = [str(row.id) for row in new]
        transaction.on_commit(lambda: _enqueue_sends(ids))
    return ids


def _enqueue_sends(ids: list[str]) -> None:
    """After commit: one send task per row. A broker outage is logged: the sweep sends them."""
    from .tasks import send_notification_task

    for notification_id in ids:
        try:
            send_notification_task.delay(notification_id)
        except Exception as exc:
            log.warning("notification %s not enqueued (%s); the sweep will send it", notification_id, exc)
            return


# ---------------------------------------------------------------- sending


def notification_claim(
    *, notification_id, lease_seconds: float | None = None, now: datetime | None = None
) -> Notification | None:
    """Take a due row for sending (compare-and-swap to SENDING with a lease of
    `lease_seconds`, by default OUTBOX_LEASE_SECONDS), or None when it is gone, sent,
    failed, not due, or being sent by someone else."""
    if outbox.claim(Notification, notification_id, now=now or timezone.now(), lease_seconds=lease_seconds) is None:
        return None
    return Notification.objects.select_related("user__notification_preference").get(pk=notification_id)


def notification_record(
    *,
    notification: Notification,
    ok: bool,
    retryable: bool,
    error: str = "",
    slack_channel: str = "",
    slack_ts: str = "",
    slack_shown_status: str = "",
    slack_settled: bool = False,
    now: datetime | None = None,
) -> Notification:
    """Record one attempt: sent (where the Slack app posted it, when it did, and the closed
    status its message showed, when it was posted closed, and whether for good:
    models.slack_settles); retrying with exponential backoff and jitter (a transient
    failure whose next attempt falls within the row's retry window, NOTIFICATION_RETRY_FOR_SECONDS:
    the outbox's one give-up rule); or failed for good."""
    now = now or timezone.now()
    with transaction.atomic():
        row = Notification.objects.select_for_update().get(pk=notification.pk)
        row.attempts += 1
        row.lease_until = None
        if ok:
            row.status, row.sent_at, row.last_error = Notification.Status.SENT, now, ""
            row.slack_channel, row.slack_ts = slack_channel[:64], slack_ts[:32]
            row.slack_shown_status, row.slack_settled = slack_shown_status, slack_settled
        else:
            row.last_error = (error or "failed")[:500]
            next_at = outbox.retry_at(row.attempts, now=now, give_up_at=row.give_up_at())
            if retryable and next_at is not None:
                row.status = Notification.Status.RETRYING
                row.next_attempt_at = next_at
            else:
                row.status = Notification.Status.FAILED
            final = "true" if row.status == Notification.Status.FAILED else "false"
            metrics.count_on_commit(metrics.NOTIFICATION_FAILURES, channel=row.channel, final=final)
        row.save(
            update_fields=[
                "attempts", "lease_until", "status", "sent_at", "last_error", "next_attempt_at",
                "slack_channel", "slack_ts", "slack_shown_status", "slack_settled",
            ]
        )
    return row


def notifications_sweep(*, now: datetime | None = None, grace_seconds: float = 10) -> list[str]:
    """Ids of rows to (re-)enqueue: due ones a lost message or a crashed worker left behind,
    at most BATCH_SIZE, oldest due first. Fresh pending rows are left to their own task;
    each row returned is marked for one lease so the next sweeps leave it alone."""
    return outbox.outbox_sweep(Notification, now=now or timezone.now(), grace_seconds=grace_seconds)
