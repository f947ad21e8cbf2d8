"""Decisions that come in from a message: Slack's interactivity requests, e-mail action links.

Neither needs a session: Slack's requests are verified by their signature, a link by its
own. Both decide through notifications.inbound, which goes through the domain's service.
"""

import json
import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from escalations.models import Escalation
from operations import metrics

from . import inbound, slack
from .models import InboundAction

log = logging.getLogger(__name__)

LINK_PAGE = "notifications/action_link.html"


@csrf_exempt
@login_not_required
@require_POST
def slack_interactivity(request: HttpRequest) -> HttpResponse:
    """Slack's Interactivity Request URL. A request whose signature does not verify (forged,
    or older than five minutes) is 401 and changes nothing. Slack wants a 200 within three
    seconds; what it shows the person comes after, through the Web API."""
    if not slack.configured():
        return HttpResponse("Slack is not set up on this Handoff.", status=404, content_type="text/plain")
    body = request.body
    if not slack.signature_valid(
        body, request.headers.get("X-Slack-Request-Timestamp"), request.headers.get("X-Slack-Signature")
    ):
        metrics.count(metrics.INBOUND_ACTIONS, via=InboundAction.Via.SLACK, outcome="bad_signature")
        log.warning("slack interactivity request refused: the signature does not verify")
        return HttpResponse("Invalid signature.", status=401, content_type="text/plain")
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except ValueError:
        return HttpResponse("No payload.", status=400, content_type="text/plain")
    if isinstance(payload, dict):
        inbound.slack_click(payload)
    return HttpResponse(status=200)


def _link_page(request: HttpRequest, token: str, *, status: int = 200, **context) -> HttpResponse:
    return TemplateResponse(request, LINK_PAGE, {"token": token, **context}, status=status)


@login_not_required
@require_http_methods(["GET", "POST"])
def action_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the link would decide, and a button to confirm (a mail scanner that follows
    the link changes nothing). POST: decide, once, as the person the link was sent to."""
    try:
        link = inbound.link_read(token)
    except inbound.LinkRefused as refused:
        return _link_page(request, token, refused=refused, status=410)
    escalation = Escalation.objects.select_related("agent", "decision").filter(pk=link.escalation_id).first()
    if escalation is None:
        gone = inbound.LinkRefused("The escalation this link decides no longer exists.", "Escalation gone")
        return _link_page(request, token, refused=gone, status=410)
    option = escalation.option(link.option_key) or {"key": link.option_key, "label": link.option_key}
    person = get_user_model().objects.filter(pk=link.user_id).first()
    context: dict[str, Any] = {
        "escalation": escalation, "option": option, "as_name": person.get_username() if person else "",
    }
    if request.method == "GET":
        closed = None if escalation.is_open else inbound.decided_text(escalation)
        return _link_page(request, token, closed=closed, **context)
    try:
        result = inbound.link_decide(token)
    except inbound.LinkRefused as refused:
        return _link_page(request, token, refused=refused, status=410, **context)
    status = 200 if result.outcome == InboundAction.Outcome.DECIDED else 409
    return _link_page(request, token, result=result, status=status, **context)
