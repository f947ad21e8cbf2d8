"""The server interfaces the transport wrappers sit in: ASGI and WSGI callables.

An ASGI scope and its messages are dicts whose keys depend on their "type" (the ASGI spec):
they are typed as dicts and mappings of Any here, at that boundary, and read by key (as
django-stubs types Django's ASGIHandler, which these wrap).
"""

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

Scope = dict[str, Any]
Message = MutableMapping[str, Any]  # what receive gives (Starlette's type; Django reads a Mapping)
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
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
