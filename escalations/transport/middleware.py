"""Every answer under /api/ is JSON; every error there is application/problem+json."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from escalations.problems import CONTENT_TYPE, Problem

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


class ApiProblemMiddleware:
    """Refuses NUL characters in query strings anywhere (400). Under /api/: refuses bodies
    over 1 MiB before reading them, and turns Django's own error pages (404 for unknown
    paths, 405, crashes) into problem+json."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            # PostgreSQL cannot take a NUL in a text parameter: refuse it here, not with a 500.
            if request.path.startswith(API_PREFIX):
                return Problem(400, "Query parameters must not contain NUL characters.").response()
            return HttpResponseBadRequest("Query parameters must not contain NUL characters.")
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return Problem(400, "Content-Length is not a number.").response()
        if length > settings.API_MAX_BODY_BYTES:
            return Problem(413, "The body is over 1 MiB.").response()
        response = self.get_response(request)
        if response.status_code >= 400 and response.get("Content-Type", "") != CONTENT_TYPE:
            problem = Problem(response.status_code, _detail(request, response))
            if response.status_code == 405 and response.has_header("Allow"):
                problem.headers["Allow"] = response["Allow"]
            return problem.response()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return Problem(500, "Something went wrong on our side; it has been logged.").response()


def _has_nul(request: HttpRequest) -> bool:
    return "\x00" in request.path or any(
        "\x00" in key or any("\x00" in value for value in values)
        for key, values in request.GET.lists()
    )


def _detail(request: HttpRequest, response: HttpResponse) -> str:
    if response.status_code == 404:
        return f"No API endpoint at {request.path}. See /api/v1/docs."
    if response.status_code == 405:
        return f"{request.method} is not allowed here; allowed: {response.get('Allow', 'none')}."
    return f"{request.method} {request.path} failed with {response.status_code}."
