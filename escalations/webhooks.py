"""Outbound webhooks to agents: the Stripe-style signature and the HTTP POST itself."""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

SIGNATURE_HEADER = "Handoff-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What an agent does: any v1 may match (secret rotation); old timestamps are replays."""
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in parts if key.strip() == "t"))
        signatures = [value for key, value in parts if key.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass
class Outcome:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int


_client: httpx.Client | None = None


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={"User-Agent": "Handoff-Webhook/1"},
        )
    return _client


def post(url: str, payload: dict, *, delivery_id: str, secret: str) -> Outcome:
    """POST one signed delivery. Never raises: failures come back as an Outcome."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Handoff-Event": payload.get("event", "escalation.decided"),
        "Handoff-Delivery": delivery_id,
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    started = time.monotonic()
    try:
        response = _http().post(url, content=body, headers=headers)
        return Outcome(
            response.status_code, "", response.text[:500], int((time.monotonic() - started) * 1000)
        )
    except httpx.TimeoutException as exc:
        error = f"timed out after {settings.WEBHOOK_TIMEOUT_SECONDS:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" or type(exc).__name__
    except Exception as exc:  # an unusable URL must still end as a recorded attempt
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(None, error[:500], "", int((time.monotonic() - started) * 1000))
