"""The served OpenAPI document: ninja's, completed with what ninja cannot see.

ninja describes each operation from its signature and its declared responses. What the
server does around the views is added here, in one place, so the document says what the
server does (tests/test_schemathesis.py holds every answer to it):
- every error is application/problem+json (escalations.problems), with the statuses that
  the middleware, the parser, the rate limits and a database outage give any operation
  (400, 401, 413, 415, 429, 503), beside the ones each operation declares;
- the response headers: the agent's budget on every answer to an agent, ETag and Location,
  WWW-Authenticate on 401, Retry-After on 429 and 503;
- 405 (with Allow) for a method a path does not take;
- the webhooks the server sends (OpenAPI 3.1 `webhooks`).
"""

from copy import deepcopy
from typing import Any

from escalations.problems import CONTENT_TYPE as PROBLEM_TYPE
from escalations.problems import TITLES
from escalations.schemas import ProblemOut, WebhookEventOut

AGENT_SCHEMES = {"AgentBearer", "AgentBearerInQuery"}
REF = "#/components/schemas/{model}"

# Statuses any operation may answer, whatever it declares, and why.
ANY_OPERATION = {
    400: "Bad request: a query parameter that is invalid, unknown or repeated, a NUL character "
    "in the path or query, or a body that is not JSON.",
    401: "No token, or an unknown or revoked one.",
    413: "The body is over 1 MiB (Content-Length or chunked).",
    429: "Rate limited: wait Retry-After seconds.",
    503: "The database is unavailable for a moment (a restart): wait Retry-After seconds.",
}
WITH_BODY = {
    415: "The body is not application/json.",
    422: "The body has invalid fields: `errors` names each one (a dotted path).",
}

BUDGET_HEADERS = {
    "Handoff-Budget-Limit": "Escalations the agent may make in the current period (a UTC day). "
    "Every answer to a known agent token carries the three budget headers.",
    "Handoff-Budget-Used": "Escalations it made in the current period.",
    "Handoff-Budget-Remaining": "Limit - Used, never below 0 (going over is shown, never refused).",
}
# Errors answered once the agent is known carry its budget too; the ones that may be answered
# before (a bad token, an oversized body, a rate limit, a NUL in the query) may not.
BUDGET_ON = {"2", "304", "404", "409", "415", "422"}
ETAG_OPERATIONS = {"create_escalation", "get_escalation", "acknowledge", "withdraw", "answer"}

# Where an escalation's id leads (OpenAPI links: what a client, or a fuzzer, does next).
ID_LINKS = {
    "GetEscalation": "escalations_api_get_escalation",
    "Acknowledge": "escalations_api_acknowledge",
    "Withdraw": "escalations_api_withdraw",
    "ReviewEscalation": "reviews_api_detail",
    "Claim": "reviews_api_claim",
    "Release": "reviews_api_release",
    "Decide": "reviews_api_decide",
}
LINKS_FROM = {"create_escalation": ("200", "201"), "get_escalation": ("200",), "detail": ("200",)}

WEBHOOK_HEADERS = {
    "Handoff-Event": "The event: escalation.decided or escalation.question.",
    "Handoff-Delivery": "The delivery's id (also `delivery_id` in the body).",
    "Handoff-Signature": 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
}


def _header(description: str, schema: dict, required: bool = True) -> dict:
    return {"description": description, "required": required, "schema": schema}


def _add_model(schema: dict, model) -> str:
    """Put a pydantic model (and the models it uses) in components; its $ref."""
    found = model.model_json_schema(ref_template=REF, mode="serialization")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in found.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, found)
    return REF.format(model=model.__name__)


def _problem_response(ref: str, description: str) -> dict:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": {"$ref": ref}}}}


def _complete_operation(operation: dict, problem_ref: str) -> None:
    responses = {str(status): response for status, response in operation.get("responses", {}).items()}
    operation["responses"] = responses
    extra = dict(ANY_OPERATION)
    if "requestBody" in operation:
        extra.update(WITH_BODY)
    for code, description in extra.items():
        responses.setdefault(str(code), {"description": description})
    for status, response in responses.items():
        if int(status) >= 400:
            described = response.get("description") or TITLES.get(int(status), ("", "Error"))[1]
            response.clear()
            response.update(_problem_response(problem_ref, described))
    headers_for = {status: responses[status].setdefault("headers", {}) for status in responses}

    headers_for["401"]["WWW-Authenticate"] = _header("Bearer realm=\"handoff\"", {"type": "string"})
    for status in ("429", "503"):
        headers_for[status]["Retry-After"] = _header(
            "Seconds to wait before trying again.", {"type": "integer", "minimum": 0}
        )
    name = operation["operationId"].rsplit("_api_", 1)[-1]
    if name in ETAG_OPERATIONS:
        for status in responses:
            if status.startswith("2") or status == "304":
                headers_for[status]["ETag"] = _header(
                    "The escalation's version: send it as If-None-Match to get 304 while it "
                    "is unchanged.",
                    {"type": "string"},
                )
    if name == "create_escalation":
        for status in ("200", "201"):
            headers_for[status]["Location"] = _header(
                "The escalation's URL.", {"type": "string", "pattern": "^/api/v1/escalations/"}
            )
    for status in LINKS_FROM.get(name, ()):
        responses[status]["links"] = {
            link: {"operationId": target, "parameters": {"escalation_id": "$response.body#/id"}}
            for link, target in ID_LINKS.items()
        }
    schemes = {scheme for requirement in operation.get("security", []) for scheme in requirement}
    if schemes & AGENT_SCHEMES:
        for status in responses:
            if status in BUDGET_ON or status[0] in BUDGET_ON:
                for header in BUDGET_HEADERS:
                    headers_for[status][header] = {"$ref": f"#/components/headers/{header}"}
    for status, headers in headers_for.items():
        if not headers:
            del responses[status]["headers"]


def _webhooks(schema: dict) -> dict:
    body_ref = _add_model(schema, WebhookEventOut)
    post: dict[str, Any] = {
        "summary": "A decision, pushed to the agent's resume_url",
        "description": (
            "Sent after every decision (human, policy or timeout), signed with the agent's "
            "signing secret. A 2xx answer marks the escalation resumed. Network errors, "
            "timeouts (10 s), 408, 429 and 5xx are retried with exponential backoff and jitter "
            "for at least 24 hours; other 4xx stop the retries. At least once: dedupe on "
            "delivery_id or the escalation's id."
        ),
        "parameters": [
            {"in": "header", "name": name, "required": True, "description": text, "schema": {"type": "string"}}
            for name, text in WEBHOOK_HEADERS.items()
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": body_ref}}}},
        "responses": {
            "2XX": {"description": "Received: the escalation becomes resumed."},
            "default": {"description": "Not received: retried as above (other 4xx: not retried)."},
        },
    }
    question = {
        **post,
        "summary": "A reviewer's question, pushed to the agent's resume_url",
        "description": (
            "Sent when a reviewer (a person or a machine reviewer) asks the agent a question: "
            "the escalation is awaiting_agent and carries it in `question`. Answer with POST "
            "/api/v1/escalations/{id}/answer. Signed, retried and recorded as a decision is; "
            "its 2xx changes no status."
        ),
        "responses": {
            "2XX": {"description": "Received (the status stays awaiting_agent)."},
            "default": post["responses"]["default"],
        },
    }
    return {"escalation.decided": {"post": post}, "escalation.question": {"post": question}}


def complete(document: dict) -> dict:
    """ninja's document with the errors, headers and webhooks the server really has."""
    document = deepcopy(document)
    problem_ref = _add_model(document, ProblemOut)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _complete_operation(operation, problem_ref)
    components = document.setdefault("components", {})
    components["headers"] = {
        name: _header(description, {"type": "integer", "minimum": 0})
        for name, description in BUDGET_HEADERS.items()
    }
    components.setdefault("responses", {})["MethodNotAllowed"] = {
        **_problem_response(problem_ref, "405: a method this path does not take."),
        "headers": {"Allow": _header("The methods the path takes.", {"type": "string"})},
    }
    document["webhooks"] = _webhooks(document)
    return document
