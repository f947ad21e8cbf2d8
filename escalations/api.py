"""The agent API (API.md): escalate, poll or long-poll, the decisions feed, ack, withdraw, gate.

Long-polls (`wait`) are held by escalations.transport.longpoll in front of Django under ASGI, with no
database connection; the views here always answer at once.
"""

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Router
from ninja.errors import AuthenticationError

# What ninja's Header and Query shortcuts call: the same parameters, typed for mypy.
from ninja.params.functions import Header, Query

from . import selectors, services
from .auth import AgentBearer, AgentBearerInQuery, AgentRequest
from .models import Agent, Decision, Escalation, hash_token
from .problems import Problem
from .schemas import (
    DECISIONS_CURSOR_RE,
    IDEMPOTENCY_KEY_RE,
    AnswerIn,
    DecisionsPageOut,
    EscalationIn,
    EscalationOut,
    GateIn,
    GateOut,
    ProblemOut,
)
from .wire import escalation_dict, gate_dict

router = Router(auth=AgentBearer(), tags=["agents"])



def budget_headers(request: HttpRequest) -> dict[str, str]:
    agent = getattr(request, "auth", None)
    if not isinstance(agent, Agent):
        return {}
    return budget_headers_for(agent)


def budget_headers_for(agent: Agent) -> dict[str, str]:
    """The agent's escalation budget for the current period (a UTC day): every answer to an
    agent carries it. Over budget is shown, never refused: Remaining stops at 0."""
    used = agent.budget_used_on(timezone.now().date())
    return {
        "Handoff-Budget-Limit": str(agent.daily_budget),
        "Handoff-Budget-Used": str(used),
        "Handoff-Budget-Remaining": str(max(0, agent.daily_budget - used)),
    }


def json_response(request: HttpRequest, data: Any, status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )
    for name, value in {**budget_headers(request), **headers}.items():
        response[name] = value
    return response


def etag(escalation_id: uuid.UUID | str, status: str, updated_at: datetime) -> str:
    stamp = f"{escalation_id}:{status}:{updated_at.timestamp()}"
    return '"' + hashlib.sha1(stamp.encode(), usedforsecurity=False).hexdigest()[:20] + '"'


def etag_for(escalation: Escalation) -> str:
    return etag(escalation.id, escalation.status, escalation.updated_at)


def read_escalation_as_agent(request: AgentRequest, escalation_id: str) -> selectors.AgentRead:
    """The agent's own escalation, authenticated in the same query (one round trip).

    401 for a bad token, 404 for an escalation that is not this agent's.
    """
    token = str(request.auth)
    try:
        pk = uuid.UUID(escalation_id)
    except ValueError:
        pk = None
    if pk is not None:
        found = selectors.escalation_read_for_token(pk, hash_token(token))
        if found is not None:
            request.auth = found.agent
            return found
    agent = services.agent_for_token(token)
    if agent is None:
        raise AuthenticationError()
    request.auth = agent
    raise Problem(404, f"No escalation {escalation_id} for this agent.")


def escalation_pk(escalation_id: str) -> uuid.UUID:
    """The id in a path, or 404: a malformed id names no escalation."""
    try:
        return uuid.UUID(escalation_id)
    except ValueError:
        raise Problem(404, f"No escalation {escalation_id!r}.") from None


def get_own_escalation(request: AgentRequest, escalation_id: str) -> Escalation:
    return own_escalation(request.auth, escalation_id)


def own_escalation(agent: Agent, escalation_id: str) -> Escalation:
    """The agent's own escalation, or 404 (another agent's is not found, never forbidden).
    The REST views and the MCP tools (escalations.mcp_api) both ask here."""
    pk = escalation_pk(escalation_id)
    found = list(
        Escalation.objects.select_related("run", "decision").filter(pk=pk, agent=agent).order_by()[:1]
    )
    if not found:
        raise Problem(404, f"No escalation {escalation_id} for this agent.")
    found[0].agent = agent
    return found[0]


@router.post(
    "/escalations",
    response={201: EscalationOut, 200: EscalationOut, 409: ProblemOut, 422: ProblemOut},
    summary="Hand a paused run to a human",
)
def create_escalation(
    request: AgentRequest,
    payload: EscalationIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_RE,
        description="Replays with the same body answer the same escalation (200), for 24 hours.",
    ),
) -> HttpResponse:
    """201 with the escalation; 200 for a replay of the same Idempotency-Key and body."""
    body = getattr(request, "_handoff_json", None)
    if body is None:
        body = json.loads(request.body)
    result = services.escalation_create(
        agent=request.auth, package=payload.to_input(body), idempotency_key=idempotency_key
    )
    escalation = result.escalation
    status = 201 if result.created else 200
    return json_response(
        request,
        escalation_dict(escalation),
        status=status,
        Location=f"/api/v1/escalations/{escalation.id}",
        ETag=etag_for(escalation),
    )


@router.get(
    "/escalations/{escalation_id}",
    response={200: EscalationOut, 304: None, 404: ProblemOut},
    summary="The escalation; long-poll with ?wait=N",
    auth=AgentBearerInQuery(),
)
def get_escalation(
    request: AgentRequest,
    escalation_id: str,
    wait: int = Query(
        0, ge=0, le=60, description="Seconds to wait while it waits for a reviewer (0-60)."
    ),
) -> HttpResponse:
    """With `wait`, the answer comes as soon as the escalation leaves the queue (pending or
    claimed): decided, withdrawn, or awaiting_agent (a reviewer's question to answer)."""
    found = read_escalation_as_agent(request, escalation_id)
    status, headers, body = agent_read_answer(found, request.headers.get("If-None-Match", ""))
    response = HttpResponse(body, status=status, content_type=headers.pop("Content-Type", None))
    for name, value in headers.items():
        response[name] = value
    return response


def agent_read_answer(found: selectors.AgentRead, if_none_match: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of GET /escalations/{id}: the view and the long-poll share it."""
    tag = etag(found.wire["id"], found.status, found.updated_at)
    headers = {"ETag": tag, **budget_headers_for(found.agent)}
    if if_none_match and (
        if_none_match.strip() == "*" or tag in [t.strip() for t in if_none_match.split(",")]
    ):
        return 304, headers, b""
    body = json.dumps(found.wire, ensure_ascii=False, separators=(",", ":")).encode()
    return 200, {"Content-Type": "application/json", **headers}, body


@router.get(
    "/decisions",
    response={200: DecisionsPageOut},
    summary="Decisions on this agent's escalations, oldest first",
)
def list_decisions(
    request: AgentRequest,
    after: str | None = Query(
        None, pattern=DECISIONS_CURSOR_RE, description="next_cursor of the previous page (digits)."
    ),
    wait: int = Query(0, ge=0, le=60, description="Long-poll until something is decided."),
    limit: int = Query(100, ge=1, le=100),
) -> HttpResponse:
    cursor = int(after or 0)
    decisions = list(
        Decision.objects.select_related("escalation__run", "escalation__agent")
        .filter(agent=request.auth, seq__gt=cursor)
        .order_by("seq")[:limit]
    )
    items = []
    for decision in decisions:
        escalation = decision.escalation
        escalation.decision = decision
        items.append(escalation_dict(escalation))
    next_cursor = str(decisions[-1].seq) if decisions else str(cursor)
    return json_response(request, {"items": items, "next_cursor": next_cursor})


@router.post(
    "/escalations/{escalation_id}/ack",
    response={200: EscalationOut, 404: ProblemOut, 409: ProblemOut},
    summary="Confirm the run resumed with the decision",
)
def acknowledge(request: AgentRequest, escalation_id: str) -> HttpResponse:
    escalation = get_own_escalation(request, escalation_id)
    escalation = services.escalation_acknowledge(escalation=escalation)
    return json_response(request, escalation_dict(escalation), ETag=etag_for(escalation))


@router.post(
    "/escalations/{escalation_id}/answer",
    response={200: EscalationOut, 404: ProblemOut, 409: ProblemOut, 422: ProblemOut},
    summary="Answer a reviewer's question",
)
def answer(request: AgentRequest, escalation_id: str, payload: AnswerIn) -> HttpResponse:
    """Status awaiting_agent: the escalation goes back to the queue (pending) with its
    priority; the answer's history steps and links are appended to the package, and its
    respond_by moves on by the time the question waited. No open question: 409."""
    escalation = get_own_escalation(request, escalation_id)
    escalation = services.escalation_answer(escalation=escalation, answer=payload.to_input())
    return json_response(request, escalation_dict(escalation), ETag=etag_for(escalation))


@router.post(
    "/escalations/{escalation_id}/withdraw",
    response={200: EscalationOut, 404: ProblemOut, 409: ProblemOut},
    summary="Take an open escalation back",
)
def withdraw(request: AgentRequest, escalation_id: str) -> HttpResponse:
    escalation = get_own_escalation(request, escalation_id)
    escalation = services.escalation_withdraw(escalation=escalation)
    return json_response(request, escalation_dict(escalation), ETag=etag_for(escalation))


@router.post(
    "/gate",
    response={200: GateOut, 422: ProblemOut},
    summary="Ask the governance policy before acting",
)
def gate(request: AgentRequest, payload: GateIn) -> HttpResponse:
    verdict, rules = services.gate_check(agent=request.auth, data=payload.to_input())
    return json_response(request, gate_dict(verdict, rules))
