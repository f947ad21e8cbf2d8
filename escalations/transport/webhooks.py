"""Outbound webhooks to agents: the Stripe-style signature and the HTTP POST itself.

`sign`/`verify` are the scheme of API.md: `Handoff-Signature: t=<unix>,v1=<hex>` where the
MAC is HMAC-SHA256(secret, "<t>.<raw body>"); `verify` is what an agent runs. `post` sends
one delivery and never raises: every failure comes back as an Outcome to record.
"""

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from operations.egress import GuardedTransport

SIGNATURE_HEADER = "Handoff-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
EXCERPT_CHARS = 500
_MAX_READ_BYTES = 64 * 1024  # an agent's answer is read this far, never whole


def raw_mac(secret: str, payload: bytes) -> str:
    """Hex HMAC-SHA256 of `payload` under `secret` (GitHub's X-Hub-Signature-256 MAC)."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    return f"t={timestamp},v1={raw_mac(secret, f'{timestamp}.'.encode() + body)}"


def verify(
    secret: str,
    body: bytes | str,
    header: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What an agent does with the raw body and the header. Never raises.

    Any `v1` may match (secret rotation); a timestamp more than `tolerance` seconds away
    from now is a replay. A missing or malformed header is simply False.
    """
    if not isinstance(header, str) or len(header) > 4096:
        return False
    if isinstance(body, str):
        body = body.encode()
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t" and timestamp is None:
            if not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1" and value.isascii():
            signatures.append(value.encode())
    if timestamp is None or not signatures:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = raw_mac(secret, f"{timestamp}.".encode() + body).encode()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass
class Outcome:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int


# The requests' User-Agent; no other header but the delivery's own is sent.
USER_AGENT = "Handoff-Webhook/1"

# One transport per process (a forked worker child never reuses its parent's sockets): httpx's
# own, keeping connections alive and opening them only to the addresses operations.egress
# allows. A delivery goes to it directly, not through httpx.Client, whose layers do nothing
# here (redirects are never followed, a webhook sender keeps no cookies, no auth, no hooks)
# and cost a third of a POST's CPU.
_transport: GuardedTransport | None = None
_transport_pid = 0
_transport_lock = threading.Lock()


def _http() -> GuardedTransport:
    global _transport, _transport_pid
    with _transport_lock:
        if _transport is None or _transport_pid != os.getpid():
            _transport = GuardedTransport(limits=httpx.Limits(max_keepalive_connections=20, keepalive_expiry=30))
            _transport_pid = os.getpid()
        return _transport


def _drop_transport(transport: GuardedTransport) -> None:
    """After a transport error, start over with fresh connections.

    The old transport is not closed here: other threads may still be using it; its pooled
    connections go with it when it is garbage-collected.
    """
    global _transport
    with _transport_lock:
        if _transport is transport:
            _transport = None


def post(url: str, payload: dict[str, Any], *, delivery_id: str, secret: str | None) -> Outcome:
    """POST one signed delivery. Never raises: failures come back as an Outcome.

    With `secret=None` the body goes unsigned and without Handoff headers (a Slack-style
    incoming webhook, which needs neither).

    The timeout (WEBHOOK_TIMEOUT_SECONDS) bounds connecting, each read and the whole
    answer; only the first 64 KB of the answer are read, and 500 characters are kept.
    """
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if secret is not None:
        headers["Handoff-Event"] = str(payload.get("event", "escalation.decided"))
        headers["Handoff-Delivery"] = delivery_id
        headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
    limit = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    started = time.monotonic()
    transport = None
    try:
        transport = _http()
        request = httpx.Request(
            "POST", url, content=body, headers=headers, extensions={"timeout": httpx.Timeout(limit).as_dict()}
        )
        response = transport.handle_request(request)
        try:
            received = bytearray()
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= _MAX_READ_BYTES:
                    break
                if time.monotonic() - started > limit:
                    raise httpx.ReadTimeout("the answer took too long")
            excerpt = bytes(received[:_MAX_READ_BYTES]).decode(
                response.encoding or "utf-8", errors="replace"
            )
        finally:
            response.close()  # the connection goes back to the pool, or is closed if unread
        return Outcome(response.status_code, "", _storable(excerpt), _ms_since(started))
    except httpx.TimeoutException as exc:
        error = f"timed out after {limit:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except SoftTimeLimitExceeded:  # a server trickling its answer past the attempt's bound
        error = f"cut off after {time.monotonic() - started:.1f} s (the attempt's time limit)"
    except Exception as exc:  # an unusable URL: still a recorded attempt
        error = f"{type(exc).__name__}: {exc}"
    if transport is not None:
        _drop_transport(transport)
    return Outcome(None, _storable(error), "", _ms_since(started))


def _storable(text: str) -> str:
    """The first EXCERPT_CHARS of an answer or error as a text column can hold it: PostgreSQL
    refuses U+0000 (an agent's 2xx with one was never recorded), so it becomes U+FFFD."""
    return text[:EXCERPT_CHARS].replace("\x00", "\ufffd")


def _ms_since(started: float) -> int:
    return max(0, int((time.monotonic() - started) * 1000))
