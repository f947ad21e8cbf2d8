"""Notifications: what each person wants to hear about, and the outbox of messages to send.

A Notification row is one message to one person on one channel; a task sends it, with
retries, and records how it went. Rows are the truth: the dashboard reads them, never Celery.
"""

import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from escalations.models import Escalation, OutboxQuerySet


class Kind(models.TextChoices):
    """The events a person can be told about (escalations.signals.notable), and a test."""

    HALT_CREATED = "halt_created", "A new tier-4 halt"
    LEVEL_RAISED = "level_raised", "An escalation reached a new level"
    DELIVERY_FAILED = "delivery_failed", "A decision's delivery to its agent failed for good"
    OVER_BUDGET = "over_budget", "An agent went over its daily escalation budget"
    DRIFT_ALERT = "drift_alert", "An agent's escalation rate climbed (drift alert)"
    FIRST_LOOK_ENDED = "first_look_ended", "A machine's first look ended undecided: a person is needed"
    QUESTION_ANSWERED = "question_answered", "The agent answered a question you asked it"
    TEST = "test", "Test message"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"
    WEBHOOK = "webhook", "Webhook"
    PUSH = "push", "Browser push"


class NotificationPreference(models.Model):
    """One person's choices: which events reach them, on which channels, and where.

    Without a row, notifications.rules.DEFAULT_CHOICES apply (email for the events sent to
    managers and for levels naming the person; nothing for halts, which are opt-in).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    # Event kind -> the channels chosen for it, e.g. {"halt_created": ["email", "slack"]}.
    choices = models.JSONField(default=dict)
    slack_url = models.URLField("Slack incoming webhook URL", max_length=500, blank=True)
    # The person's Slack member id (U…): the Slack app messages them there, and a click in
    # Slack by this member decides as this person (notifications.inbound).
    slack_user_id = models.CharField("Slack member id", max_length=32, blank=True, db_index=True)
    webhook_url = models.URLField("Webhook URL", max_length=500, blank=True)
    # Signs generic webhooks like agents' deliveries (escalations.transport.webhooks); shown once.
    webhook_secret = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"notification preferences of {self.user_id}"

    @staticmethod
    def new_secret() -> str:
        return "whsec_" + secrets.token_urlsafe(32)


# Slack messages that may still need an update (selectors.slack_behind, and the partial index
# beat's sweep reads every minute): posted by the app, and not yet showing what they always
# will (Notification.slack_settled). Only these are scanned, so the sweep costs what is open
# or may still change, not every message ever posted (bench/README.md, "The Slack sweep at
# scale").
SETTLED_STATUSES = (Escalation.Status.RESUMED, Escalation.Status.WITHDRAWN, Escalation.Status.EXPIRED)
SLACK_UNSETTLED = Q(slack_ts__gt="", slack_settled=False)


def slack_settles(escalation: Escalation) -> bool:
    """Whether a message brought up to date with the escalation's status shows it for good:
    a status the escalation never leaves, or a decision that can never expire (no
    valid_until, fixed when it is made): only `resumed` may follow, which reads the same
    (inbound.closed_state). Without this, a decision a polling agent never acknowledges
    would keep its messages in the sweep's index forever."""
    if escalation.status in SETTLED_STATUSES:
        return True
    decision = getattr(escalation, "decision", None)
    return escalation.status == Escalation.Status.DECIDED and decision is not None and decision.valid_until is None


class Notification(models.Model):
    """One message to one person on one channel (an outbox row)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        RETRYING = "retrying"
        SENT = "sent"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The event's identity plus recipient and channel: a repeated event sends nothing twice.
    key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
    )
    recipient = models.CharField(max_length=150)
    # The address it goes to, as it was when the event happened: an email or a URL.
    target = models.CharField(max_length=500)
    subject = models.CharField(max_length=300)
    text = models.TextField()
    link = models.CharField(max_length=500)
    payload = models.JSONField(default=dict)
    escalation = models.ForeignKey(
        "escalations.Escalation", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Where the Slack app posted it (chat.postMessage's channel and ts): the message that is
    # updated in place once its escalation is closed (channels.slack_close).
    slack_channel = models.CharField(max_length=64, blank=True)
    slack_ts = models.CharField(max_length=32, blank=True)
    # The escalation status that message was last brought up to date with (blank: as
    # posted, about an open escalation). Behind the escalation's closed status, it is
    # updated again (channels.slack_close, after commit and by beat's sweep).
    # Defaults in the database too (db_default): code from before a migration still inserts
    # rows while a deploy runs it (compose's migrate runs before web is replaced).
    slack_shown_status = models.CharField(max_length=20, blank=True, default="", db_default="")
    # That message shows what it always will (slack_settles): it leaves the sweep's index.
    slack_settled = models.BooleanField(default=False, db_default=False)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            models.Index(fields=["user", "-created_at"], name="notification_user_idx"),
            models.Index(fields=["escalation"], condition=SLACK_UNSETTLED, name="notif_slack_sweep_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient} by {self.channel} ({self.status})"

    def give_up_at(self) -> datetime:
        """The end of its retry window (escalations.services.outbox: the give-up rule)."""
        return self.created_at + timedelta(seconds=settings.NOTIFICATION_RETRY_FOR_SECONDS)


class PushSubscription(models.Model):
    """One browser's Web Push subscription (PushSubscription.toJSON() of the Push API)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"push subscription of {self.user_id}"

    def info(self) -> dict:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class ActionLinkUse(models.Model):
    """An e-mail action link that was used: its nonce, once (the primary key makes it so)."""

    nonce = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    escalation = models.ForeignKey("escalations.Escalation", on_delete=models.CASCADE, related_name="+")
    option_key = models.CharField(max_length=64)
    used_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"action link {self.nonce} used"


class InboundAction(models.Model):
    """Every attempt to decide from outside the dashboard (a Slack click, an e-mail link),
    decided or refused, and why: the audit of what came in. The decision itself is on the
    escalation's timeline like any other."""

    class Via(models.TextChoices):
        SLACK = "slack", "Slack"
        EMAIL = "email", "E-mail link"

    class Outcome(models.TextChoices):
        DECIDED = "decided"
        ALREADY_DECIDED = "already_decided"
        REFUSED = "refused"

    via = models.CharField(max_length=10, choices=Via.choices)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reason = models.CharField(max_length=300, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who it came from outside: a Slack member id, or the link's user.
    external_user = models.CharField(max_length=64, blank=True)
    escalation = models.ForeignKey(
        "escalations.Escalation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    option_key = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.via} {self.outcome} {self.option_key}"
