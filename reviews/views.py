"""Reviewer pages: the queue and the escalation page.

Views parse, call a selector or a service, and render. An htmx request gets a partial of
the same page template (`page.html#partial`); without JavaScript, writes redirect back.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import retarget
from django_htmx.middleware import HtmxDetails

from escalations import calibration, precedents, selectors, services
from escalations.errors import DomainError, Invalid
from escalations.models import Decision, Escalation, Event, FlagReview
from people.roles import is_manager, reviewer_required

from . import forms, refusals

DETAIL = "reviews/detail.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    user: User  # the login-required middleware lets no anonymous request reach these views


# ---------------------------------------------------------------- escalation page


def _escalation(request: HttpRequest, escalation_id) -> Escalation:
    """The escalation with everything its page shows, as the reviewer may see it."""
    return get_object_or_404(selectors.escalation_page(request.user), pk=escalation_id)


def _context(
    escalation: Escalation,
    *,
    user=None,
    form=None,
    notice: str = "",
    claim_notice: str = "",
    refused: bool = False,
    **forms_bound,
) -> dict:
    try:
        decision = escalation.decision
    except Decision.DoesNotExist:
        decision = None
    return {
        "escalation": escalation,
        "decision": decision,
        "decision_forms": forms.decision_forms(escalation, bound=form, user=user)
        if escalation.is_open
        else {},
        "notice": notice,
        "claim_notice": claim_notice,
        "refused": refused,  # the reviewer's own write was refused (409): the not-sent box says so
        "approvals": selectors.approval_state(escalation),
        "calibration": _calibration_note(escalation),
        "precedents": precedents.similar(escalation),
        "recommendations": selectors.recommendations_of(escalation),
        "first_look": selectors.first_look_of(escalation),
        **page_forms(escalation, decision, **forms_bound),
    }


def _calibration_note(escalation: Escalation) -> str:
    found = services.calibration_for(escalation.agent_id, escalation.domain)
    if found is None:
        return (
            f"{escalation.agent.name} is not calibrated yet: fewer than {calibration.MIN_JUDGED} "
            "of its escalations have been judged by a person."
        )
    return f"{escalation.agent.name} {found.sentence(escalation.confidence)}."


def _respond(request, escalation_id, *, form=None, notice="", level=messages.INFO, status=200):
    """After a write: the panel partial for htmx, else the page (form errors) or a redirect."""
    if not request.htmx and form is None:
        if notice:
            messages.add_message(request, level, notice)
        return redirect("reviews:detail", escalation_id=escalation_id)
    escalation = _escalation(request, escalation_id)
    template = f"{DETAIL}#panel-update" if request.htmx else DETAIL
    return TemplateResponse(
        request,
        template,
        _context(escalation, user=request.user, form=form, notice=notice, refused=status == 409),
        status=status,
    )


def _respond_claim(request, escalation_id, *, notice="", level=messages.INFO, status=200, **bound):
    """After a claim, release, reassign or question: the claim box for htmx (the forms keep
    what was typed). Without JS, a redirect; or the page, when a form (`bound`: the reassign
    or question form) has errors."""
    escalation = _escalation(request, escalation_id)
    if not bound and (not request.htmx or not escalation.is_open):
        response = _respond(request, escalation_id, notice=notice, level=level, status=status)
        return retarget(response, "#decision-panel") if request.htmx else response
    context = _context(escalation, user=request.user, claim_notice=notice, refused=status == 409, **bound)
    template = f"{DETAIL}#claim-update" if request.htmx else DETAIL
    return TemplateResponse(request, template, context, status=status)


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
    return TemplateResponse(request, DETAIL, _context(escalation, user=request.user))


@reviewer_required
@require_GET
def escalation_live(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    """What a live update re-renders: status, claim, timeline; the whole panel once closed."""
    escalation = _escalation(request, escalation_id)
    return TemplateResponse(
        request, f"{DETAIL}#live-update", _context(escalation, user=request.user)
    )


@reviewer_required
@require_POST
def decide(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    form = forms.decision_form(request.POST, escalation=escalation, user=request.user)
    if form is None:
        return HttpResponseBadRequest("Unknown decision kind.")
    if form.is_valid():
        try:
            result = services.escalation_decide(
                escalation_id=escalation.pk,
                request=form.decision_request(),
                user=request.user,
                override_claim=form.cleaned_data["override_claim"],
            )
        except services.AlreadyDecided as exc:
            notice = _closed_notice(exc.escalation)
            return _respond(
                request, escalation.pk, notice=notice, level=messages.WARNING, status=409
            )
        except services.ClaimedByOther as exc:
            form.add_claimed(_holder(exc.escalation))
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            # Under the two-person rule an approval leaves the escalation open.
            notice = (
                "Your approval is recorded; the decision waits for another reviewer's."
                if result.is_open
                else "Decision recorded."
            )
            return _respond(request, escalation.pk, notice=notice, level=messages.SUCCESS)
    return _respond(request, escalation.pk, form=form, status=422)


def _holder(escalation: Escalation) -> str:
    """Who holds the claim a service refused over (its error always names one)."""
    holder = escalation.claimed_by
    return holder.get_username() if holder is not None else "someone else"


@reviewer_required
@require_POST
def claim(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_claim(escalation_id=escalation.pk, user=request.user)
    except services.ClaimedByOther as exc:
        holder = _holder(exc.escalation)
        return _claim_refused(request, escalation.pk, f"{holder} has already claimed this.")
    except services.AlreadyDecided as exc:
        return _claim_refused(request, escalation.pk, _closed_notice(exc.escalation))
    except DomainError as refusal:  # it waits for the agent's answer
        return _claim_refused(request, escalation.pk, refusals.notice(refusal))
    return _respond_claim(request, escalation.pk, notice="Claimed: it is yours for now.")


@reviewer_required
@require_POST
def ask(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    """Ask the agent a question: the escalation waits for its answer, out of the queue."""
    escalation = _escalation(request, escalation_id)
    form = forms.QuestionForm(request.POST)
    if form.is_valid():
        try:
            services.escalation_ask(
                escalation_id=escalation.pk, user=request.user, text=form.cleaned_data["text"]
            )
        except services.ClaimedByOther as exc:
            notice = f"{_holder(exc.escalation)} has claimed this: only they can ask now."
            return _claim_refused(request, escalation.pk, notice)
        except services.AlreadyDecided as exc:
            return _claim_refused(request, escalation.pk, _closed_notice(exc.escalation))
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            notice = "Question sent: this waits for the agent's answer, out of the queue."
            return _respond_claim(request, escalation.pk, notice=notice, level=messages.SUCCESS)
    return _respond_claim(request, escalation.pk, status=422, question_form=form)


@reviewer_required
@require_POST
def release(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_release(escalation_id=escalation.pk, user=request.user)
    except services.ClaimedByOther as exc:
        holder = _holder(exc.escalation)
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
    except DomainError as refusal:
        notice, level = refusals.notice(refusal), messages.ERROR
    else:
        notice, level = "Queued a new delivery of the decision.", messages.SUCCESS
    if not request.htmx:
        messages.add_message(request, level, notice)
        return redirect("reviews:detail", escalation_id=escalation.pk)
    context = {
        **_context(_escalation(request, escalation.pk), user=request.user),
        "delivery_notice": notice,
    }
    return TemplateResponse(request, f"{DETAIL}#deliveries", context)


# ---------------------------------------------------------------- claims, comments, flag reviews


def page_forms(escalation: Escalation, decision, **bound) -> dict:
    """The escalation page's small forms (fresh, or the bound one a failed POST gives back)."""
    flaggable = FlagReview.applies_to(escalation, decision)
    flag_review = getattr(escalation, "flag_review", None) if flaggable else None
    flag_form = bound.get("flag_form")
    if flaggable and flag_review is None and flag_form is None:
        flag_form = forms.FlagReviewForm(escalation=escalation, decided_option=decision.option_key)
    return {
        "reassign_form": bound.get("reassign_form") or forms.ReassignForm(),
        "comment_form": bound.get("comment_form") or forms.CommentForm(),
        "question_form": bound.get("question_form") or forms.QuestionForm(),
        "last_answer": _last_answer(escalation),
        "last_claim": _last_event(escalation, Event.Kind.CLAIMED, Event.Kind.REASSIGNED),
        "flaggable": flaggable,
        "flag_review": flag_review,
        "flag_form": flag_form,
        "claim_renew_seconds": CLAIM_RENEW_SECONDS,
        "claim_lease_minutes": settings.CLAIM_LEASE_SECONDS // 60,
    }


def _last_answer(escalation: Escalation):
    """The agent's latest answer to a question (from the page's prefetched timeline)."""
    return _last_event(escalation, Event.Kind.QUESTION_ANSWERED)


def _last_event(escalation: Escalation, *kinds: str):
    """The latest event of these kinds (from the page's prefetched timeline)."""
    found = [e for e in escalation.events.all() if e.kind in kinds]
    return found[-1] if found else None


# The open page renews its claim this often; the lease (CLAIM_LEASE_SECONDS) is far longer.
CLAIM_RENEW_SECONDS = 60


@reviewer_required
@require_POST
def claim_renew(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    """The open page's heartbeat: 204 while the claim holds; else the claim box says why."""
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_claim_renew(escalation_id=escalation.pk, user=request.user)
    except services.ClaimLost as exc:
        if exc.escalation.claim_is_live():
            notice = f"Your claim has passed to {_holder(exc.escalation)}."
        else:
            notice = "Your claim lapsed: claim it again if you are still on it."
        return _claim_refused(request, escalation.pk, notice)
    if not request.htmx:
        return redirect("reviews:detail", escalation_id=escalation.pk)
    return HttpResponse(status=204)


@reviewer_required
@require_POST
def reassign(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    form = forms.ReassignForm(request.POST)
    if not form.is_valid():
        return _respond_claim(request, escalation.pk, reassign_form=form, status=422)
    assignee = form.cleaned_data["assignee"]
    try:
        services.escalation_reassign(
            escalation_id=escalation.pk,
            user=request.user,
            assignee=assignee,
            override=is_manager(request.user),
        )
    except services.ClaimedByOther as exc:
        holder = _holder(exc.escalation)
        return _claim_refused(
            request, escalation.pk, f"{holder} holds the claim: only they or a manager can hand it on."
        )
    except services.AlreadyDecided as exc:
        return _claim_refused(request, escalation.pk, _closed_notice(exc.escalation))
    except DomainError as refusal:
        errors = refusals.field_errors(refusal)
        form.add_error("assignee", errors[0].message if errors else refusals.notice(refusal))
        return _respond_claim(request, escalation.pk, reassign_form=form, status=422)
    return _respond_claim(
        request, escalation.pk, notice=f"Assigned to {assignee.get_username()}.", level=messages.SUCCESS
    )


def _respond_form(request, escalation_id, partial: str, notice: str, status: int = 200, **bound):
    """After a comment or flag review: the partial for htmx; a redirect, or the page with
    the form's errors, without JS."""
    if not request.htmx and not bound:
        messages.add_message(request, messages.SUCCESS if status < 400 else messages.WARNING, notice)
        return redirect("reviews:detail", escalation_id=escalation_id)
    escalation = _escalation(request, escalation_id)
    context = {**_context(escalation, user=request.user, refused=status == 409, **bound), "form_notice": notice}
    template = f"{DETAIL}#{partial}" if request.htmx else DETAIL
    return TemplateResponse(request, template, context, status=status)


@reviewer_required
@require_POST
def comment(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    form = forms.CommentForm(request.POST)
    if form.is_valid():
        try:
            services.escalation_comment(
                escalation_id=escalation.pk, user=request.user, body=form.cleaned_data["body"]
            )
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            return _respond_form(request, escalation.pk, "comment-update", "Comment added.")
    return _respond_form(request, escalation.pk, "comment-update", "", 422, comment_form=form)


@reviewer_required
@require_POST
def flag_review(request: HtmxHttpRequest, escalation_id) -> HttpResponse:
    escalation = _escalation(request, escalation_id)
    decided = escalation.decision.option_key if hasattr(escalation, "decision") else ""
    form = forms.FlagReviewForm(request.POST, escalation=escalation, decided_option=decided)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.flag_review_record(
                escalation_id=escalation.pk,
                user=request.user,
                verdict=data["verdict"],
                option_key=data.get("option_key") or "",
                note=data.get("note") or "",
            )
        except DomainError as refusal:
            if not isinstance(refusal, Invalid):
                return _respond_form(request, escalation.pk, "flag-update", refusals.notice(refusal), 409)
            form.add_refusal(refusal)
        else:
            return _respond_form(request, escalation.pk, "flag-update", "Thanks: review recorded.")
    return _respond_form(request, escalation.pk, "flag-update", "", 422, flag_form=form)


# ---------------------------------------------------------------- my runs

MY_RUNS = "reviews/my_runs.html"


def _close_form(run, data=None) -> forms.RunCloseForm:
    return forms.RunCloseForm(data, auto_id=f"run-{run.pk}-%s")


def _my_runs(request, *, bound: forms.RunCloseForm | None = None, bound_run: int | None = None):
    """The reviewer's taken-over runs, each open one with its close form (the bound one
    with its errors)."""
    runs = list(selectors.runs_taken_over_by(request.user))
    for run in runs:
        close = bound if bound is not None and run.pk == bound_run else _close_form(run)
        run.close_form = close  # type: ignore[attr-defined]  # for the template
    return runs


@reviewer_required
@require_GET
def my_runs(request: HtmxHttpRequest) -> HttpResponse:
    return TemplateResponse(request, MY_RUNS, {"runs": _my_runs(request)})


@reviewer_required
@require_POST
def run_close(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(selectors.runs_taken_over_by(request.user), pk=run_id)
    form = _close_form(run, request.POST)
    if form.is_valid():
        try:
            run = services.run_close(run_id=run.pk, user=request.user, note=form.cleaned_data["note"])
        except DomainError as refusal:
            if isinstance(refusal, Invalid):
                form.add_refusal(refusal)
            elif not request.htmx:
                messages.warning(request, refusals.notice(refusal))
                return redirect("reviews:my_runs")
            else:
                form.add_error(None, refusals.notice(refusal))
        else:
            if not request.htmx:
                messages.success(request, f"Closed run {run.run_id}.")
                return redirect("reviews:my_runs")
            run = get_object_or_404(selectors.runs_taken_over_by(request.user), pk=run_id)
            context = {"run": run, "row_notice": "Closed. It stays listed here for the record."}
            return TemplateResponse(request, f"{MY_RUNS}#run-row", context)
    if request.htmx:
        run.close_form = form  # type: ignore[attr-defined]  # for the template
        return TemplateResponse(request, f"{MY_RUNS}#run-row", {"run": run}, status=422)
    context = {"runs": _my_runs(request, bound=form, bound_run=run.pk)}
    return TemplateResponse(request, MY_RUNS, context, status=422)
