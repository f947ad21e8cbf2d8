"""The operator's endpoints: /healthz (liveness), /readyz (readiness), /metrics.

They are served by OperationsMiddleware, ahead of the rest of the stack: no session, no
login, no ALLOWED_HOSTS check (probes and Prometheus reach a container by its internal
name), no HTTPS redirect. Nothing they answer builds a URL from the Host header.
"""

import hmac
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client.exposition import choose_encoder

from . import exposition, health

NO_STORE = {"Cache-Control": "no-store"}


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Checks nothing else, so a database or Redis outage
    never gets a healthy process restarted."""
    return JsonResponse({"status": "ok"}, headers=NO_STORE)


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when the database and Redis answer, else 503 naming what failed."""
    results = health.readiness()
    failed = [check.name for check in results if not check.ok]
    body: dict[str, Any] = {
        "status": "unavailable" if failed else "ok",
        "checks": {check.name: check.as_dict() for check in results},
    }
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200, headers=NO_STORE)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format (or OpenMetrics when the scraper asks for it)."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(exposition.registry()), content_type=content_type, headers=NO_STORE)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may scrape: the bearer token METRICS_TOKEN, or a connection
    from METRICS_ALLOWED_IPS. Else 401 (a token is configured) or 403."""
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    if _address_allowed(request.META.get("REMOTE_ADDR", "")):
        return None
    if token:
        return HttpResponse(
            "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(
        "Metrics are not open to this address (METRICS_ALLOWED_IPS, METRICS_TOKEN).\n",
        status=403,
        content_type="text/plain",
    )


def _address_allowed(address: str) -> bool:
    try:
        found = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(found in network for network in settings.METRICS_ALLOWED_NETWORKS)
