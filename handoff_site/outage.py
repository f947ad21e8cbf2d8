"""The database is unreachable: answer 503 at once, and recover on our own.

A request that cannot reach PostgreSQL (stopped, restarting, or no pooled connection came
within DB_POOL_TIMEOUT) is answered `503 Service Unavailable` with `Retry-After`:
problem+json under /api/, the product's own page elsewhere; never a 500, never a hang.
The pool checks a connection before lending it and replaces the broken ones, so once the
database is back the next requests succeed, without restarting the app (settings, "database").

One rule (escalations.problems.DATABASE_DOWN), applied wherever such an error surfaces: a
page's view, middleware or session (handler500: `server_error`; with DEBUG on, Django's
debug page instead), the agent API (its exception handler) and the long-poll front
(escalations.transport.longpoll).

A statement cut off by PostgreSQL's statement_timeout (page views are bounded:
handoff_site.middleware.StatementTimeoutMiddleware) is one of those errors, and answered the
same way with its own words: the page took too long, and it is logged as such, with the bound.
"""

import logging
import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views import defaults
from psycopg.errors import QueryCanceled

from escalations.problems import (
    DATABASE_DOWN,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_DETAIL,
    Problem,
    database_unavailable,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
_FALLBACK_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Unavailable · Handoff</title>"
    "<h1>Handoff is unavailable for a moment</h1><p>" + UNAVAILABLE_DETAIL + "</p></html>"
)


UNAVAILABLE_HEADING = "Handoff is unavailable for a moment"
TIMED_OUT_HEADING = "This page took too long"


def is_database_down(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_DOWN)


def is_statement_timeout(exc: BaseException | None) -> bool:
    """PostgreSQL cancelled a statement (statement_timeout; an operator's pg_cancel_backend
    says the same): Django's OperationalError raised from psycopg's QueryCanceled."""
    return exc is not None and is_database_down(exc) and isinstance(exc.__cause__, QueryCanceled)


def timed_out_detail() -> str:
    bound = settings.DB_STATEMENT_TIMEOUT
    seconds = "second" if bound == 1 else "seconds"
    return (
        f"Loading this page took longer than {bound:g} {seconds}, so it was stopped. "
        "Try again in a moment; if it happens again, narrow the search or the filters."
    )


def page(heading: str = UNAVAILABLE_HEADING, detail: str = UNAVAILABLE_DETAIL) -> HttpResponse:
    """The product's 503 page. Rendered without the request: its context processors and
    the signed-in user all need the database."""
    try:
        body: str = render_to_string("503.html", {"heading": heading, "detail": detail})
    except Exception:  # a template that grew a database lookup must not turn this into a 500
        log.exception("the 503 page could not be rendered; sending the plain one")
        body = _FALLBACK_PAGE
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for `request`, logged once (a warning: the database, not our code)."""
    if is_statement_timeout(exc):
        return timed_out(request, exc)
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method, request.path, type(exc).__name__, str(exc).strip()[:200],
    )
    if request.path.startswith(API_PREFIX):
        return _logged(database_unavailable().response())
    return _logged(page())


def _logged(response: HttpResponse) -> HttpResponse:
    """Mark a 503 we have logged ourselves: Django's request logger would log it again, as an
    ERROR with the exception's traceback (django.utils.log.log_response)."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def timed_out(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """A statement of `request` ran past the bound: 503, logged (a warning with the path and
    the bound, to find the slow query by)."""
    log.warning(
        "statement timeout (DB_STATEMENT_TIMEOUT %gs) on %s %s: %s",
        settings.DB_STATEMENT_TIMEOUT, request.method, request.get_full_path()[:300],
        str(exc).strip()[:200],
    )
    if request.path.startswith(API_PREFIX):
        detail = "The request's database work took too long and was stopped. Try again shortly."
        return _logged(Problem(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}).response())
    return _logged(page(TIMED_OUT_HEADING, timed_out_detail()))


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an error no view caught (a middleware, the session, a template). A
    database outage is a 503 here too; anything else is Django's plain 500 (which the API
    middleware turns into problem+json under /api/)."""
    exc = sys.exc_info()[1]  # handler500 runs inside the except block (asgiref keeps it)
    if exc is not None and is_database_down(exc):
        return response(request, exc)
    return defaults.server_error(request)

