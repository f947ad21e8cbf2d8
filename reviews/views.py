"""Reviewer pages: the queue and the escalation page.

Views parse, call a selector or a service, and render. An htmx request gets a partial of
the same page template (`page.html#partial`); without JavaScript, writes redirect back.
"""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import retarget
from django_htmx.middleware import HtmxDetails

from escalations import selectors, services
from escalations.models import Decision, Escalation
from escalations.problems import Problem

from . import forms
from .permissions import reviewer_required

DETAIL = "reviews/detail.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# ---------------------------------------------------------------- escalation page


def _escalation(request: HttpRequest, escalation_id) -> Escalation:
    """The escalation with everything its page shows, as the reviewer may see it."""
    return get_object_or_404(selectors.escalation_page(request.user), pk=escalation_id)


def _context(
    escalation: Escalation, *, form=None, notice: str = "", claim_notice: str = ""
) -> dict:
    try:
        decision = escalation.decision
    except Decision.DoesNotExist:
        decision = None
    return {
        "escalation": escalation,
        "decision": decision,
        "decision_forms": forms.decision_forms(escalation, bound=form)
        if escalation.is_open
        else {},
        "notice": notice,
        "claim_notice": claim_notice,
    }


def _respond(request, escalation_id, *, form=None, notice="", level=messages.INFO, status=200):
    """After a write: the panel partial for htmx, else the page (form errors) or a redirect."""
    if not request.htmx and form is None:
        if notice:
            messages.add_message(request, level, notice)
        return redirect("reviews:detail", escalation_id=escalation_id)
    escalation = _escalation(request, escalation_id)
    template = f"{DETAIL}#panel-update" if request.htmx else DETAIL
    return TemplateResponse(
        request, template, _context(escalation, form=form, notice=notice), status=status
    )


def _respond_claim(request, escalation_id, *, notice="", level=messages.INFO, status=200):
    """After a claim or release: the claim box for htmx (the forms keep what was typed)."""
    escalation = _escalation(request, escalation_id)
    if not request.htmx or not escalation.is_open:
        response = _respond(request, escalation_id, notice=notice, level=level, status=status)
        return retarget(response, "#decision-panel") if request.htmx else response
    context = _context(escalation, claim_notice=notice)
    return TemplateResponse(request, f"{DETAIL}#claim-update", context, status=status)


def _closed_notice(escalation: Escalation) -> str:
    """Why a write on a closed escalation changed nothing (a concurrent decision, mostly)."""
    try:
        return f"Not recorded: {escalation.decision.decided_by_name} decided first."
    except Decision.DoesNotExist:
        return f"Not recorded: the escalation is {escalation.get_status_display().lower()}."


@reviewer_required
@require_GET
def escalation_detail(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    return TemplateResponse(request, DETAIL, _context(escalation))


@reviewer_required
@require_GET
def escalation_live(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    """What a live update re-renders: status, claim, timeline; the whole panel once closed."""
    escalation = _escalation(request, escalation_id)
    return TemplateResponse(request, f"{DETAIL}#live-update", _context(escalation))


@reviewer_required
@require_POST
def decide(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    form = forms.decision_form(request.POST, escalation=escalation)
    if form is None:
        return HttpResponseBadRequest("Unknown decision kind.")
    if form.is_valid():
        try:
            services.escalation_decide(
                escalation_id=escalation.pk, request=form.decision_request(), user=request.user
            )
        except services.AlreadyDecided as exc:
            notice = _closed_notice(exc.escalation)
            return _respond(
                request, escalation.pk, notice=notice, level=messages.WARNING, status=409
            )
        except Problem as problem:
            form.add_problem(problem)
        else:
            return _respond(
                request, escalation.pk, notice="Decision recorded.", level=messages.SUCCESS
            )
    return _respond(request, escalation.pk, form=form, status=422)


@reviewer_required
@require_POST
def claim(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_claim(escalation_id=escalation.pk, user=request.user)
    except services.ClaimedByOther as exc:
        holder = exc.escalation.claimed_by.get_username()
        return _claim_refused(request, escalation.pk, f"{holder} has already claimed this.")
    except services.AlreadyDecided as exc:
        return _claim_refused(request, escalation.pk, _closed_notice(exc.escalation))
    return _respond_claim(request, escalation.pk, notice="Claimed: it is yours for now.")


@reviewer_required
@require_POST
def release(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_release(escalation_id=escalation.pk, user=request.user)
    except services.ClaimedByOther as exc:
        holder = exc.escalation.claimed_by.get_username()
        return _claim_refused(request, escalation.pk, f"Only {holder} can release it.")
    return _respond_claim(request, escalation.pk, notice="Released back to the queue.")


def _claim_refused(request, escalation_id, notice: str) -> HttpResponse:
    return _respond_claim(request, escalation_id, notice=notice, level=messages.WARNING, status=409)


@reviewer_required
@require_POST
def redeliver(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    try:
        services.delivery_redeliver(escalation=escalation, user=request.user)
    except Problem as problem:
        notice, level = problem.detail, messages.ERROR
    else:
        notice, level = "Queued a new delivery of the decision.", messages.SUCCESS
    if not request.htmx:
        messages.add_message(request, level, notice)
        return redirect("reviews:detail", escalation_id=escalation.pk)
    context = {**_context(_escalation(request, escalation.pk)), "delivery_notice": notice}
    return TemplateResponse(request, f"{DETAIL}#deliveries", context)
