"""Runs, escalations (the package as the agent sent it, tiered and prioritised) and
their timeline events."""


import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .agents import Agent

# Decided escalations that expire unless the agent acknowledges in time: what beat's expiry
# reads (esc_expires_idx, migration 0013).
EXPIRES = Q(status="decided", expires_at__isnull=False)

# Closed escalations (Escalation.CLOSED_STATUSES: every status past the decision), read by when
# they last changed (esc_closed_change_idx, migration 0015): retention's purge, oldest change
# first, and the insights' refresh, the ones expired since the last one. Its reads filter by
# this Q itself, so the planner matches the index's condition whatever else they ask.
CLOSED = Q(status__in=["decided", "resumed", "withdrawn", "expired"])


class Run(models.Model):
    """An agent's run, named by the agent's own run_id."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        TAKEN_OVER = "taken_over"
        HALTED = "halted"
        CLOSED = "closed"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="runs")
    run_id = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    taken_over_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # A taken-over run is closed by its reviewer with a note.
    closed_at = models.DateTimeField(null=True, blank=True)
    close_note = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "run_id"], name="run_unique")]

    def __str__(self) -> str:
        return self.run_id


class EscalationQuerySet(models.QuerySet["Escalation"]):
    def open(self) -> "EscalationQuerySet":
        """Not decided yet: in the queue, or waiting for the agent's answer to a question."""
        return self.filter(status__in=Escalation.OPEN_STATUSES)

    def in_queue(self) -> "EscalationQuerySet":
        """Open and waiting for a person (pending or claimed): the queue, the periodic jobs'
        clocks. An escalation awaiting the agent's answer is open but not in the queue."""
        return self.filter(status__in=Escalation.QUEUE_STATUSES)

    def overdue(self, now: datetime) -> "EscalationQuerySet":
        return self.in_queue().filter(respond_by__lt=now)


class Escalation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        CLAIMED = "claimed"
        AWAITING_AGENT = "awaiting_agent", "Waiting for agent"
        DECIDED = "decided"
        RESUMED = "resumed"
        WITHDRAWN = "withdrawn"
        # Decided, but not acknowledged before the decision's valid_until: not to act on.
        EXPIRED = "expired"

    class Reason(models.TextChoices):
        APPROACH_CHOICE = "approach_choice", "Approach choice"
        MISSING_INFORMATION = "missing_information", "Missing information"
        MISSING_ACCESS = "missing_access", "Missing access"
        IRREVERSIBLE_ACTION = "irreversible_action", "Irreversible action"
        NOVELTY = "novelty", "Novelty"
        SCOPE_MISMATCH = "scope_mismatch", "Scope mismatch"
        REPEATED_FAILURE = "repeated_failure", "Repeated failure"
        OTHER = "other", "Other"

    class Impact(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        CRITICAL = "critical"

    OPEN_STATUSES = (Status.PENDING, Status.CLAIMED, Status.AWAITING_AGENT)
    QUEUE_STATUSES = (Status.PENDING, Status.CLAIMED)
    CLOSED_STATUSES = (Status.DECIDED, Status.RESUMED, Status.WITHDRAWN, Status.EXPIRED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="escalations")
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="escalations")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    # The package, as posted.
    title = models.CharField(max_length=200)
    uncertainty = models.TextField()
    reason = models.CharField(max_length=32, choices=Reason.choices)
    confidence = models.FloatField()
    # The confidence mapped through the agent's calibration at creation (None: too little
    # judged history then).
    calibrated_confidence = models.FloatField(null=True, blank=True)
    history = models.JSONField()
    options = models.JSONField()
    blocking = models.BooleanField()
    impact = models.CharField(max_length=10, choices=Impact.choices)
    blocked_tasks = models.PositiveIntegerField(default=0)
    stuck_since = models.DateTimeField()
    respond_by = models.DateTimeField(null=True, blank=True)
    # While decided: its decision's valid_until (fixed when it is made), copied here so beat's
    # expiry reads a small partial index (esc_expires_idx) instead of every decision ever made.
    expires_at = models.DateTimeField(null=True, blank=True)
    delay_note = models.CharField(max_length=500, blank=True)
    action = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    domain = models.SlugField(max_length=64)
    timeout_option = models.CharField(max_length=64, blank=True)
    links = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    is_irreversible = models.BooleanField(default=False)

    # What the service made of it.
    tier = models.PositiveSmallIntegerField()
    tier_reasons = models.JSONField(default=list)
    policy_version = models.PositiveIntegerField(default=1)
    priority = models.PositiveSmallIntegerField()
    priority_reasons = models.JSONField(default=list)

    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    # The escalation level it has reached (1 = the queue; see EscalationLevel).
    level = models.PositiveSmallIntegerField(default=1)
    level_changed_at = models.DateTimeField(null=True, blank=True)
    # A machine reviewer's first look (services.first_look): who was offered it and until
    # when it runs (set to the moment it ended when the machine passed or advised early).
    # Notifications and levels start when it ends.
    first_look_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_look_until = models.DateTimeField(null=True, blank=True)
    # A reviewer's open question to the agent (status awaiting_agent; see
    # escalations.services.questions), and the time the escalation has spent waiting on the
    # agent's answers, which the levels' clock leaves out (respond_by moves on by each wait).
    question_text = models.TextField(blank=True)
    question_by = models.CharField(max_length=150, blank=True)
    question_at = models.DateTimeField(null=True, blank=True)
    waited_on_agent = models.DurationField(default=timedelta(0))
    # Decided without a person, and waiting for one's look (FlagReview.applies, the flagged
    # backlog): set in the decision's transaction, cleared in its FlagReview's.
    awaiting_look = models.BooleanField(default=False)

    # NULL, not "", so the unique constraint only covers requests that sent a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = EscalationQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"], name="esc_queue_idx"),
            models.Index(fields=["agent", "created_at"], name="esc_agent_created_idx"),
            models.Index(fields=["respond_by"], name="esc_respond_by_idx"),
            # Decided and waiting for the agent's ack before a deadline (services.decisions_expire).
            models.Index(fields=["expires_at"], condition=EXPIRES, name="esc_expires_idx"),
            # The queue's sorts over open escalations, one each (reviews.queue.SORTS): keyset
            # pages read them in order and stop after one page.
            models.Index(
                fields=["-priority", "created_at", "id"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_priority_idx",
            ),
            models.Index(
                fields=["respond_by", "created_at", "id"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_deadline_idx",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_age_idx",
            ),
            # The same sorts over every escalation no longer open: the queue's closed tab
            # (reviews.queue.in_tab), whose `exclude` these conditions repeat word for word so
            # the planner matches them. A page is one index range: 1.6-3.6 s -> ms at 550,000
            # closed escalations (bench/README.md), at three B-tree entries per decision.
            models.Index(
                fields=["-priority", "created_at", "id"],
                condition=~Q(status__in=["pending", "claimed", "awaiting_agent"]),
                name="esc_closed_priority_idx",
            ),
            models.Index(
                fields=["respond_by", "created_at", "id"],
                condition=~Q(status__in=["pending", "claimed", "awaiting_agent"]),
                name="esc_closed_deadline_idx",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=~Q(status__in=["pending", "claimed", "awaiting_agent"]),
                name="esc_closed_age_idx",
            ),
            # The flagged backlog (awaiting_look) in each of the queue tab's sorts and the
            # backlog page's (reviews.flagged.SORTS; the newest first reads esc_flagged_age_idx
            # backwards): a page and a capped count read one range of a small index.
            models.Index(
                fields=["-priority", "created_at", "id"],
                condition=Q(awaiting_look=True),
                name="esc_flagged_priority_idx",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=Q(awaiting_look=True),
                name="esc_flagged_age_idx",
            ),
            models.Index(
                fields=["respond_by", "created_at", "id"],
                condition=Q(awaiting_look=True),
                name="esc_flagged_deadline_idx",
            ),
            models.Index(
                fields=["confidence", "-created_at", "-id"],
                condition=Q(awaiting_look=True),
                name="esc_flagged_uncertain_idx",
            ),
            # One agent's open escalations in priority order: the agent filter reads only that
            # agent's rows, even when another filter leaves none (a whole-queue scan before:
            # 185 ms -> 7 ms at 100,000 open escalations).
            models.Index(
                fields=["agent", "-priority", "created_at", "id"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_agent_priority_idx",
            ),
            # The "mine" tab's count and list: open escalations by claimer.
            models.Index(
                fields=["claimed_by", "claimed_until"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_claim_idx",
            ),
            # /metrics' queue depth by tier and status: an index-only count of open rows.
            models.Index(
                fields=["tier", "status"],
                condition=Q(status__in=["pending", "claimed"]),
                name="esc_open_tier_idx",
            ),
            # Precedents (escalations.precedents): an agent's and a domain's latest decided
            # escalations with their titles (index-only), the candidates ranked by similarity.
            models.Index(
                fields=["agent", "-created_at"],
                include=["title"],
                condition=Q(status__in=["decided", "resumed"]),
                name="esc_decided_agent_idx",
            ),
            models.Index(
                fields=["domain", "-created_at"],
                include=["title"],
                condition=Q(status__in=["decided", "resumed"]),
                name="esc_decided_domain_idx",
            ),
            # Closed escalations by their last change (CLOSED): retention, oldest first
            # (operations.selectors), and the insights' refresh, those expired since the last.
            models.Index(fields=["updated_at"], condition=CLOSED, name="esc_closed_change_idx"),
        ]
        constraints = [
            # A run has at most one open escalation.
            models.UniqueConstraint(
                fields=["run"],
                condition=Q(status__in=["pending", "claimed", "awaiting_agent"]),
                name="escalation_one_open_per_run",
            ),
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="escalation_idempotency_key",
            ),
            models.CheckConstraint(
                name="escalation_confidence_range",
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def in_queue(self) -> bool:
        return self.status in self.QUEUE_STATUSES

    @property
    def awaiting_agent(self) -> bool:
        return self.status == self.Status.AWAITING_AGENT

    def is_overdue(self, now: datetime | None = None) -> bool:
        return bool(self.respond_by and self.in_queue and self.respond_by < (now or timezone.now()))

    def clock_start(self) -> datetime:
        """Where the levels' clock starts: when people were told (creation, or the end of a
        machine's first look), moved on by the time spent waiting on the agent
        (escalations.levels counts from here; periodic.CLOCK_START is the same in SQL)."""
        return (self.first_look_until or self.created_at) + self.waited_on_agent

    def option(self, key: str) -> dict[str, Any] | None:
        return next((o for o in self.options if o["key"] == key), None)

    @property
    def recommended_option(self) -> dict[str, Any]:
        return next(o for o in self.options if o.get("recommended"))

    @property
    def failed_steps(self) -> int:
        return sum(1 for step in self.history if step.get("outcome") == "failed")

    def claim_is_live(self, now: datetime | None = None) -> bool:
        return bool(
            self.claimed_by_id and self.claimed_until and self.claimed_until > (now or timezone.now())
        )


class Event(models.Model):
    """The append-only timeline of an escalation."""

    class Kind(models.TextChoices):
        CREATED = "created"
        CLAIMED = "claimed"
        RELEASED = "released"
        CLAIM_EXPIRED = "claim_expired"
        DECIDED = "decided"
        WITHDRAWN = "withdrawn"
        ACKNOWLEDGED = "acknowledged"
        RESUMED = "resumed"
        DELIVERY_FAILED = "delivery_failed"
        REDELIVERY = "redelivery"
        REPRIORITIZED = "reprioritized"
        REASSIGNED = "reassigned"
        COMMENTED = "commented"
        APPROVED = "approved"
        LEVEL_RAISED = "level_raised"
        NOTIFIED = "notified"
        FLAG_REVIEWED = "flag_reviewed"
        RUN_CLOSED = "run_closed"
        FIRST_LOOK = "first_look"
        FIRST_LOOK_ENDED = "first_look_ended"
        RECOMMENDED = "recommended"
        EXPIRED = "expired"
        QUESTION_ASKED = "question_asked"
        QUESTION_ANSWERED = "question_answered"

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.CharField(max_length=150, blank=True)
    data = models.JSONField(default=dict)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["escalation", "at"], name="event_escalation_at_idx")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"
