"""Site-wide middleware."""

from csp.middleware import CSPMiddleware
from django.contrib.auth import middleware as auth
from django.contrib.auth.middleware import LoginRequiredMiddleware as BaseLoginRequired
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest

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
