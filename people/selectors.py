"""Reads about people: the members list, and who manages."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Exists, OuterRef, Prefetch, Subquery

from .models import Profile
from .roles import MANAGER, REVIEWER


@dataclass(frozen=True)
class Member:
    user: AbstractBaseUser
    role: str  # "manager", "reviewer" or "" (no role)
    is_machine: bool
    invited: bool  # has never set a password (the invitation is still open)
    webhook_url: str = ""  # a machine reviewer's: where its first looks are offered


def members() -> list[Member]:
    """Every active account, managers first, then by name (one query for the users, one
    for their groups)."""
    User = get_user_model()

    rows = (
        User.objects.filter(is_active=True)
        .annotate(
            machine=Exists(Profile.objects.filter(user=OuterRef("pk"), is_machine=True)),
            webhook_url=Subquery(Profile.objects.filter(user=OuterRef("pk")).values("webhook_url")[:1]),
        )
        .prefetch_related(Prefetch("groups", queryset=Group.objects.filter(name__in=(REVIEWER, MANAGER))))
        .order_by("username")
    )
    found = []
    for user in rows:
        names = {g.name for g in user.groups.all()}
        role = MANAGER if MANAGER in names or user.is_superuser else REVIEWER if REVIEWER in names else ""
        invited = not user.has_usable_password() and user.last_login is None
        found.append(Member(user, role, user.machine, invited, user.webhook_url or ""))
    return sorted(found, key=lambda m: (m.role != MANAGER, m.role == "", m.user.get_username().lower()))


def managers() -> list:
    """The accounts a person without a role can ask for one."""
    User = get_user_model()
    return list(User.objects.filter(is_active=True, groups__name=MANAGER).order_by("username")[:10])
