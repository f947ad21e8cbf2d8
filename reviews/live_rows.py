"""Live queue rows, rendered on the server once per queue view and pushed over the socket.

A queue page tells its socket which view it shows (its query string: tab, filters, sort).
When a change is announced, every socket of the process that knows its view gets the row
rendered under that view (or an empty <template> when the row does not match) and the tab
counts, as HTML inside its JSON notice, and places it (static/js/queue.js) without asking
the server again. Before, every open queue fetched its own row (~10 ms of server CPU each),
so 100 open queues cost ~1 s of CPU per new escalation.

Renders are shared: one per (change, view key) per process. A view key is the view's
parameters (the keyset cursor "after" aside: a row renders the same on every page), plus
the reviewer whenever the row may read differently for them:
- a new escalation ("created") is claimed by nobody, so its row is the same for every
  reviewer of a view, except under views that are about the reader ("mine", "claimed by
  me / someone else"); its render leaves out the "mine" count (a creation never changes it);
- any other change (a claim, a release, a decision) may be about the reader ("you", their
  "mine" count): rendered per reviewer and view.
No render carries a CSRF token: the page's script sends the page's token with a claim.
Every signed-in reviewer sees every escalation today (selectors.escalations_for_reviewer);
once that narrows, the reader's visibility must join the key.
"""

import asyncio
from collections import OrderedDict
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, QueryDict
from django.template.loader import render_to_string

# Views that are about the reader: their rows differ by reviewer even for a new escalation.
PERSONAL = {("tab", "mine"), ("claimed", "me"), ("claimed", "others")}
# Renders kept for sockets still asking (one change reaches every socket within a second).
KEEP = 256
MAX_QUERY = 2000  # a longer "view" is not a queue page's


def view_key(query: str, *, user_pk: int, kind: str) -> tuple:
    """What a row's render depends on, for the view `query` read by reviewer `user_pk`."""
    params = QueryDict(query)
    pairs = tuple(
        sorted((key, value) for key, values in params.lists() if key != "after" for value in values if value)
    )
    personal = kind != "created" or any(pair in PERSONAL for pair in pairs)
    return (pairs, user_pk if personal else None)


def render(escalation_id: str, query: str, user: Any, *, shared: bool) -> str:
    """The live part of the queue page (reviews/queue.html#queue-live) for one escalation
    under the view `query`: what the row view (queue_views.queue_row) answers."""
    from . import queue
    from .filters import QueueFilter
    from .queue_views import TEMPLATE, _context

    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query)
    request.user = user
    filterset = QueueFilter(request.GET, request=request)
    row = queue.for_rows(filterset.qs).filter(pk=escalation_id).first()
    context = _context(request, filterset, [row] if row else [])  # type: ignore[arg-type]
    if shared:  # "mine" is the reader's: a creation leaves it as it is
        context["tabs"] = [{**t, "count": None} if t["tab"].key == "mine" else t for t in context["tabs"]]
    context.update(row=row, user=user)  # no request: no csrf_token (the row leaves it out)
    return render_to_string(f"{TEMPLATE}#queue-live", context)


_renders: "OrderedDict[tuple, asyncio.Future[str]]" = OrderedDict()


async def rendered(event: dict, query: str, user: Any) -> str:
    """The row of the change `event` (an events.Notice) under the view `query`, rendered once
    per view key in this process however many sockets ask."""
    key = (event.get("nonce"), event["id"], *view_key(query, user_pk=user.pk, kind=event["kind"]))
    shared = key[-1] is None
    future = _renders.get(key) if event.get("nonce") else None
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        future = asyncio.ensure_future(
            database_sync_to_async(render)(event["id"], query, user, shared=shared)
        )
        _renders[key] = future
        while len(_renders) > KEEP:
            _renders.popitem(last=False)
    return await asyncio.shield(future)
