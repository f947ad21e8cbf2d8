"""What Handoff knows about a person's account beyond Django's user: whether it is a machine."""

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """One per account that has been given one; an account without a row is a person."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # A machine reviewer (a stronger model or a script deciding through the reviewer API):
    # its decisions are marked `machine` and kept apart from human figures (DESIGN.md).
    is_machine = models.BooleanField(default=False)
    # Where a machine reviewer is offered first looks (a signed webhook, as agents get their
    # decisions), and the secret that signs them (shown once, by reviewer_token --machine).
    webhook_url = models.URLField(max_length=500, blank=True)
    signing_secret = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({'machine' if self.is_machine else 'person'})"


def is_machine(user) -> bool:
    """Whether the account is marked as a machine reviewer (no profile: a person)."""
    return Profile.objects.filter(user_id=user.pk, is_machine=True).exists()
