"""Webhook signatures: `Handoff-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

from .errors import InvalidSignature

SIGNATURE_HEADER = "Handoff-Signature"
DEFAULT_TOLERANCE = 300


class Headers(Protocol):
    """Anything with `get` and `items`: a dict, Django's request.headers, http.server's
    self.headers, Starlette's request.headers..."""

    def get(self, name: str, /) -> Any: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return str(value)
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def compute_signature(secret: str | bytes, body: str | bytes, timestamp: int) -> str:
    """The hex v1 signature of `body` signed at `timestamp`."""
    message = f"{timestamp}.".encode() + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def sign_webhook(secret: str | bytes, body: str | bytes, timestamp: int | None = None) -> str:
    """A Handoff-Signature header value for `body` (for tests and local replays)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, body, t)}"


def verify_webhook(
    headers: Headers,
    body: str | bytes,
    secret: str | bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery's signature and return its parsed JSON body.

    `body` must be the raw bytes as received (re-serialized JSON will not match).
    Passes when any `v1=` entry matches (several appear while a secret is rotated),
    compared in constant time, and the `t=` timestamp is within `tolerance` seconds of
    now (older or future ones are replays). Raises InvalidSignature otherwise.
    Deliveries are at least once: dedupe on `delivery_id` (or the escalation's `id`).
    """
    header = _header(headers, SIGNATURE_HEADER)
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("malformed timestamp in signature header") from None
        elif key == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise InvalidSignature("signature header needs t= and at least one v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"timestamp outside the {tolerance:g} s tolerance (replay?)")
    expected = compute_signature(secret, body, timestamp)
    expected_bytes = expected.encode()
    if not any(hmac.compare_digest(expected_bytes, c.encode()) for c in candidates):
        raise InvalidSignature("no v1 signature matches")
    try:
        event = json.loads(_as_bytes(body))
    except ValueError:
        raise InvalidSignature("signed body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidSignature("signed body is not a JSON object")
    return event
