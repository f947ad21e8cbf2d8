"""Managers' page of a domain's escalation levels (an on-call style escalation policy)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from escalations import levels, selectors, services
from escalations.errors import DomainError
from people.roles import manager_required

from .forms_levels import LevelForm, LevelFormSet

PAGE = "reviews/levels.html"
PREFIX = "levels"


@manager_required
@require_http_methods(["GET", "POST"])
def policy_levels(request: HttpRequest, domain: str) -> HttpResponse:
    policy = get_object_or_404(selectors.policies_list(), domain=domain)
    current = selectors.policy_levels(policy)
    initial = [LevelForm.initial_of(row) for row in current]
    if request.method == "POST":
        formset = LevelFormSet(request.POST, initial=initial, prefix=PREFIX)
        if formset.is_valid():
            try:
                saved = services.policy_levels_replace(policy_row=policy, specs=formset.specs())
            except DomainError as refusal:
                formset.add_refusal(refusal)
            else:
                count = len(saved)
                messages.success(
                    request,
                    f"Saved {count} level{'s' if count != 1 else ''} for {policy.domain}."
                    if count
                    else f"No levels for {policy.domain}: escalations stay in the queue.",
                )
                return redirect("reviews:policy_levels", domain=policy.domain)
        status = 422
    else:
        formset = LevelFormSet(initial=initial, prefix=PREFIX)
        status = 200
    waiting = selectors.open_by_level(policy.domain)
    context = {
        "policy": policy,
        "levels": current,
        "ladder": [
            (row, levels.duration(row.after_minutes), waiting.get(row.level, 0)) for row in current
        ],
        "in_queue": waiting.get(1, 0),
        "formset": formset,
        "managers": list(policy.managers.order_by("username")),
    }
    return TemplateResponse(request, PAGE, context, status=status)
