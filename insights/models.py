"""Pre-aggregated rollups of the escalation data, one row per UTC day and slice, and the
drift alerts. Written only by insights.services; the insights page reads nothing else.

Every rollup is keyed by (day, agent, domain, ...) so any date range, agent and domain
filter is a SUM over an index range. Rows of a day are replaced as a whole when the day
is recomputed (services.rollups_refresh), so the tables hold no running counters.

Except archived rows: what escalations purged by retention (RETENTION_DAYS) contributed
to their day, kept beside the live rows (archived=True) and never recomputed, since the
rows they came from are gone. Readers sum both alike.
"""

from django.db import models
from django.utils import timezone

from escalations.models import Agent

from .stats import DURATION_BUCKETS


class RollupBase(models.Model):
    day = models.DateField()
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    domain = models.SlugField(max_length=64)
    # The figures of purged escalations (services.rollups_archive), kept for good.
    archived = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.day} agent {self.agent_id} {self.domain}"


class ActivityRollup(RollupBase):
    """A day of an agent in a domain: gate checks, new runs and escalations (all tiers).

    Runs have no domain of their own: they count in their agent's domain.
    """

    gate_checks = models.PositiveIntegerField(default=0)
    runs = models.PositiveIntegerField(default=0)
    escalations = models.PositiveIntegerField(default=0)
    # Of the escalations, those with no gate call before them in their run (services.
    # GATE_LOOKBACK): left out of the escalations per gate check, counted here.
    ungated_escalations = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "agent", "domain", "archived"], name="activity_rollup_key")
        ]


class EscalationRollup(RollupBase):
    """Escalations created on the day, by reason (by tier: OutcomeRollup)."""

    reason = models.CharField(max_length=32)
    escalations = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "domain", "archived", "reason"], name="escalation_rollup_key"
            )
        ]


class OutcomeRollup(RollupBase):
    """What became of the escalations created on the day, by tier; with two histograms in
    stats.DURATION_EDGES buckets (fields CLAIM_BUCKETS and DECIDE_BUCKETS, added below):
    creation to the first claim, and creation to a human decision."""

    tier = models.PositiveSmallIntegerField()
    escalations = models.PositiveIntegerField(default=0)
    decided = models.PositiveIntegerField(default=0)
    human_decided = models.PositiveIntegerField(default=0)
    # Of the human decisions, those that took the agent's recommended option.
    took_recommended = models.PositiveIntegerField(default=0)
    claimed = models.PositiveIntegerField(default=0)
    # Escalations with a respond_by, and those decided (not by timeout) by then.
    with_deadline = models.PositiveIntegerField(default=0)
    within_deadline = models.PositiveIntegerField(default=0)
    # Decided, but not acknowledged before the decision's valid_until (status expired).
    expired = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "domain", "archived", "tier"], name="outcome_rollup_key"
            )
        ]


class CalibrationRollup(RollupBase):
    """Judged escalations (human decisions and flag reviews) by confidence bin: how many,
    how many agreed with the agent, and the sums for an exact Brier score."""

    bin = models.PositiveSmallIntegerField()
    n = models.PositiveIntegerField(default=0)
    agreed = models.PositiveIntegerField(default=0)
    sum_confidence = models.FloatField(default=0.0)
    sum_confidence_sq = models.FloatField(default=0.0)
    sum_confidence_agreed = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "domain", "archived", "bin"], name="calibration_rollup_key"
            )
        ]


class ReviewerRollup(RollupBase):
    """Human decisions by reviewer, with their histogram in stats.DURATION_EDGES buckets
    (fields REVIEW_BUCKETS, added below) of the reviewer's time: from their claim (the
    last before the decision) or, unclaimed, from creation."""

    reviewer = models.CharField(max_length=150)
    decisions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "domain", "archived", "reviewer"], name="reviewer_rollup_key"
            )
        ]


class MachineRollup(RollupBase):
    """A machine reviewer's agreement with people, by the day its escalations were created
    (insights.machine): its recommendations on escalations a person decided afterwards, and
    its decisions a person reviewed afterwards; of each, those the person agreed with (chose
    the recommended option; reviewed the decision as fine)."""

    reviewer = models.CharField(max_length=150)
    recommended = models.PositiveIntegerField(default=0)
    recommended_agreed = models.PositiveIntegerField(default=0)
    decided = models.PositiveIntegerField(default=0)
    decided_agreed = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "domain", "archived", "reviewer"], name="machine_rollup_key"
            )
        ]


# Histograms as one integer column per bucket, so a date range's histogram is one SUM per
# column over the slice's rows (rows per bucket made the page's biggest scans).
CLAIM_BUCKETS = [f"claim_b{i}" for i in range(DURATION_BUCKETS)]
DECIDE_BUCKETS = [f"decide_b{i}" for i in range(DURATION_BUCKETS)]
REVIEW_BUCKETS = [f"b{i}" for i in range(DURATION_BUCKETS)]
for _name in (*CLAIM_BUCKETS, *DECIDE_BUCKETS):
    OutcomeRollup.add_to_class(_name, models.PositiveIntegerField(default=0))
for _name in REVIEW_BUCKETS:
    ReviewerRollup.add_to_class(_name, models.PositiveIntegerField(default=0))


class RollupState(models.Model):
    """One row: the time up to which changes are rolled up (the periodic job's watermark),
    and the lease of the refresh running now (one at a time: two would race on a day)."""

    refreshed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rolled up to {self.refreshed_at}"


class DriftAlert(models.Model):
    """An agent whose escalation rate this week passed the drift test; one per agent-week,
    so the alert is sent once however often the check runs."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="drift_alerts")
    week_start = models.DateField()  # the Monday of the week (UTC)
    escalations = models.PositiveIntegerField()
    gate_checks = models.PositiveIntegerField()
    baseline_escalations = models.PositiveIntegerField()
    baseline_gate_checks = models.PositiveIntegerField()
    p_value = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-week_start", "agent__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "week_start"], name="drift_alert_once_per_week"
            )
        ]

    def __str__(self) -> str:
        return f"drift of {self.agent_id} in the week of {self.week_start}"
