"""The data of the domain: agents, policies, runs, escalations, decisions, events, deliveries.

Rows are the truth. Writes go through escalations.services; models hold single-row facts.
"""

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

TOKEN_PREFIX = "hnd_"


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough (a slow KDF would add nothing)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Policy(models.Model):
    """A domain's governance policy: what confidence and risk need a human."""

    domain = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    autonomous_threshold = models.FloatField(default=0.90)
    flag_threshold = models.FloatField(default=0.70)
    escalate_threshold = models.FloatField(default=0.50)
    retry_cap = models.PositiveIntegerField(default=3)
    # actual_scope above planned_scope * (1 + scope_tolerance) is a structural mismatch.
    scope_tolerance = models.FloatField(default=0.5)
    auto_decide = models.BooleanField(default=True)
    # A package whose reason is `novelty` is at least tier 3.
    novelty_escalates = models.BooleanField(default=True)
    # respond_by for packages that give none, per tier that waits for a person (minutes).
    respond_minutes_tier3 = models.PositiveIntegerField(null=True, blank=True)
    respond_minutes_tier4 = models.PositiveIntegerField(null=True, blank=True)
    # The two-person rule: an irreversible option needs this many distinct reviewers.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # The people at the end of the domain's escalation levels.
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_policies"
    )
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                name="policy_thresholds_ordered",
                condition=Q(autonomous_threshold__gte=models.F("flag_threshold"))
                & Q(flag_threshold__gte=models.F("escalate_threshold"))
                & Q(escalate_threshold__gte=0)
                & Q(autonomous_threshold__lte=1),
            ),
            models.CheckConstraint(
                name="policy_approvals_required_positive", condition=Q(approvals_required__gte=1)
            ),
        ]

    def __str__(self) -> str:
        return self.domain


class PolicyVersion(models.Model):
    """A saved state of a policy. Escalation.policy_version names the one that tiered it."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    # The policy's settings as saved (field name -> value).
    rules = models.JSONField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_by_name = models.CharField(max_length=150, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="policy_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.policy_id} v{self.version}"


class EscalationLevel(models.Model):
    """An on-call style step: an escalation still open this long after creation moves here.

    Level 1 is the queue itself and has no row; the levels here start at 2.
    """

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="levels")
    level = models.PositiveSmallIntegerField()
    after_minutes = models.PositiveIntegerField()
    priority_boost = models.PositiveSmallIntegerField(default=10)
    notify = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    # The last level usually notifies the domain's managers.
    notify_managers = models.BooleanField(default=False)

    class Meta:
        ordering = ["policy", "level"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "level"], name="escalation_level_unique"),
            models.CheckConstraint(name="escalation_level_from_two", condition=Q(level__gte=2)),
        ]

    def __str__(self) -> str:
        return f"{self.policy_id} level {self.level}"


class Agent(models.Model):
    name = models.CharField(max_length=100, unique=True)
    domain = models.SlugField(max_length=64, default="default")
    resume_url = models.URLField(max_length=500, blank=True)
    signing_secret = models.CharField(max_length=100)
    daily_budget = models.PositiveIntegerField(default=50)
    # Escalations created in the current budget period (a UTC day), kept on the row so
    # every API answer can carry the budget headers without a COUNT.
    budget_day = models.DateField(null=True, blank=True)
    budget_used = models.PositiveIntegerField(default=0)
    # The last sequence number given to a decision on this agent's escalations. Taking the
    # next one locks the agent row, so the decisions feed sees them in commit order.
    decision_seq = models.PositiveBigIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def new_signing_secret() -> str:
        return "whsec_" + secrets.token_urlsafe(32)

    def budget_used_on(self, day) -> int:
        return self.budget_used if self.budget_day == day else 0


class AgentTokenQuerySet(models.QuerySet):
    def live(self, token: str) -> "AgentTokenQuerySet":
        """The one definition of a live agent token: its hash matches, it is not revoked
        and its agent is active. selectors.AGENT_READ_SQL writes the same condition by hand
        for the hot read; tests/test_live_token.py holds the two equal."""
        return self.filter(token_hash=hash_token(token), revoked_at__isnull=True, agent__is_active=True)


class AgentToken(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters, so people can tell tokens apart without seeing them.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = AgentTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.agent})"

    @staticmethod
    def generate() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)


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


class EscalationQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=Escalation.OPEN_STATUSES)

    def overdue(self, now: datetime):
        return self.open().filter(respond_by__lt=now)


class Escalation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        CLAIMED = "claimed"
        DECIDED = "decided"
        RESUMED = "resumed"
        WITHDRAWN = "withdrawn"

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

    OPEN_STATUSES = (Status.PENDING, Status.CLAIMED)
    CLOSED_STATUSES = (Status.DECIDED, Status.RESUMED, Status.WITHDRAWN)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="escalations")
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="escalations")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    # The package, as posted.
    title = models.CharField(max_length=200)
    uncertainty = models.TextField()
    reason = models.CharField(max_length=32, choices=Reason.choices)
    confidence = models.FloatField()
    history = models.JSONField()
    options = models.JSONField()
    blocking = models.BooleanField()
    impact = models.CharField(max_length=10, choices=Impact.choices)
    blocked_tasks = models.PositiveIntegerField(default=0)
    stuck_since = models.DateTimeField()
    respond_by = models.DateTimeField(null=True, blank=True)
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
            # The queue's sorts over open escalations, one each (reviews.queue.SORTS), and
            # the flagged tab: keyset pages read them in order and stop after one page.
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
            models.Index(
                fields=["-priority", "created_at", "id"],
                condition=Q(tier=2),
                name="esc_tier2_priority_idx",
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
            # Retention: closed escalations, oldest change first (operations.services).
            models.Index(
                fields=["updated_at"],
                condition=Q(status__in=["decided", "resumed", "withdrawn"]),
                name="esc_closed_updated_idx",
            ),
        ]
        constraints = [
            # A run has at most one open escalation.
            models.UniqueConstraint(
                fields=["run"],
                condition=Q(status__in=["pending", "claimed"]),
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

    def is_overdue(self, now: datetime | None = None) -> bool:
        return bool(self.respond_by and self.is_open and self.respond_by < (now or timezone.now()))

    def option(self, key: str) -> dict | None:
        return next((o for o in self.options if o["key"] == key), None)

    @property
    def recommended_option(self) -> dict:
        return next(o for o in self.options if o.get("recommended"))

    @property
    def failed_steps(self) -> int:
        return sum(1 for step in self.history if step.get("outcome") == "failed")

    def claim_is_live(self, now: datetime | None = None) -> bool:
        return bool(
            self.claimed_by_id and self.claimed_until and self.claimed_until > (now or timezone.now())
        )


class Decision(models.Model):
    """The one decision on an escalation. Written once; never updated."""

    class Kind(models.TextChoices):
        OPTION = "option", "Proceed with an option"
        INSTRUCTION = "instruction", "Follow an instruction"
        TAKE_OVER = "take_over", "Take the run over"
        HALT = "halt", "Halt the run"

    class DecidedBy(models.TextChoices):
        HUMAN = "human"
        POLICY = "policy"
        TIMEOUT = "timeout"

    escalation = models.OneToOneField(Escalation, on_delete=models.CASCADE, related_name="decision")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="decisions")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    option_key = models.CharField(max_length=64, blank=True)
    args = models.JSONField(null=True, blank=True)
    instruction = models.TextField(blank=True)
    decided_by_type = models.CharField(max_length=10, choices=DecidedBy.choices)
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150)
    decided_at = models.DateTimeField(default=timezone.now)
    # Did the decision take the agent's recommended option? Feeds calibration.
    took_recommended = models.BooleanField()

    class Meta:
        indexes = [models.Index(fields=["decided_at"], name="decision_decided_at_idx")]
        constraints = [
            models.UniqueConstraint(fields=["agent", "seq"], name="decision_feed_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.decided_by_name}"


class Approval(models.Model):
    """One reviewer's approval of an irreversible option under the two-person rule.

    When the policy's approvals_required distinct reviewers have approved the same option,
    the decision is made; until then the escalation stays open.
    """

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    user_name = models.CharField(max_length=150)
    option_key = models.CharField(max_length=64)
    args = models.JSONField(null=True, blank=True)
    instruction = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["escalation", "user"], name="approval_one_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.user_name} approved {self.option_key}"


class FlagReview(models.Model):
    """A person's look at a tier-2 escalation the policy decided: fine, or another option.

    Feeds calibration: "should have been X" counts as the recommended option not taken.
    """

    class Verdict(models.TextChoices):
        FINE = "fine", "Fine"
        OTHER = "other", "Should have been another option"

    escalation = models.OneToOneField(
        Escalation, on_delete=models.CASCADE, related_name="flag_review"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    option_key = models.CharField(max_length=64, blank=True)
    note = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.verdict} by {self.reviewer_name}"


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


class OutboxQuerySet(models.QuerySet):
    """Rows of an outbox: a model whose Status has PENDING, SENDING and RETRYING, with
    next_attempt_at and lease_until (Delivery here, notifications.Notification there)."""

    def due(self, now: datetime):
        """Rows to send: waiting and due, or with a lapsed sending lease."""
        status = self.model.Status
        return self.filter(
            Q(status__in=[status.PENDING, status.RETRYING], next_attempt_at__lte=now)
            | Q(status=status.SENDING, lease_until__lt=now)
        )

    def lease_left(self, pk, now: datetime) -> float | None:
        """Seconds until the lease on row `pk` lapses while it is being sent; None when it
        is not being sent (or the lease has lapsed)."""
        until = (
            self.filter(pk=pk, status=self.model.Status.SENDING, lease_until__gte=now)
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
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx")]

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


class GateCheck(models.Model):
    """A call to POST /gate: the denominator of the escalation rate."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="gate_checks")
    domain = models.SlugField(max_length=64)
    run_id = models.CharField(max_length=200, blank=True)
    verdict = models.CharField(max_length=10)
    tier = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["agent", "at"], name="gatecheck_agent_at_idx")]

    def __str__(self) -> str:
        return f"{self.verdict} for {self.agent_id}"
