"""Sign-in through an OpenID Connect provider (mozilla-django-oidc), when OIDC_* settings
are given: the authorization-code flow, the ID token's signature checked against the
provider's keys, and the account's roles taken from a groups claim on every sign-in.

Accounts are matched by e-mail (the library's rule); a new one gets a username from the
`preferred_username` claim when it is free. The groups claim (OIDC_GROUPS_CLAIM, "groups")
maps to the roles: any of OIDC_MANAGER_GROUPS makes a manager, any of OIDC_REVIEWER_GROUPS a
reviewer; none leaves the account without a role (it sees the page that says so).
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from mozilla_django_oidc import views as oidc_views
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from . import services
from .roles import MANAGER, REVIEWER

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID)


def roles_from_claims(claims: dict) -> set[str]:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = groups.split()
    names = {str(g) for g in groups}
    if names & set(settings.OIDC_MANAGER_GROUPS):
        return {MANAGER}
    if names & set(settings.OIDC_REVIEWER_GROUPS):
        return {REVIEWER}
    return set()


class HandoffOIDCBackend(OIDCAuthenticationBackend):
    def create_user(self, claims):
        User = get_user_model()
        wanted = str(claims.get("preferred_username") or "")[:150]
        if not wanted or User.objects.filter(username__iexact=wanted).exists():
            wanted = self.get_username(claims)
        user = User.objects.create_user(wanted, email=claims.get("email", ""))
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        services.member_sync_roles(user=user, roles=roles_from_claims(claims))
        return user


@login_not_required
def oidc_start(request: HttpRequest) -> HttpResponse:
    """To the provider's sign-in (404 when no provider is configured)."""
    if not enabled():
        raise Http404("No OpenID Connect provider is configured.")
    return oidc_views.OIDCAuthenticationRequestView.as_view()(request)


@login_not_required
def oidc_callback(request: HttpRequest) -> HttpResponse:
    """Back from the provider: the code exchanged, the token checked, the user signed in.

    A token that fails its checks (another key, a wrong audience or nonce: the library raises
    SuspiciousOperation) is a failed sign-in like any other: back to the sign-in page, which
    says so, rather than a bare 400."""
    if not enabled():
        raise Http404("No OpenID Connect provider is configured.")
    try:
        return oidc_views.OIDCAuthenticationCallbackView.as_view()(request)
    except SuspiciousOperation as refused:
        log.warning("single sign-on refused: %s", refused)
        return redirect(settings.LOGIN_REDIRECT_URL_FAILURE)
