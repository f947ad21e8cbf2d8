"""Governance: a domain's policy and its versions, its escalation levels, and the gate
checks agents make before acting."""



from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .agents import Agent


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
    # Machine reviewers: the tiers they may decide (none by default; never an irreversible
    # option), the machine offered a first look at new tier-3 escalations, for how long, and
    # the lifetime of every decision in the domain (None: decisions do not expire).
    machine_tiers = models.JSONField(default=list, blank=True)
    first_look_reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_look_seconds = models.PositiveIntegerField(default=60)
    decision_lifetime_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Tier by the agent's calibrated confidence where it has enough judged history.
    tier_by_calibrated = models.BooleanField(default=False)
    # reason -> the lowest tier (2-4) its packages get, whatever the confidence.
    reason_floors = models.JSONField(default=dict, blank=True)
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
