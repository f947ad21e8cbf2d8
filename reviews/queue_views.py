"""The reviewer queue: the page (tabs, filters, sorts, keyset pages) and one row of it.

The row view is what the page's script asks for when a live notice names an escalation:
the row rendered under the page's own filters, or nothing if it no longer matches, with
the tab counts. The server decides what matches; the script only places the row.
"""

import uuid

from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from escalations import selectors
from people.roles import reviewer_required

from . import queue
from .filters import QueueFilter
from .views import HtmxHttpRequest, _escalation

QUEUE_PAGE_SIZE = 50
ZERO = uuid.UUID(int=0)
TEMPLATE = "reviews/queue.html"


def queue_url(params: QueryDict, **changes: str | None) -> str:
    """The queue's URL with `params` changed (None drops one), without empty parameters."""
    query = QueryDict(mutable=True)
    for key, values in params.lists():
        kept = [v for v in values if v]
        if kept and key not in changes:
            query.setlist(key, kept)
    for key, value in changes.items():
        if value:
            query[key] = value
    encoded = query.urlencode()
    return reverse("reviews:queue") + (f"?{encoded}" if encoded else "")


def _context(request: HtmxHttpRequest, filterset: QueueFilter, rows: list) -> dict:
    # The tabs count what the search finds (the other filters narrow only the list shown).
    filterset.is_valid()  # cleaned_data holds the valid fields even when another is not
    search = filterset.form.cleaned_data.get("q") or ""
    counts = queue.tab_counts(request.user, now=filterset.now, search=search)
    tabs = [
        {
            "tab": tab,
            "count": None
            if not tab.counted
            else (f"{queue.COUNT_CAP}+" if counts[tab.key] > queue.COUNT_CAP else counts[tab.key]),
            "url": queue_url(request.GET, tab=None if tab.key == "open" else tab.key, after=None),
            "active": tab.key == filterset.tab,
        }
        for tab in queue.TABS
    ]
    # What each row shows more than once, or would reverse a URL for: computed once here
    # (a page renders 50 rows; template lookups and reverse() are most of its time).
    detail, claim = (reverse(name, args=[ZERO]) for name in ("reviews:detail", "reviews:claim"))
    for row in rows:
        row.sort_key = queue.sort_key(row, filterset.sort)
        row.overdue = row.is_overdue(filterset.now)
        row.claim_live = row.claim_is_live(filterset.now)
        look = selectors.first_look_of(row, filterset.now) if row.first_look_by_id else None
        row.look_left = look.seconds_left if look and look.running else None
        row.detail_url = detail.replace(str(ZERO), str(row.pk))
        row.claim_url = claim.replace(str(ZERO), str(row.pk))
    return {
        "filterset": filterset,
        "tab": next(t["tab"] for t in tabs if t["active"]),
        "tabs": tabs,
        "rows": rows,
        "sort_label": queue.SORTS[filterset.sort].label,
        "default_sort": queue.DEFAULT_SORT,
        "clear_url": queue_url(QueryDict(), tab=None if filterset.tab == "open" else filterset.tab),
    }


@reviewer_required
@require_GET
def queue_page(request: HtmxHttpRequest) -> HttpResponse:
    filterset = QueueFilter(request.GET, request=request)
    sort = filterset.sort
    try:
        after = request.GET.get("after")
        cursor = queue.Cursor.decode(after, sort) if after else None
    except ValueError:
        return redirect(queue_url(request.GET, after=None))
    rows, next_cursor = queue.page(queue.for_rows(filterset.qs), sort, cursor, QUEUE_PAGE_SIZE)
    context = _context(request, filterset, rows)
    context["paged"] = cursor is not None
    context["first_url"] = queue_url(request.GET, after=None)
    context["next_url"] = queue_url(request.GET, after=next_cursor.encode()) if next_cursor else None
    template = f"{TEMPLATE}#queue-table" if request.htmx else TEMPLATE
    return TemplateResponse(request, template, context)


@reviewer_required
@require_GET
def queue_row(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    filterset = QueueFilter(request.GET, request=request)
    row = queue.for_rows(filterset.qs).filter(pk=escalation_id).first()
    context = _context(request, filterset, [row] if row else [])
    context["row"] = row
    return TemplateResponse(request, f"{TEMPLATE}#queue-live", context)


@reviewer_required
@require_GET
def queue_step(request: HtmxHttpRequest, escalation_id, direction: str) -> HttpResponse:
    """`n` / `p` on an escalation page: the next (previous) escalation in the queue's order
    under the queue's filters (the page passes the queue's query string), or the queue."""
    escalation = _escalation(request, escalation_id)
    filterset = QueueFilter(request.GET, request=request)
    found = queue.neighbour(
        filterset.qs, escalation, filterset.sort, forward=direction == "next"
    )
    if found is None:
        messages.info(request, f"No {direction} escalation in this list.")
        return redirect(queue_url(request.GET, after=None))
    return redirect("reviews:detail", escalation_id=found.pk)
