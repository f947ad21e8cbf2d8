"""Site-wide middleware."""

from csp.middleware import CSPMiddleware
from django.contrib.auth.middleware import LoginRequiredMiddleware as BaseLoginRequired


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
