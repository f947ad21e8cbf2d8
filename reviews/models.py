"""Reviewer-owned state: personal API tokens for the reviewer API."""

from django.conf import settings
from django.db import models

from escalations.models import hash_token


class ReviewerToken(models.Model):
    """A personal token of a dashboard user for the reviewer API; stored hashed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviewer_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # When the reviewer API last accepted it, to the minute (reviews.services.reviewer_token_used).
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash(token: str) -> str:
        return hash_token(token)
