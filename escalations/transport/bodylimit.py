"""The API's 1 MiB body limit, held before Django reads a body.

Django's ApiProblemMiddleware refuses a Content-Length over the limit, but only once the
server has handed Django the request: under ASGI Django first reads the whole body (to a
temporary file), and a chunked body (no Content-Length) over DATA_UPLOAD_MAX_MEMORY_SIZE
then failed as a 500; under WSGI Django reads a chunked body as empty. These wrappers sit in
front of Django's application, under /api/ only:
- a body over the limit is answered 413 problem+json, and nothing of it reaches Django;
- a chunked body within the limit reaches Django whole (with its Content-Length).
Before answering 413 the wrappers read and drop up to DRAIN_BYTES more of the body (for at
most DRAIN_SECONDS under ASGI): a server that answers and closes while the client is still
sending resets the connection, and the client never reads its 413. Past that, the
connection is closed on the client.
"""

import asyncio
import io
from collections.abc import Iterable
from typing import IO

from django.conf import settings
from django.http import HttpResponse

from escalations.problems import Problem

from .middleware import API_PREFIX
from .protocols import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApplication,
    WSGIEnvironment,
)

DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0
READ_SIZE = 64 * 1024


def _too_large() -> HttpResponse:
    response = Problem(413, "The body is over 1 MiB.").response()
    response["Content-Length"] = str(len(response.content))
    return response


def _declared_length(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None  # Django's middleware answers a malformed Content-Length (400)


class BodyLimitMiddleware:
    """ASGI: in front of Django's HTTP application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        limit = settings.API_MAX_BODY_BYTES
        headers = dict(scope.get("headers", ()))
        length = _declared_length(headers.get(b"content-length", b"").decode("latin-1"))
        if length is not None:
            if length <= limit:
                await self.app(scope, receive, send)
                return
            if length <= limit + DRAIN_BYTES:
                await _drain(receive, length)
            await _refuse(send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body (a GET, mostly)
            return
        # Chunked: read up to the limit, then hand the body on.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                messages.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_BYTES)
                await _refuse(send)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop what the client still sends: up to `budget` bytes, or DRAIN_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    while budget > 0:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _refuse(send: Send) -> None:
    response = _too_large()
    response["Connection"] = "close"  # what is left of the body is never read
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in response.items()],
        }
    )
    await send({"type": "http.response.body", "body": response.content})


class SyncBodyLimitMiddleware:
    """WSGI: in front of Django's application (gunicorn)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(API_PREFIX):
            return self.app(environ, start_response)
        limit = settings.API_MAX_BODY_BYTES
        length = _declared_length(environ.get("CONTENT_LENGTH"))
        stream = environ["wsgi.input"]
        if length is not None:
            if length <= limit:
                return self.app(environ, start_response)
            if length <= limit + DRAIN_BYTES:
                _read(stream, length)
            return _refuse_sync(start_response)
        if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.app(environ, start_response)
        body = _read(stream, limit + 1)
        if len(body) > limit:
            _read(stream, DRAIN_BYTES, keep=False)
            return _refuse_sync(start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read(stream: IO[bytes], most: int, *, keep: bool = True) -> bytes:
    """Up to `most` bytes of `stream` (all of them, or none when not `keep`)."""
    kept, count = bytearray(), 0
    while count < most:
        chunk = stream.read(min(READ_SIZE, most - count))
        if not chunk:
            break
        count += len(chunk)
        if keep:
            kept += chunk
    return bytes(kept)


def _refuse_sync(start_response: StartResponse) -> list[bytes]:
    response = _too_large()
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [response.content]
