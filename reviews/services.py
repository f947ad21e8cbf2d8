"""Writes of the people side: reviewer tokens."""

import secrets

from django.utils import timezone

from .models import ReviewerToken

TOKEN_PREFIX = "hnr_"  # noqa: S105 - the public prefix of every reviewer token


def reviewer_token_issue(*, user, label: str = "") -> str:
    """A personal reviewer API token; returned once, stored hashed."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ReviewerToken.objects.create(
        user=user, token_hash=ReviewerToken.hash(token), prefix=token[:10], label=label
    )
    return token


def reviewer_token_revoke(*, token: ReviewerToken) -> None:
    ReviewerToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
