"""Serves the operator's endpoints (operations.views) before every other middleware."""

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils.decorators import sync_and_async_middleware

from . import views

ROUTES = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics}


def _answer(request: HttpRequest, view) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return view(request)


@sync_and_async_middleware
def operations_middleware(get_response):
    """First in MIDDLEWARE: /healthz, /readyz and /metrics answer here, without sessions,
    login, CSRF, ALLOWED_HOSTS or the HTTPS redirect; every other path goes on untouched
    (and, under ASGI, without a thread hop)."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            view = ROUTES.get(request.path_info)
            if view is None:
                return await get_response(request)
            return await sync_to_async(_answer)(request, view)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        view = ROUTES.get(request.path_info)
        if view is None:
            return get_response(request)
        return _answer(request, view)

    return middleware
