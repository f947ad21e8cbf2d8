"""Writes of the people side: reviewer tokens."""

import secrets
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from .models import ReviewerToken

TOKEN_PREFIX = "hnr_"  # noqa: S105 - the public prefix of every reviewer token


TOKEN_LABEL_MAX = 100


def reviewer_token_issue(*, user, label: str = "") -> str:
    """A personal reviewer API token named `label`; returned once, stored hashed."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ReviewerToken.objects.create(
        user=user, token_hash=ReviewerToken.hash(token), prefix=token[:10], label=label
    )
    return token


def reviewer_token_revoke(*, token: ReviewerToken) -> None:
    ReviewerToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# A token's last use is written at most once a minute: the reviewer API is a hot path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def reviewer_token_used(*, token: ReviewerToken, now: datetime | None = None) -> None:
    """Note that the reviewer API accepted `token` (one UPDATE a minute at most: a
    conditional update, so concurrent requests do not queue on the row)."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ReviewerToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION), pk=token.pk
    ).update(last_used_at=now)
