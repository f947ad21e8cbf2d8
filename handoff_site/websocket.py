"""The websocket Origin check: a socket opens only from the page's own origin.

Channels' AllowedHostsOriginValidator compares host names alone, so a page served from
another port of the same host (another app, or an attacker's server on a shared machine)
could open the dashboard's sockets with the reviewer's cookie. Here the Origin must equal
scheme://host:port of the request itself (its Host, which must be in ALLOWED_HOSTS, and
its scheme: wss behind TLS, as uvicorn reports with --proxy-headers), or be one of
CSRF_TRUSTED_ORIGINS, with the same wildcard rule as Django's CSRF check.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the default port filled in; None if malformed."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def _trusted(origin: tuple[str, str, int]) -> bool:
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, netloc = entry.lower().partition("://")
        if not netloc.startswith("*"):
            if _origin(entry) == origin:
                return True
            continue
        pattern = _origin(f"{scheme}://{netloc[1:].lstrip('.')}")  # "*.example.com" -> ".example.com"
        if (
            pattern
            and (pattern[0], pattern[2]) == (origin[0], origin[2])
            and is_same_domain(origin[1], "." + pattern[1])
        ):
            return True
    return False


def origin_allowed(scope) -> bool:
    headers = dict(scope.get("headers", ()))
    origin = _origin(headers.get(b"origin", b"").decode("latin-1"))
    if origin is None:
        return False  # browsers always send one; "null" and the malformed are refused
    if _trusted(origin):
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return _origin(f"{scheme}://{host}") == origin


class SameOriginValidator:
    """ASGI middleware: refuses (403 at the handshake) a websocket from another origin."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            # Closing before accepting refuses the handshake (HTTP 403); no consumer, so no
            # channel-layer round trip for a socket that is refused anyway.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return None
        return await self.app(scope, receive, send)
