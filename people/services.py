"""Writes about people: invitations, roles, removal, and marking machine reviewers.

Roles are the Django groups of people.roles. An invitation creates the account without a
password and mails a one-time link to set one (Django's password-reset tokens: the link
stops working once the password is set, or after PASSWORD_RESET_TIMEOUT).
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.models import User as AuthUser
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .models import Profile
from .roles import MANAGER, REVIEWER

ROLES = (REVIEWER, MANAGER)


class MemberError(Exception):
    """A write refused: `field` names the form field it is about ("" for the whole form)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Invitation:
    user: AbstractBaseUser
    link: str  # the one-time set-password link, also mailed


def set_password_link(user) -> str:
    """A one-time link to set the account's password (valid until it is used or expires)."""
    path = reverse(
        "people:set_password",
        kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user)},
    )
    return settings.PUBLIC_URL + path


def _free_username(wanted: str) -> str:
    User = get_user_model()
    base = wanted[:140] or "member"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


def member_invite(*, email: str, role: str, invited_by, username: str = "") -> Invitation:
    """A new account with `role` and no password yet; the set-password link is mailed to
    `email` after commit (the console in the embedded mode) and returned.

    Raises MemberError for an unknown role, an e-mail already in use by an active account,
    or a username taken.
    """
    User = get_user_model()
    email = email.strip().lower()
    if role not in ROLES:
        raise MemberError("role", f"Choose a role: {', '.join(ROLES)}.")
    if User.objects.filter(email__iexact=email, is_active=True).exists():
        raise MemberError("email", "An account with this e-mail exists already.")
    if username and User.objects.filter(username__iexact=username).exists():
        raise MemberError("username", "This username is taken.")
    with transaction.atomic():
        user = User.objects.create_user(username=username or _free_username(email.split("@")[0]), email=email)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    link = set_password_link(user)
    inviter = invited_by.get_username()
    body = (
        f"{inviter} invited you to Handoff as a {role}, where AI agents hand paused runs to "
        f"people.\n\nYour username: {user.get_username()}\nSet your password (this link works "
        f"once):\n{link}\n"
    )
    transaction.on_commit(
        lambda: send_mail("You're invited to Handoff", body, None, [email], fail_silently=False)
    )
    return Invitation(user=user, link=link)


def member_set_role(*, user, role: str, by) -> None:
    """Give the account exactly one role (reviewer or manager). A manager cannot take their
    own manager role away (someone must be left to manage)."""
    if role not in ROLES:
        raise MemberError("role", f"Choose a role: {', '.join(ROLES)}.")
    if user.pk == by.pk and role != MANAGER:
        raise MemberError("role", "You cannot take away your own manager role.")
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])


def member_remove(*, user, by) -> None:
    """Take the account's roles away and deactivate it: it can no longer sign in, and its
    reviewer tokens stop working (the reviewer API accepts only active users)."""
    if user.pk == by.pk:
        raise MemberError("", "You cannot remove yourself.")
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        user.is_active = False
        user.save(update_fields=["is_active"])


def member_set_machine(*, user, is_machine: bool) -> Profile:
    """Mark the account as a machine reviewer, or as a person again."""
    profile, _ = Profile.objects.update_or_create(user=user, defaults={"is_machine": is_machine})
    return profile


def member_set_webhook(*, user, webhook_url: str) -> str | None:
    """Set where a machine reviewer's first looks are offered ("" for none). Returns the
    webhook signing secret when one had to be made now (shown once), else None."""
    with transaction.atomic():
        profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
        profile.webhook_url = webhook_url
        made = None
        if webhook_url and not profile.signing_secret:
            profile.signing_secret = made = "whsec_" + secrets.token_urlsafe(32)
        profile.save(update_fields=["webhook_url", "signing_secret"])
    return made


def member_sync_roles(*, user, roles: set[str]) -> None:
    """Make the account's roles exactly `roles` (those of ROLES): a sign-in through the
    identity provider carries them, and the provider is the source of truth."""
    wanted = {role for role in roles if role in ROLES}
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=set(ROLES) - wanted))
        for role in wanted:
            user.groups.add(Group.objects.get_or_create(name=role)[0])


def machine_reviewer_ensure(*, name: str, webhook_url: str | None = None) -> tuple[AuthUser, str | None]:
    """The machine reviewer account `name`, created when missing (a reviewer with no password,
    marked a machine), with a webhook signing secret. Returns (user, the secret when it was
    just made, else None: a secret is shown once). `webhook_url` (where first looks are
    offered) is set when given; "" clears it."""
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.filter(username=name).first()
        if user is None:
            user = User(username=name)
            user.set_unusable_password()
            user.save()
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
        if not user.groups.filter(name__in=ROLES).exists():
            user.groups.add(Group.objects.get_or_create(name=REVIEWER)[0])
        profile, _ = Profile.objects.get_or_create(user=user)
        profile.is_machine = True
        made = None
        if not profile.signing_secret:
            profile.signing_secret = made = "whsec_" + secrets.token_urlsafe(32)
        if webhook_url is not None:
            profile.webhook_url = webhook_url
        profile.save()
    return user, made
