"""Decisions, the approvals of the two-person rule, and reviews of the decisions a person
looks at afterwards (the policy's at tier 2, a machine reviewer's)."""



from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .agents import Agent
from .escalations import Escalation


class Decision(models.Model):
    """The one decision on an escalation. Written once; never updated."""

    class Kind(models.TextChoices):
        OPTION = "option", "Proceed with an option"
        INSTRUCTION = "instruction", "Follow an instruction"
        TAKE_OVER = "take_over", "Take the run over"
        HALT = "halt", "Halt the run"

    class DecidedBy(models.TextChoices):
        HUMAN = "human"
        # A machine reviewer (people.Profile.is_machine): kept apart from human figures.
        MACHINE = "machine"
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
    # The decision's lifetime (the policy's decision_lifetime_seconds): not to act on after.
    valid_until = models.DateTimeField(null=True, blank=True)
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
    """A person's look at a decision made without one (the flagged backlog): fine, or another
    option. Which decisions are looked at afterwards: `applies` (the rule), `applies_to` (one
    row) and `APPLIES` (a filter on escalations), the same rule. Escalation.awaiting_look
    holds it for the decisions no FlagReview answers yet: decide_open sets it from `applies`,
    flag_review_record clears it, each in its own transaction; the backlog reads that flag
    (tests/test_flagged.py holds it equal to the rule over every kind of decision).

    A review of the policy's decision feeds the agent's calibration ("should have been X":
    the recommended option not taken); a review of a machine's decision judges the machine
    (its agreement with people, insights.machine).
    """

    # The policy's decisions at tier 2 ("proceed with a flag"), and any machine reviewer's.
    APPLIES = Q(tier=2, decision__decided_by_type=Decision.DecidedBy.POLICY) | Q(
        decision__decided_by_type=Decision.DecidedBy.MACHINE
    )

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

    @staticmethod
    def applies(tier: int, decided_by_type: str) -> bool:
        """Does a person look at this decision afterwards? APPLIES is the same rule in SQL."""
        if decided_by_type == Decision.DecidedBy.MACHINE:
            return True
        return tier == 2 and decided_by_type == Decision.DecidedBy.POLICY

    @staticmethod
    def applies_to(escalation: Escalation, decision: Decision | None) -> bool:
        return decision is not None and FlagReview.applies(escalation.tier, decision.decided_by_type)


class Recommendation(models.Model):
    """A reviewer's advice that decides nothing: a machine's first look, or a person's note.

    Shown beside the agent's recommendation on the escalation's page (API.md's
    `recommendations`, newest first). `agreed` is filled when a person decides it: did they
    choose the recommended option (the machine's agreement with people, in insights)?
    """

    escalation = models.ForeignKey(
        Escalation, on_delete=models.CASCADE, related_name="recommendations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=150)
    is_machine = models.BooleanField(default=False)
    option_key = models.CharField(max_length=64)
    args = models.JSONField(null=True, blank=True)
    note = models.TextField()
    confidence = models.FloatField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["escalation", "at"], name="recommendation_esc_at_idx")]

    def __str__(self) -> str:
        return f"{self.name} recommends {self.option_key}"
