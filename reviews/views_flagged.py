"""The flagged backlog: decisions made without a person (the policy's at tier 2, a machine
reviewer's), worked through one key at a time ("Fine", then straight on to the next) or in bulk, with a count of what is left."""

import uuid

from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from escalations import services
from people.roles import reviewer_required

from . import flagged
from .views import HtmxHttpRequest

TEMPLATE = "reviews/flagged.html"


def _sort(value: str | None) -> str:
    return value if value in flagged.SORTS else "newest"


def _render(request: HtmxHttpRequest, sort: str, *, marked: int | None = None) -> TemplateResponse:
    context = {
        "backlog": flagged.backlog(request.user, sort=sort),
        "sorts": flagged.SORT_LABELS,
        "marked": marked,
    }
    template = f"{TEMPLATE}#backlog" if request.htmx else TEMPLATE
    return TemplateResponse(request, template, context)


@reviewer_required
@require_GET
def flagged_backlog(request: HtmxHttpRequest) -> HttpResponse:
    return _render(request, _sort(request.GET.get("sort")))


@reviewer_required
@require_POST
def flagged_fine(request: HtmxHttpRequest) -> HttpResponse:
    """Mark the escalations named by `ids` fine (one, or a selection); htmx gets the backlog
    back in place, a plain form a redirect to it."""
    sort = _sort(request.POST.get("sort"))
    ids = [value for value in request.POST.getlist("ids") if value][: flagged.PAGE_SIZE]
    marked = services.flag_reviews_mark_fine(escalation_ids=_uuids(ids), user=request.user)
    if request.htmx:
        return _render(request, sort, marked=marked)
    return redirect(reverse("reviews:flagged") + f"?sort={sort}")


@reviewer_required
@require_POST
def flagged_fine_one(request: HtmxHttpRequest, escalation_id: uuid.UUID) -> HttpResponse:
    """One row's Fine button (the key `f`): only that escalation, whatever else is ticked."""
    sort = _sort(request.POST.get("sort") or request.GET.get("sort"))
    marked = services.flag_reviews_mark_fine(escalation_ids=[escalation_id], user=request.user)
    if request.htmx:
        return _render(request, sort, marked=marked)
    return redirect(reverse("reviews:flagged") + f"?sort={sort}")


def _uuids(values: list[str]) -> list[uuid.UUID]:
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return found
