"""Site-wide middleware."""

import logging

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.auth.middleware import LoginRequiredMiddleware as BaseLoginRequired
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.exceptions import MiddlewareNotUsed
from django.db import connection
from django.http import HttpRequest

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


class PagesOnly:
    """For a middleware only the pages use: an API call (a bearer token, no cookie) goes
    straight on. The session, the signed-in user and the messages are neither read nor
    written for it (skipping them took ~10% of the instructions of the agent API's hot read)."""

    def __call__(self, request: HttpRequest):
        if request.path.startswith(API_PREFIX):
            return self.get_response(request)  # type: ignore[attr-defined]
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(PagesOnly, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(PagesOnly, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(PagesOnly, messages.MessageMiddleware):
    pass


class LoginRequiredMiddleware(BaseLoginRequired):
    """Every page needs a login, except the agent API (token auth) and static files
    (/healthz, /readyz and /metrics answer before this: operations.middleware).

    ninja views cannot carry @login_not_required (vitalik/django-ninja#1461), so the API
    is exempted by path here.
    """

    OPEN_PREFIXES = ("/api/", "/static/")

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(self.OPEN_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's header on documents; JSON answers (the agent API's hot path) skip the
    policy's assembly: a browser runs nothing from them."""

    JSON_TYPES = ("application/json", "application/problem+json")

    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith(self.JSON_TYPES):
            return response
        return super().process_response(request, response)


class StatementTimeoutMiddleware:
    """Page views run their statements under PostgreSQL's statement_timeout of
    DB_STATEMENT_TIMEOUT seconds: one slow query can no longer hold a pooled connection (and
    a gunicorn thread) for minutes. A statement past it is cancelled by the server, and the
    page answers 503 with its own words (handoff_site.outage.timed_out), logged.

    Per request, on the request's connection: SET at the start, RESET (to the server's default
    for the role and database, normally none) at the end, so the pooled connection goes back
    as it came. Two short round trips a page, sent on psycopg's connection as Django sends its
    own connection set-up: not the page's queries (nor counted as such in the query log). Nothing else is bounded: the agent API
    (/api/, long-polls included: they hold no connection while they wait), websockets, Celery
    tasks, migrations (CREATE INDEX CONCURRENTLY runs for minutes on a big table), management
    commands and the bench's seeding never pass here. Off with 0, and on SQLite."""

    SKIP_PREFIXES = (API_PREFIX, "/static/")

    def __init__(self, get_response):
        milliseconds = round(settings.DB_STATEMENT_TIMEOUT * 1000)
        if milliseconds <= 0 or connection.vendor != "postgresql":
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.bound = f"SET statement_timeout = {milliseconds}"

    def __call__(self, request: HttpRequest):
        if request.path.startswith(self.SKIP_PREFIXES):
            return self.get_response(request)
        connection.ensure_connection()
        with connection.wrap_database_errors:
            connection.connection.execute(self.bound)
        try:
            return self.get_response(request)
        finally:
            _reset_statement_timeout()


def _reset_statement_timeout() -> None:
    raw = connection.connection
    if raw is None or raw.closed:  # closed during the request: nothing goes back bounded
        return
    try:
        raw.execute("RESET statement_timeout")
    except Exception:
        # A connection that cannot take a RESET is not lent again with the bound: closed here,
        # the pool replaces it.
        log.warning("statement_timeout not reset; closing the connection", exc_info=True)
        raw.close()
