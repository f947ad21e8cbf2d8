"""Everyone's own page: who they are and their reviewer tokens (create with a name, shown
once; the list with last use; revoke), as docs/api.md promises.

The new token exists in plain text only in the answer to the POST that made it (rendered
with `Cache-Control: no-store`, not redirected).
"""

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from people.roles import is_reviewer

from . import services
from .forms_account import TokenCreateForm
from .models import ReviewerToken

ACCOUNT = "reviews/account.html"


class SignedInRequest(HttpRequest):
    user: User  # the login-required middleware lets no anonymous request reach these views


def _page(request: SignedInRequest, *, status: int = 200, **extra) -> TemplateResponse:
    context = {
        "tokens": ReviewerToken.objects.filter(user=request.user).order_by("revoked_at", "-created_at"),
        "form": TokenCreateForm(),
        "can_review": is_reviewer(request.user),
        **extra,
    }
    return TemplateResponse(request, ACCOUNT, context, status=status)


@never_cache
@require_GET
def account(request: SignedInRequest) -> HttpResponse:
    return _page(request)


@never_cache
@require_POST
def token_create(request: SignedInRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=422)
    token = services.reviewer_token_issue(user=request.user, label=form.cleaned_data["label"])
    return _page(request, revealed_token=token, revealed_label=form.cleaned_data["label"])


@require_POST
def token_revoke(request: SignedInRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ReviewerToken, pk=token_id, user=request.user)
    if token.revoked_at:
        messages.info(request, f"The token “{token.label}” was already revoked.")
    else:
        services.reviewer_token_revoke(token=token)
        messages.success(request, f"Revoked the token “{token.label}” ({token.prefix}…): it is refused from now on.")
    return redirect("reviews:account")
