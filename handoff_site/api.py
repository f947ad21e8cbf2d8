"""The one NinjaAPI: agent and reviewer routers, JSON parsing and problem+json errors."""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from escalations.api import budget_headers
from escalations.api import router as agent_router
from escalations.errors import DomainError
from escalations.jsontext import BadJson, read_json, unstorable
from escalations.problems import Problem, from_domain, from_pydantic, invalid
from reviews.api import router as review_router

from . import openapi, outage

log = logging.getLogger(__name__)


class JsonParser(Parser):
    """Strict JSON bodies: media type, size, syntax, nesting and storable text."""

    def parse_body(self, request: HttpRequest):
        content_type = request.content_type or ""
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise Problem(415, f"Send the body as application/json, not {content_type or 'nothing'}.")
        body = request.body
        if len(body) > settings.API_MAX_BODY_BYTES:
            raise Problem(413, "The body is over 1 MiB.")
        try:
            data = read_json(body)
        except BadJson as exc:
            raise Problem(400, f"The body {exc}.") from None
        bad = unstorable(data, "")
        if bad is not None:
            raise invalid([bad])
        request._handoff_json = data  # type: ignore[attr-defined]  # the fingerprint of idempotent creates uses it
        return data


class HandoffAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        document = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return openapi.complete(document)


api = HandoffAPI(
    title="Handoff agent API",
    version="1",
    description=(
        "Agents hand paused runs to people and get decisions back. "
        "The contract is API.md; every error is application/problem+json (RFC 9457)."
    ),
    urls_namespace="api",
    parser=JsonParser(),
    openapi_url="/openapi.json",
    docs_url="/docs",
)
api.add_router("/", agent_router)
api.add_router("/review/", review_router)


def _problem(request: HttpRequest, problem: Problem) -> HttpResponse:
    response = problem.response()
    for name, value in budget_headers(request).items():
        response[name] = value
    return response


@api.exception_handler(Problem)
def on_problem(request: HttpRequest, exc: Problem) -> HttpResponse:
    return _problem(request, exc)


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """A service's refusal, for both routers: the one place it becomes problem+json."""
    return _problem(request, from_domain(exc))


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    body_errors = [e for e in exc.errors if e.get("loc", ("",))[0] == "body"]
    other = [e for e in exc.errors if e not in body_errors]
    errors = from_pydantic(body_errors, strip=2) + from_pydantic(other, strip=1)
    if other and not body_errors:
        return _problem(request, Problem(400, "Bad query: " + "; ".join(
            f"{e.field} {e.message}" for e in errors), errors=errors))
    problem = invalid(errors)
    if request.method == "POST" and request.path.rstrip("/").endswith("/escalations"):
        problem.type, problem.title = "incomplete-package", "Escalation package is incomplete"
    return _problem(request, problem)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return Problem(
        401,
        "Send a valid token: Authorization: Bearer <token>. It may be unknown or revoked.",
        headers={"WWW-Authenticate": 'Bearer realm="handoff"'},
    ).response()


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, Problem):  # raised by the parser; ninja wraps it
        return _problem(request, exc.__cause__)
    return _problem(request, Problem(exc.status_code, str(exc.message)))


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if outage.is_database_down(exc):
        return outage.response(request, exc)  # 503 problem+json with Retry-After
    log.error("API error on %s %s", request.method, request.path, exc_info=exc)
    return _problem(request, Problem(500, "Something went wrong on our side; it has been logged."))
