"""Errors as RFC 9457 problem details, and pydantic errors as named fields."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

from escalations.errors import Conflict, DomainError, FieldError, Forbidden, Invalid, NotFound

PROBLEM_BASE = "https://handoff.dev/problems/"
# What a value failing a pattern is told (the patterns are escalations.schemas').
PATTERN_MESSAGES: dict[str, str] = {}
CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: ("bad-request", "The request could not be read"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Body must be JSON"),
    422: ("invalid-request", "The request has invalid fields"),
    429: ("rate-limited", "Too many requests"),
    500: ("server-error", "Server error"),
    503: ("unavailable", "Service unavailable"),
}


@dataclass
class Problem(Exception):
    """Raise anywhere in the API to answer with a problem+json body."""

    status: int
    detail: str
    type: str = ""
    title: str = ""
    errors: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        slug, title = TITLES.get(self.status, ("error", "Error"))
        data: dict[str, Any] = {
            "type": PROBLEM_BASE + (self.type or slug),
            "title": self.title or title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            data["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        data.update(self.extra)
        return data

    def response(self) -> HttpResponse:
        response = HttpResponse(
            json.dumps(self.body(), ensure_ascii=False, default=str),
            status=self.status,
            content_type=CONTENT_TYPE,
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


# The database is unreachable (stopped, restarting, no pooled connection within
# DB_POOL_TIMEOUT): Django raises these for every such case. Answered 503 with Retry-After,
# never 500 (handoff_site.outage has the whole rule).
DATABASE_DOWN = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DETAIL = "The database is unavailable for a moment. Try again shortly."


def database_unavailable() -> Problem:
    return Problem(503, UNAVAILABLE_DETAIL, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def invalid(errors: list[FieldError], *, type: str = "", title: str = "") -> Problem:
    return from_domain(Invalid(errors, type=type, title=title))


# What each kind of domain error answers; the first class that matches wins.
STATUS_OF: tuple[tuple[type[DomainError], int], ...] = (
    (Invalid, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
)


def from_domain(error: DomainError) -> Problem:
    """A service's refusal (escalations.errors) as the API answers it: the status its class
    says, its detail, type, title, field errors and extra members."""
    status = next((code for kind, code in STATUS_OF if isinstance(error, kind)), 400)
    return Problem(
        status,
        error.detail,
        type=error.type,
        title=error.title,
        errors=list(error.errors) if isinstance(error, Invalid) else [],
        extra=dict(error.extra),
    )


def field_path(loc: Sequence[object]) -> str:
    return ".".join(str(part) for part in loc) or "body"


_PLAIN = {
    "missing": "is required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
    "timezone_aware": "must include a time zone (e.g. 2026-11-21T12:00:00Z)",
    "datetime_type": "must be an ISO 8601 time with a zone",
    "datetime_parsing": "must be an ISO 8601 time with a zone",
    "datetime_from_date_parsing": "must be an ISO 8601 time with a zone",
    "datetime_object_invalid": "must be an ISO 8601 time with a zone",
    "uuid_parsing": "must be a UUID",
    "uuid_type": "must be a UUID",
}


def message_for(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} items"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return PATTERN_MESSAGES.get(pattern) or f"must match {pattern}"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def from_pydantic(errors: Sequence[Mapping[str, Any]], strip: int = 0) -> list[FieldError]:
    """Pydantic/ninja errors as FieldErrors; `strip` drops leading loc parts (e.g. 'body')."""
    result = []
    seen = set()
    for error in errors:
        loc = tuple(error.get("loc", ()))[strip:]
        # Unions report each branch; `X | None` adds a useless "none required" twin.
        if error.get("type") == "none_required" or (loc and loc[-1] in ("function-after[_to_utc(), datetime]",)):
            continue
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        item = FieldError(field_path(loc), message_for(error))
        if (item.field, item.message) not in seen:
            seen.add((item.field, item.message))
            result.append(item)
    return result
