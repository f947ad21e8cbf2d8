"""The reviewer API (API.md): scripts and machine reviewers decide through the same services."""

from functools import cache

from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from ninja import Query, Router
from ninja.security import HttpBearer

from escalations import rows, selectors, services
from escalations.api import escalation_pk, json_response
from escalations.errors import FieldError
from escalations.models import AgentToken, Escalation, hash_token
from escalations.precedents import similar_dicts
from escalations.problems import Problem
from escalations.review_schemas import (
    EventsOut,
    PendingApprovalOut,
    QuestionIn,
    RecommendationIn,
    RecommendationOut,
    ReviewerEscalationOut,
)
from escalations.schemas import QUEUE_CURSOR_RE, DecisionIn, EscalationOut, ProblemOut, QueuePageOut
from escalations.schemas_detail import ReviewerDetailOut
from escalations.wire import escalation_dict, iso, package_dict
from people.models import Profile
from people.roles import is_reviewer, remember_groups

from . import services as reviewer_services
from .filters import QueueFilter, queue_parameters
from .models import ReviewerToken
from .queue import Cursor, for_rows, page


@cache
def _token_sql() -> str:
    # ReviewerToken.objects.filter(token_hash=, revoked_at__isnull=True, user__is_active=True)
    # with its user, the user's profile and group names (a row per group), in one statement:
    # every reviewer API call authenticates here (tests/test_rows.py holds it to the ORM's).
    user, groups = User._meta.db_table, User.groups.through._meta.db_table
    return (
        f"SELECT {rows.columns(ReviewerToken, 't')}, {rows.columns(User, 'u')},"  # noqa: S608 (the models' own)
        f" {rows.columns(Profile, 'p')}, g.name"
        f" FROM {ReviewerToken._meta.db_table} t JOIN {user} u ON u.id = t.user_id"
        f" LEFT JOIN {Profile._meta.db_table} p ON p.user_id = u.id"
        f" LEFT JOIN {groups} ug ON ug.user_id = u.id LEFT JOIN {Group._meta.db_table} g ON g.id = ug.group_id"
        " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND u.is_active"
    )


def live_reviewer_token(digest: str) -> ReviewerToken | None:
    """The live token of this hash with its user, whose profile and groups are loaded."""
    found = rows.fetch_all(_token_sql(), [digest])
    if not found:
        return None
    token = rows.instance(ReviewerToken, found[0])
    token.user = rows.instance(User, found[0], rows.width(ReviewerToken))
    profile = rows.instance(Profile, found[0], rows.width(ReviewerToken) + rows.width(User))
    User.profile.related.set_cached_value(token.user, profile if profile.pk else None)
    remember_groups(token.user, {row[-1] for row in found if row[-1] is not None})
    return token


class ReviewerBearer(HttpBearer):
    openapi_description = "A reviewer's personal token (`manage.py reviewer_token USERNAME`)."

    def authenticate(self, request: HttpRequest, token: str):
        if len(token) > 200:
            return None
        digest = hash_token(token)
        found = live_reviewer_token(digest)
        if found is not None:
            if not is_reviewer(found.user):
                raise Problem(403, "This token's user is not in the reviewer or manager group.")
            request.user = found.user  # the dashboard's code the API shares reads request.user
            reviewer_services.reviewer_token_used(token=found)
            return found.user
        if AgentToken.objects.filter(token_hash=digest).exists():
            raise Problem(403, "Agent tokens cannot use the reviewer API; use a reviewer token.")
        return None


router = Router(auth=ReviewerBearer(), tags=["reviewers"])


def reviewer_dict(escalation: Escalation) -> dict:
    data = escalation_dict(escalation)
    data.update(package_dict(escalation))
    data["claimed_by"] = (
        {"name": escalation.claimed_by.get_username(), "until": iso(escalation.claimed_until)}
        if escalation.claim_is_live() and escalation.claimed_by
        else None
    )
    data["recommendations"] = [
        recommendation_dict(r) for r in selectors.recommendations_of(escalation)
    ]
    look = selectors.first_look_of(escalation)
    data["first_look"] = {"name": look.name, "until": iso(look.until)} if look else None
    return data


def recommendation_dict(recommendation) -> dict:
    return {
        "option": recommendation.option_key,
        "args": recommendation.args,
        "note": recommendation.note,
        "confidence": recommendation.confidence,
        "by": {"type": "machine" if recommendation.is_machine else "human", "name": recommendation.name},
        "at": iso(recommendation.at),
    }


def _escalation(request, escalation_id: str) -> Escalation:
    pk = escalation_pk(escalation_id)
    found = selectors.escalations_for_reviewer(request.auth).filter(pk=pk).first()
    if found is None:
        raise Problem(404, f"No escalation {escalation_id}.")
    return found


# The queue's query: the dashboard's filter set (reviews.filters), its tab and sort, and the
# page. Any other parameter, a repeated one, or a value the filter set refuses is a 400.
PAGE_PARAMS = ("limit", "cursor")
QUEUE_PARAMS = (*QueueFilter.base_filters, *QueueFilter._meta.form.base_fields, *PAGE_PARAMS)


def queue_filters(request) -> QueueFilter:
    """The filter set of the query, every value valid; else Problem(400) naming each one."""
    query = request.GET
    errors = [
        FieldError(name, "is not a parameter of the queue (" + ", ".join(QUEUE_PARAMS) + ")")
        for name in query
        if name not in QUEUE_PARAMS
    ]
    errors += [FieldError(name, "must be given once") for name in query if len(query.getlist(name)) > 1]
    if not errors:
        filterset = QueueFilter(query, request=request)
        if filterset.is_valid():
            return filterset
        errors = [
            FieldError(name, " ".join(str(m) for m in messages).rstrip("."))
            for name, messages in filterset.errors.items()
        ]
    raise Problem(400, "Bad query: " + "; ".join(f"{e.field} {e.message}" for e in errors), errors=errors)


@router.get(
    "/queue",
    response={200: QueuePageOut, 403: ProblemOut},
    openapi_extra={"parameters": queue_parameters()},
)
def queue(
    request,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(
        None, pattern=QUEUE_CURSOR_RE, description="next_cursor of the previous page (same sort)."
    ),
):
    """The queue as the dashboard shows it: open escalations in priority order by default,
    narrowed by the dashboard's filters, a page at a time."""
    filterset = queue_filters(request)
    sort = filterset.sort
    try:
        position = Cursor.decode(cursor, sort) if cursor else None
    except ValueError:
        raise Problem(
            400, "Bad query: cursor is not a next_cursor of this sort",
            errors=[FieldError("cursor", "is not a next_cursor of this sort")],
        ) from None
    rows, next_cursor = page(for_rows(filterset.qs).select_related("run"), sort, position, limit)
    return json_response(
        request,
        {"items": [escalation_dict(e) for e in rows], "next_cursor": next_cursor.encode() if next_cursor else None},
    )


@router.get("/escalations/{escalation_id}", response={200: ReviewerDetailOut, 403: ProblemOut, 404: ProblemOut})
def detail(request, escalation_id: str):
    """The escalation object, the whole package, who holds the claim, and up to five decided
    escalations most like it (`similar`)."""
    escalation = _escalation(request, escalation_id)
    data = reviewer_dict(escalation)
    data["similar"] = similar_dicts(escalation)
    return json_response(request, data)


CLAIM_RESPONSES = {200: ReviewerEscalationOut, 403: ProblemOut, 404: ProblemOut, 409: ProblemOut}


def _claim_conflict(exc: services.ClaimedByOther, hint: str = "") -> Problem:
    holder = exc.escalation.claimed_by.get_username() if exc.escalation.claimed_by else "someone"
    return Problem(
        409,
        f"Claimed by {holder} until {iso(exc.escalation.claimed_until)}.{hint}",
        type="claimed",
        title="Claimed by another reviewer",
        extra={"claimed_by": {"name": holder, "until": iso(exc.escalation.claimed_until)}},
    )


def _decided_conflict(exc: services.AlreadyDecided) -> Problem:
    escalation = exc.escalation
    data = escalation_dict(escalation)
    if data["decision"]:
        by = data["decision"]["decided_by"]["name"]
        detail = f"Already decided by {by}: {data['decision']['kind']}."
    else:
        detail = f"The escalation is {escalation.status}."
    return Problem(
        409, detail, type="already-decided", title="Already decided",
        extra={"decision": data["decision"], "escalation": data},
    )


@router.post("/escalations/{escalation_id}/claim", response=CLAIM_RESPONSES)
def claim(request, escalation_id: str):
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_claim(escalation_id=escalation.pk, user=request.auth)
    except services.ClaimedByOther as exc:
        raise _claim_conflict(exc) from None
    except services.AlreadyDecided as exc:
        raise _decided_conflict(exc) from None
    return json_response(request, reviewer_dict(_escalation(request, escalation_id)))


@router.post("/escalations/{escalation_id}/release", response=CLAIM_RESPONSES)
def release(request, escalation_id: str):
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_release(escalation_id=escalation.pk, user=request.auth)
    except services.ClaimedByOther as exc:
        raise _claim_conflict(exc) from None
    return json_response(request, reviewer_dict(_escalation(request, escalation_id)))


@router.post(
    "/escalations/{escalation_id}/decision",
    response={201: EscalationOut, 202: PendingApprovalOut, 403: ProblemOut, 404: ProblemOut, 409: ProblemOut, 422: ProblemOut},
)
def decide(request, escalation_id: str, payload: DecisionIn):
    """201 with the escalation and its decision; 409 carries the decision that stands.

    Someone else's live claim: 409 naming the holder (`claimed_by`), unless
    `"override_claim": true` (the dashboard's "Decide anyway").

    The two-person rule: when the option is irreversible (or the action at stake is) and the
    domain's policy needs N > 1 approvals, the call records this reviewer's approval and
    answers 202 with the escalation (still open, `decision` null) and `approvals`:
    `{"required": N, "approved": k, "option": key, "approved_by": [names]}`. The call that
    brings k to N makes the decision and answers 201. Approvals count together when they
    name the same option with the same args; the same reviewer twice counts once.
    """
    # The service reads the escalation, locked (NotFound: 404): every reviewer may see every
    # escalation (selectors.escalations_for_reviewer), and the one read is the decision's own.
    try:
        result = services.escalation_decide(
            escalation_id=escalation_pk(escalation_id),
            request=services.DecisionRequest(
                kind=payload.kind, option=payload.option, args=payload.args, instruction=payload.instruction
            ),
            user=request.auth,
            override_claim=payload.override_claim,
        )
    except services.AlreadyDecided as exc:
        raise _decided_conflict(exc) from None
    except services.ClaimedByOther as exc:
        raise _claim_conflict(exc, ' Send "override_claim": true to decide anyway.') from None
    if result.is_open:
        escalation = _escalation(request, escalation_id)
        data = escalation_dict(escalation)
        data["approvals"] = approvals_dict(selectors.approval_state(escalation))
        return json_response(request, data, status=202)
    return json_response(request, escalation_dict(result), status=201)


@router.post(
    "/escalations/{escalation_id}/recommendation",
    response={201: RecommendationOut, 403: ProblemOut, 404: ProblemOut, 409: ProblemOut, 422: ProblemOut},
)
def recommend(request, escalation_id: str, payload: RecommendationIn):
    """Leave advice without deciding: 201 with it; it shows on the escalation's page and in
    the detail's `recommendations`. A machine reviewer's advice on its own first look ends
    the look: people are told, and see it beside the agent's. Decided already: 409."""
    escalation = _escalation(request, escalation_id)
    try:
        recommendation = services.escalation_recommend(
            escalation_id=escalation.pk,
            request=services.RecommendationRequest(
                option=payload.option, args=payload.args, note=payload.note, confidence=payload.confidence
            ),
            user=request.auth,
        )
    except services.AlreadyDecided as exc:
        raise _decided_conflict(exc) from None
    return json_response(request, recommendation_dict(recommendation), status=201)


@router.post(
    "/escalations/{escalation_id}/question",
    response={201: EscalationOut, 403: ProblemOut, 404: ProblemOut, 409: ProblemOut, 422: ProblemOut},
)
def question(request, escalation_id: str, payload: QuestionIn):
    """Ask the agent for more information: 201 with the escalation, status awaiting_agent
    (out of the queue until the agent answers; the agent gets the `escalation.question`
    webhook and its long-poll answers). 409 when it is decided, someone else holds a live
    claim, or a question is already open."""
    escalation = _escalation(request, escalation_id)
    try:
        services.escalation_ask(escalation_id=escalation.pk, user=request.auth, text=payload.text)
    except services.AlreadyDecided as exc:
        raise _decided_conflict(exc) from None
    except services.ClaimedByOther as exc:
        raise _claim_conflict(exc) from None
    return json_response(request, escalation_dict(_escalation(request, escalation_id)), status=201)


@router.get("/escalations/{escalation_id}/events", response={200: EventsOut, 403: ProblemOut, 404: ProblemOut})
def timeline(request, escalation_id: str):
    """The audit timeline, oldest first: every change, who made it (`actor`: a reviewer, the
    agent's name, policy, timeout, webhook...) and what it carried (`data`)."""
    escalation = _escalation(request, escalation_id)
    items = [
        {"at": iso(event.at), "kind": event.kind, "actor": event.actor, "data": event.data}
        for event in selectors.escalation_events(escalation)
    ]
    return json_response(request, {"items": items})


def approvals_dict(state: selectors.ApprovalState | None) -> dict | None:
    if state is None:
        return None
    leading = state.leading
    return {
        "required": state.required,
        "approved": len(leading),
        "option": leading[0].option_key if leading else None,
        "approved_by": [approval.user_name for approval in leading],
    }
