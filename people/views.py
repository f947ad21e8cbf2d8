"""The managers' Members page (invite, roles, machine reviewers, removal), the invitation's
set-password page, and the page a signed-in user without a role sees."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .forms import InviteForm, MachineForm, MachineWebhookForm, RoleForm
from .roles import is_reviewer, manager_required

MEMBERS = "people/members.html"
NO_ROLE = "people/no_role.html"


def _page(request: HttpRequest, *, status: int = 200, **extra) -> TemplateResponse:
    context = {"members": selectors.members(), "invite_form": InviteForm(), **extra}
    return TemplateResponse(request, MEMBERS, context, status=status)


@manager_required
@never_cache
@require_GET
def members(request: HttpRequest) -> HttpResponse:
    return _page(request)


@manager_required
@never_cache
@require_POST
def member_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = services.member_invite(invited_by=request.user, **form.cleaned_data)
        except services.MemberError as error:
            form.add_error(error.field or None, error.message)
        else:
            # The link is shown once, here, too: where no mail server is set up yet the
            # manager can pass it on by hand.
            return _page(request, invitation=invitation)
    return _page(request, invite_form=form, status=422)


def _member(user_id: int):
    return get_object_or_404(get_user_model(), pk=user_id, is_active=True)


@manager_required
@require_POST
def member_role(request: HttpRequest, user_id: int) -> HttpResponse:
    member, form = _member(user_id), RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose reviewer or manager.")
        return redirect("people:members")
    try:
        services.member_set_role(user=member, role=form.cleaned_data["role"], by=request.user)
    except services.MemberError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{member.get_username()} is a {form.cleaned_data['role']} now.")
    return redirect("people:members")


@manager_required
@require_POST
def member_machine(request: HttpRequest, user_id: int) -> HttpResponse:
    member, form = _member(user_id), MachineForm(request.POST)
    is_machine = form.is_valid() and form.cleaned_data["is_machine"]
    services.member_set_machine(user=member, is_machine=is_machine)
    what = "a machine reviewer" if is_machine else "a person"
    messages.success(request, f"{member.get_username()} is marked as {what}.")
    return redirect("people:members")


@manager_required
@require_POST
def member_webhook(request: HttpRequest, user_id: int) -> HttpResponse:
    member, form = _member(user_id), MachineWebhookForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("webhook_url", []):
            messages.error(request, f"{member.get_username()}'s webhook URL: {error}")
        return redirect("people:members")
    url = form.cleaned_data["webhook_url"]
    secret = services.member_set_webhook(user=member, webhook_url=url)
    if url:
        messages.success(request, f"{member.get_username()}'s first looks go to {url}.")
    else:
        messages.success(request, f"{member.get_username()} has no webhook URL now: it reads the queue.")
    if secret:
        messages.warning(
            request, f"The secret that signs {member.get_username()}'s webhooks (shown once): {secret}"
        )
    return redirect("people:members")


@manager_required
@require_POST
def member_remove(request: HttpRequest, user_id: int) -> HttpResponse:
    member = _member(user_id)
    try:
        services.member_remove(user=member, by=request.user)
    except services.MemberError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"Removed {member.get_username()}: they can no longer sign in, and their tokens are refused."
        )
    return redirect("people:members")


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The invitation's link: choose a password, then sign in. Django's reset token, so the
    link works once (it is bound to the password it replaces) and expires."""

    template_name = "people/set_password.html"
    success_url = reverse_lazy("people:password_set")


@login_not_required
@require_GET
def password_set(request: HttpRequest) -> HttpResponse:
    messages.success(request, "Your password is set. Sign in with it.")
    return redirect("login")


@never_cache
@require_http_methods(["GET"])
def no_role(request: HttpRequest) -> HttpResponse:
    """Signed in, but in neither group: what that means and whom to ask. Links only to
    what this user can open (never back to a page that would refuse them again)."""
    if is_reviewer(request.user):
        return redirect("reviews:queue")
    return _no_role_page(request)


def _no_role_page(request: HttpRequest) -> HttpResponse:
    response = TemplateResponse(request, NO_ROLE, {"managers": selectors.managers()}, status=403)
    return response.render()


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 403 handler: a signed-in user without a role gets the page that explains it
    (at the address they asked for: no redirect, so nothing can loop); anyone else the
    product's 403 page saying which role the page needs."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and not is_reviewer(user):
        return _no_role_page(request)
    return defaults.permission_denied(request, exception or PermissionDenied())
