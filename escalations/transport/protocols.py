"""The server interfaces the transport wrappers sit in: ASGI and WSGI callables.

An ASGI scope and its messages are dicts whose keys depend on their "type" (the ASGI spec):
they are typed as mappings of Any here, at that boundary, and read by key.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "WSGIApplication",
    "WSGIEnvironment",
]
