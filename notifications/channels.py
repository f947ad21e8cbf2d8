"""Sending one notification on its channel: e-mail (Django's mail backend), a Slack-style
incoming webhook, or a signed generic webhook (the signature of escalations.transport.webhooks).

`send` never raises: every failure comes back as a Result saying whether to retry.
"""

import smtplib
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage

from escalations.services.deliveries import RETRYABLE
from escalations.transport import webhooks

from .messages import Message, email_body
from .models import Channel, Notification


@dataclass(frozen=True)
class Result:
    ok: bool
    retryable: bool = False
    error: str = ""


def send(notification: Notification) -> Result:
    """One attempt at sending `notification` (its user's preferences loaded)."""
    if notification.channel == Channel.EMAIL:
        return _email(notification)
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


def _email(notification: Notification) -> Result:
    message = Message(notification.subject, notification.text, notification.link)
    email = EmailMessage(
        subject=notification.subject,
        body=email_body(message),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.target],
    )
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as exc:  # the address itself: retrying will not help
        return Result(False, error=f"refused: {exc}"[:500])
    except Exception as exc:  # the server is down or slow: try again later
        return Result(False, retryable=True, error=f"{type(exc).__name__}: {exc}"[:500])
    return Result(True)
