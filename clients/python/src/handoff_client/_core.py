"""The client's logic without I/O, shared by the sync and the async client.

Each operation is a generator "plan" that yields effects (`Send` a request, `Sleep`,
`Emit` an item to the caller) and receives the effect's result: an `httpx.Response`
or the `httpx.TransportError` raised while sending. `Handoff` drives plans with
`httpx.Client` and `time.sleep`, `AsyncHandoff` with `httpx.AsyncClient` and
`asyncio.sleep`, so retries, long-polls and the feed exist once.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from .errors import (
    STATUS_ERRORS,
    FieldError,
    HandoffError,
    ServerError,
    TransportError,
    WaitTimeout,
)
from .models import Escalation

API = "/api/v1"
LONG_POLL_MAX = 60  # seconds; the API's cap for ?wait=N


@dataclass(frozen=True)
class Send:
    """Send one HTTP request. `retry="all"`: retrying is safe whatever happened;
    `"connect"`: only if the request provably never reached the server."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    retry: Literal["all", "connect"] = "all"


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    """Hand one escalation to the caller (the decisions feed); the plan receives None."""

    escalation: Escalation
    cursor: str | None


Effect = Send | Sleep | Emit
Result = httpx.Response | httpx.TransportError | None
Plan = Generator[Effect, Result, Any]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n sleeps U(0, min(cap, base * 2**n)).

    A `Retry-After` from the server is a floor: the client never comes back sooner.
    `max_retry_after` bounds what one call is willing to sleep before giving up.
    """

    base: float = 0.5
    cap: float = 30.0
    max_retries: int = 5
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        jittered = random.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after is None:
            return jittered
        return retry_after + random.uniform(0, min(1.0, self.base))


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("times must be timezone-aware (API.md: ISO 8601 with a zone)")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> Any:
    """Plain JSON data from `value`: datetimes become ISO strings (they need a zone)."""
    return json.loads(json.dumps(value, default=_encode))


def error_from_response(response: httpx.Response) -> HandoffError:
    """The typed exception for an error answer, carrying its problem+json fields."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("message", "")))
        for e in body.get("errors") or []
        if isinstance(e, dict)
    ]
    status = response.status_code
    cls = STATUS_ERRORS.get(status) or (ServerError if status >= 500 else HandoffError)
    return cls(
        str(body.get("detail") or response.reason_phrase or ""),
        status=status,
        type=str(body.get("type", "")),
        title=str(body.get("title", "")),
        errors=errors,
        body=body,
        headers=dict(response.headers),
    )


def _answer(result: Result) -> httpx.Response | httpx.TransportError:
    """What a driver sends back for a `Send`: never None."""
    if result is None:
        raise RuntimeError("a plan's Send got no result from its driver")
    return result


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _retryable_error(send: Send, error: httpx.TransportError) -> bool:
    if send.retry == "all":
        return True
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def request(send: Send, backoff: Backoff) -> Plan:
    """Send with retries; return the final `httpx.Response`, raise TransportError if the
    network kept failing. Retries network errors (see `Send.retry`), 429 and 5xx, with
    the very same request (so the same Idempotency-Key), backoff and jitter, and at least
    the server's Retry-After."""
    attempt = 0
    while True:
        result = _answer((yield send))
        if isinstance(result, httpx.TransportError):
            if attempt >= backoff.max_retries or not _retryable_error(send, result):
                raise TransportError(f"{send.method} {send.path}: {result!r}") from result
            delay = backoff.delay(attempt)
        else:
            if attempt >= backoff.max_retries or not _retryable_status(result.status_code):
                return result
            retry_after = parse_retry_after(result.headers.get("retry-after"))
            if retry_after is not None and retry_after > backoff.max_retry_after:
                return result
            delay = backoff.delay(attempt, retry_after)
        attempt += 1
        yield Sleep(delay)


def call(send: Send, backoff: Backoff) -> Plan:
    """`request`, then the JSON body of a 2xx, or the typed exception of an error."""
    response = yield from request(send, backoff)
    if response.status_code >= 400:
        raise error_from_response(response)
    return response.json()


def wait(
    escalation_id: str,
    current: Escalation | None,
    timeout: float | None,
    backoff: Backoff,
    read_margin: float,
    stop_on_question: bool = True,
) -> Plan:
    """Long-poll until the escalation is decided or withdrawn, or (`stop_on_question`)
    awaits the agent's answer to a reviewer's question; return it.

    Each request waits at most 60 s (`?wait=N`) and sends the last ETag as
    If-None-Match (a 304 means "still the same"). Network errors, 429 and 5xx are
    retried forever within the deadline with backoff, jitter and Retry-After. Raises
    WaitTimeout when `timeout` seconds pass first, NotFound/Unauthorized at once.
    """

    def done(escalation: Escalation) -> bool:
        return escalation.needs_agent if stop_on_question else not escalation.is_open

    if current is not None and done(current):
        return current
    deadline = None if timeout is None else time.monotonic() + timeout
    path = f"{API}/escalations/{escalation_id}"
    etag: str | None = None
    failures = 0
    result: Result = None
    while True:
        remaining = math.inf if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            if current is not None:
                raise WaitTimeout(current, timeout or 0)
            if isinstance(result, httpx.Response):
                raise error_from_response(result)
            if isinstance(result, httpx.TransportError):
                raise TransportError(f"GET {path}: {result!r}") from result
        if timeout == 0:
            seconds = 0
        else:
            seconds = LONG_POLL_MAX if remaining > LONG_POLL_MAX else max(1, math.ceil(remaining))
        headers = {"If-None-Match": etag} if etag else {}
        started = time.monotonic()
        result = _answer(
            (
                yield Send(
                    "GET",
                    path,
                    params={"wait": seconds},
                    headers=headers,
                    timeout=seconds + read_margin,
                )
            )
        )
        if isinstance(result, httpx.TransportError) or _retryable_status(result.status_code):
            retry_after = None
            if isinstance(result, httpx.Response):
                retry_after = parse_retry_after(result.headers.get("retry-after"))
            delay = backoff.delay(min(failures, 10), retry_after)
            failures += 1
            yield Sleep(max(0.0, min(delay, remaining)))
            continue
        failures = 0
        if result.status_code == 304:
            pass
        elif result.status_code >= 400:
            raise error_from_response(result)
        else:
            current = Escalation.from_dict(result.json())
            etag = result.headers.get("etag")
            if done(current):
                return current
        if timeout == 0:
            continue  # loops once more only to raise WaitTimeout with the state
        yield from _pace(started, seconds, remaining)


def _pace(started: float, seconds: int, remaining: float) -> Plan:
    """Guard against a server that answers long-polls at once (no long-poll support):
    never ask again sooner than about a second after the last ask."""
    elapsed = time.monotonic() - started
    if seconds >= 1 and elapsed < 1.0:
        yield Sleep(min(remaining, 1.0 + random.uniform(0, 1.0)))


def feed(after: str | None, wait: int, limit: int, backoff: Backoff, read_margin: float) -> Plan:
    """The decisions feed, oldest first, following `next_cursor`.

    With `wait=0` it ends once caught up; with `wait>0` it long-polls for new decisions
    forever and reconnects after network errors, 429 and 5xx.
    """
    if not 0 <= wait <= LONG_POLL_MAX:
        raise ValueError(f"wait must be 0-{LONG_POLL_MAX} seconds")
    cursor = after
    failures = 0
    while True:
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if cursor:
            params["after"] = cursor
        send = Send("GET", f"{API}/decisions", params=params, timeout=wait + read_margin)
        started = time.monotonic()
        if wait == 0:
            page = yield from call(send, backoff)
        else:
            result = _answer((yield send))
            if isinstance(result, httpx.TransportError) or _retryable_status(result.status_code):
                retry_after = None
                if isinstance(result, httpx.Response):
                    retry_after = parse_retry_after(result.headers.get("retry-after"))
                failures += 1
                yield Sleep(backoff.delay(min(failures, 10), retry_after))
                continue
            if result.status_code >= 400:
                raise error_from_response(result)
            page = result.json()
            failures = 0
        items = page.get("items") or []
        next_cursor = page.get("next_cursor") or cursor
        for index, item in enumerate(items):
            last = index == len(items) - 1
            yield Emit(Escalation.from_dict(item), next_cursor if last else cursor)
        cursor = next_cursor
        if not items:
            if wait == 0:
                return None
            yield from _pace(started, wait, math.inf)


def answer_body(
    text: str,
    history: Sequence[Mapping[str, Any]] | None,
    links: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The body of POST /escalations/{id}/answer (times in the steps may be datetimes)."""
    body: dict[str, Any] = {"text": text}
    if history:
        body["history"] = [dict(step) for step in history]
    if links:
        body["links"] = [dict(link) for link in links]
    return to_json(body)


def merge_package(package: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """One package from a dict and keyword fields (keywords win), as JSON-ready data."""
    merged = {**(package or {}), **fields}
    data: dict[str, Any] = to_json({k: v for k, v in merged.items() if v is not None})
    return data
