"""Sending one notification on its channel: e-mail (Django's mail backend; text and HTML,
with action links), Slack (the Slack app's chat.postMessage with Block Kit, or an incoming
webhook), a signed generic webhook (the signature of escalations.transport.webhooks), or
web push to the person's browsers.

`send` never raises: every failure comes back as a Result saying whether to retry.
"""

import smtplib
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.urls import reverse

from escalations.models import Escalation
from escalations.services.deliveries import RETRYABLE
from escalations.transport import webhooks

from . import inbound, push, rules, slack
from .messages import Message, absolute, email_body
from .models import Channel, Notification, slack_settles


@dataclass(frozen=True)
class Result:
    ok: bool
    retryable: bool = False
    error: str = ""
    slack_channel: str = ""  # where the Slack app posted it
    slack_ts: str = ""


def send(notification: Notification) -> Result:
    """One attempt at sending `notification` (its user's preferences loaded)."""
    if notification.channel == Channel.EMAIL:
        return _email(notification)
    if notification.channel == Channel.PUSH:
        sent = push.send(notification)
        return Result(sent.ok, sent.retryable, sent.error)
    if notification.channel == Channel.SLACK and not notification.target.startswith(("https://", "http://")):
        if not slack.configured():
            return Result(False, error="the Slack app is not set up (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET)")
        posted = slack.post_message(notification.target, _slack_payload(notification))
        return Result(posted.ok, posted.retryable, posted.error, slack_channel=posted.channel, slack_ts=posted.ts)
    secret = None
    if notification.channel == Channel.WEBHOOK:
        preference = getattr(notification.user, "notification_preference", None)
        secret = preference.webhook_secret if preference else ""
        if not secret:
            return Result(False, error="no signing secret: create one in the notification settings")
    outcome = webhooks.post(
        notification.target, notification.payload, delivery_id=str(notification.id), secret=secret
    )
    code = outcome.status_code
    if code is not None and 200 <= code < 300:
        return Result(True)
    retryable = code is None or code >= 500 or code in RETRYABLE
    return Result(False, retryable, outcome.error or f"HTTP {code}: {outcome.excerpt[:200]}")


def _slack_payload(notification: Notification) -> dict:
    """The message as composed, or, when its escalation was decided meanwhile, as
    slack_close leaves it: no decide buttons on anything closed."""
    escalation = notification.escalation
    if escalation is not None and not escalation.is_open:
        return inbound.slack_closed_payload(escalation)
    return notification.payload


def slack_close(escalation_id: str) -> bool:
    """Once an escalation is no longer open (decided on any path, withdrawn, expired):
    update every message the Slack app posted about it that is behind its status in place
    to say who decided what (inbound.slack_closed_payload), without its decide buttons, and
    record the status each now shows (Notification.slack_shown_status). Idempotent: a
    message up to date is left alone, one whose text would not change (decided, then
    resumed) is only recorded. Returns whether to try again: Slack was down or busy for one
    of them; any other failure (the message deleted, the app removed from the channel) is
    logged and recorded, as nothing more can be done for that message.

    Runs for one escalation take turns (a decision expiring seconds after it was made sets
    off two): each locks the escalation's posted Slack rows first, in pk order (two runs
    never deadlock), and only then reads its status, so a run that waited sees what the one
    before it sent and recorded, and Slack's last update is the latest status. The
    escalation row itself is not locked (decisions and expiry write it). The lock is held
    across the chat.update calls, each bounded by the Slack client's timeout
    (slack.client(): WEBHOOK_TIMEOUT_SECONDS per connection and per read; a failed
    connection is tried once more). SQLite (the embedded mode) has no row locks, and a
    transaction there would hold the one write lock across Slack's answers: there, where
    every task runs in the one process, the runs take turns on a lock of the process."""
    with transaction.atomic() if connection.features.has_select_for_update else _EMBEDDED_TURNS:
        return _slack_close(escalation_id)


_EMBEDDED_TURNS = threading.Lock()


def _slack_close(escalation_id: str) -> bool:
    # Posted rows only: one still being sent (notification_record) never waits on Slack here.
    posted = list(
        Notification.objects.select_for_update()
        .filter(escalation_id=escalation_id, channel=Channel.SLACK)
        .exclude(slack_ts="")
        .order_by("pk")
        .values_list("pk", "slack_channel", "slack_ts", "slack_shown_status")
    )
    escalation = Escalation.objects.select_related("decision").filter(pk=escalation_id).first()
    if escalation is None or escalation.is_open:
        return False
    rows = [row for row in posted if row[3] != escalation.status]
    state = inbound.closed_state(escalation.status)
    payload = inbound.slack_closed_payload(escalation) if rows else {}
    done, retry = [], False
    for pk, channel, ts, shown in rows:
        if not shown or inbound.closed_state(shown) != state:
            sent = slack.update_message(channel, ts, payload)
            if not sent.ok and sent.retryable:
                retry = True
                continue
        done.append(pk)
    # A settled message is never overwritten: a run that read the status before it settled
    # (decided, then expired; on SQLite, where runs may overlap) records nothing over it.
    Notification.objects.filter(pk__in=done, slack_settled=False).update(
        slack_shown_status=escalation.status, slack_settled=slack_settles(escalation)
    )
    return retry


def action_links(notification: Notification) -> list[dict[str, str]]:
    """One signed link per option its recipient may decide from the message (an open
    escalation's reversible options), each with its label."""
    escalation = notification.escalation
    if escalation is None or notification.user is None or not escalation.is_open:
        return []
    links = []
    for option in escalation.options:
        if not rules.decidable_outside(escalation.options, escalation.action, option["key"]):
            continue
        token = inbound.link_token(user=notification.user, escalation=escalation, option_key=option["key"])
        links.append({
            "label": option.get("label") or option["key"],
            "recommended": bool(option.get("recommended")),
            "url": absolute(reverse("notifications:action", args=[token])),
        })
    return links


def _email(notification: Notification) -> Result:
    message = Message(notification.subject, notification.text, notification.link)
    links = action_links(notification)
    text = email_body(message, links)
    html = render_to_string(
        "notifications/email.html",
        {
            "message": message,
            "links": links,
            "escalation": notification.escalation,
            "settings_link": absolute(reverse("notifications:preferences")),
        },
    )
    email = EmailMultiAlternatives(
        subject=notification.subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.target],
    )
    email.attach_alternative(html, "text/html")
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as exc:  # the address itself: retrying will not help
        return Result(False, error=f"refused: {exc}"[:500])
    except Exception as exc:  # the server is down or slow: try again later
        return Result(False, retryable=True, error=f"{type(exc).__name__}: {exc}"[:500])
    return Result(True)
