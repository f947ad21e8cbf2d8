"""Webhook deliveries of decisions (an outbox) and each attempt."""


import uuid
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .agents import Agent
from .escalations import Escalation


class OutboxStatus(Protocol):
    PENDING: str
    SENDING: str
    RETRYING: str


OutboxRow = TypeVar("OutboxRow", bound=models.Model)

# An outbox row still to send, of any outbox (OutboxStatus's three): sent, delivered and
# failed rows are history.
UNFINISHED = ("pending", "sending", "retrying")
# A delivery still to send: the condition of delivery_sendable_idx, which is the send task's
# claim's status list word for word (services.outbox._claim_next_sql; tests/test_outbox.py).
SENDABLE = Q(status__in=UNFINISHED)


class OutboxQuerySet(models.QuerySet[OutboxRow]):
    """Rows of an outbox: a model whose Status has PENDING, SENDING and RETRYING, with
    next_attempt_at and lease_until (Delivery here, notifications.Notification there)."""

    def _status(self) -> OutboxStatus:
        # Each outbox model has its own Status (a TextChoices); a Model bound cannot say so.
        status: OutboxStatus = self.model.Status  # type: ignore[attr-defined]
        return status

    def due(self, now: datetime) -> "OutboxQuerySet[OutboxRow]":
        """Rows to send: waiting and due, or with a lapsed sending lease."""
        status = self._status()
        return self.filter(
            Q(status__in=[status.PENDING, status.RETRYING], next_attempt_at__lte=now)
            | Q(status=status.SENDING, lease_until__lt=now)
        )

    def lease_left(self, pk: object, now: datetime) -> float | None:
        """Seconds until the lease on row `pk` lapses while it is being sent; None when it
        is not being sent (or the lease has lapsed)."""
        until = (
            self.filter(pk=pk, status=self._status().SENDING, lease_until__gte=now)
            .values_list("lease_until", flat=True)
            .first()
        )
        return None if until is None else (until - now).total_seconds()


class Delivery(models.Model):
    """One webhook delivery of a decision to the agent's resume_url (an outbox row)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="deliveries")
    # The escalation's agent, copied when the row is written. Nothing reads it since the send
    # task claims any agent's rows (migration 0014); it stays while a release that claimed by
    # agent may still run beside this one (a rolling deploy), and can go in a later one. It
    # goes with its escalation (no constraint of its own); NULL on rows queued before 0012.
    agent = models.ForeignKey(
        Agent, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # Times a worker took the row. Claims that never recorded an attempt are workers that
    # died mid-send; Celery keeps no such count, so a poison delivery is stopped here.
    claim_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            # The rows still to send, by due time (only those: small, whatever the history):
            # the send task's claim of the next due one (services.delivery_claim_next).
            models.Index(fields=["next_attempt_at"], name="delivery_sendable_idx", condition=SENDABLE),
        ]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.status})"

    def give_up_at(self) -> datetime:
        return self.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS)


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_unique_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class MachineOffer(models.Model):
    """The offer of a first look to a machine reviewer: a signed webhook to its URL (an outbox
    row like Delivery, sent by the same claim and the same POST). Its retry window is the
    look itself: past the escalation's first_look_until it is given up."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="offers")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    give_up_after = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="offer_due_idx")]

    def __str__(self) -> str:
        return f"first-look offer {self.id} ({self.status})"

    def give_up_at(self) -> datetime:
        return self.give_up_after
