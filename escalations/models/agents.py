"""Agents and their bearer tokens (stored hashed)."""


import hashlib
import secrets
from datetime import date

from django.db import models

TOKEN_PREFIX = "hnd_"  # noqa: S105 - a public prefix, not a secret


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough (a slow KDF would add nothing)."""
    return hashlib.sha256(token.encode()).hexdigest()


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

    def budget_used_on(self, day: date) -> int:
        return self.budget_used if self.budget_day == day else 0


class AgentTokenQuerySet(models.QuerySet["AgentToken"]):
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
