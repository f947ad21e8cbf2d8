"""Long-polls held in front of Django, with no database connection while they wait.

`GET /api/v1/escalations/{id}?wait=N` and `GET /api/v1/decisions?wait=N` are caught here:
a short read decides whether there is anything to wait for; if so the request waits on a
wake-up (escalations.transport.wakeup) for at most N seconds, then goes on to the ordinary Django
view, which answers with the state as it is then. Anything unusual (bad token, bad
parameters, not found) goes straight to Django, which answers it properly.

Under ASGI (uvicorn) waiting costs a coroutine; the WSGI wrapper exists so that a long-poll
that reaches gunicorn still honours the contract, holding a worker while it waits.
"""

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.http import HttpResponse

from escalations import selectors
from escalations.api import agent_read_answer
from escalations.models import AgentToken, Decision, Escalation, hash_token
from escalations.problems import DATABASE_DOWN, database_unavailable

from . import wakeup
from .protocols import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApplication,
    WSGIEnvironment,
)

log = logging.getLogger(__name__)

ESCALATION_PATH = re.compile(r"^/api/v1/escalations/([0-9a-fA-F-]{36})/?$")
DECISIONS_PATH = re.compile(r"^/api/v1/decisions/?$")


@dataclass(frozen=True)
class Wait:
    """A long-poll worth holding: what it waits for and for how long."""

    token: str
    seconds: int
    escalation_id: uuid.UUID | None = None  # None: the decisions feed
    after: int = 0


def plan(method: str, path: str, query_string: str, authorization: str | None) -> Wait | None:
    if method != "GET" or not authorization:
        return None
    escalation_match = ESCALATION_PATH.match(path)
    if not escalation_match and not DECISIONS_PATH.match(path):
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    query = parse_qs(query_string)
    waits = query.get("wait", [])
    if len(waits) != 1 or not waits[0].isdigit():
        return None
    seconds = int(waits[0])
    if not 0 < seconds <= settings.LONG_POLL_MAX_SECONDS:
        return None
    if escalation_match:
        try:
            return Wait(token, seconds, escalation_id=uuid.UUID(escalation_match.group(1)))
        except ValueError:
            return None
    afters = query.get("after", ["0"])
    if len(afters) != 1 or not (afters[0] or "0").isdigit() or len(afters[0]) > 18:
        return None
    return Wait(token, seconds, after=int(afters[0] or "0"))


def _agent_id(token: str) -> int | None:
    return AgentToken.objects.live(token).order_by().values_list("agent_id", flat=True).first()


@dataclass(frozen=True)
class Target:
    """What a waiting request listens for, resolved once (the token checked once)."""

    key: str
    agent_id: int
    escalation_id: uuid.UUID | None
    after: int


def _target(wait: Wait) -> Target | None:
    """One read: is there anything to wait for? None when Django should answer at once
    (a bad token, an unknown escalation, one already closed, news in the feed)."""
    if wait.escalation_id is not None:
        row = (
            Escalation.objects.filter(
                pk=wait.escalation_id,
                agent_id__in=AgentToken.objects.live(wait.token).values("agent_id"),
            )
            .order_by()
            .values_list("status", "agent_id")
            .first()
        )
        if row is None or row[0] not in Escalation.QUEUE_STATUSES:
            return None
        return Target(wakeup.escalation_key(wait.escalation_id), row[1], wait.escalation_id, 0)
    agent_id = _agent_id(wait.token)
    if agent_id is None:
        return None
    target = Target(wakeup.agent_key(agent_id), agent_id, None, wait.after)
    return target if _still_waiting(target) else None


def _still_waiting(target: Target) -> bool:
    """Re-read the database: is there still nothing to answer?"""
    if target.escalation_id is not None:
        status = (
            Escalation.objects.filter(pk=target.escalation_id)
            .order_by()
            .values_list("status", flat=True)
            .first()
        )
        return status in Escalation.QUEUE_STATUSES
    return not Decision.objects.filter(agent_id=target.agent_id, seq__gt=target.after).exists()


# Waiters' reads run side by side in a thread pool, not queued on Django's one
# thread-sensitive thread, where a thousand re-checks would delay each other's wake-ups.
_target_async = database_sync_to_async(_target, thread_sensitive=False)
_agent_read_async = database_sync_to_async(selectors.escalation_read_for_token, thread_sensitive=False)

# What Django's security middleware adds to every answer (the long-poll answers without it).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_still_waiting_async = database_sync_to_async(_still_waiting, thread_sensitive=False)


async def wait_for_escalation(token: str, escalation_id: uuid.UUID, seconds: int) -> bool:
    """Wait, holding no database connection, until the agent's escalation leaves the open
    states or `seconds` pass. False at once when there is nothing to wait for (not open,
    not this token's, or the token is not live). The caller reads the answer after: the
    long-poll here, the MCP tool (escalations.mcp_api) too."""
    target = await _target_async(Wait(token, seconds, escalation_id=escalation_id))
    if target is None:
        return False
    await wakeup.wait_for([target.key], seconds, lambda: _still_waiting_async(target))
    return True


class LongPollMiddleware:
    """ASGI middleware in front of Django's HTTP application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", ()))
            authorization = headers.get(b"authorization", b"").decode("latin-1") or None
            wait = plan(
                scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), authorization
            )
            if wait is not None:
                try:
                    if await self._wait(wait, headers, send):
                        return
                except DATABASE_DOWN as exc:
                    # Answered here, at once: Django would only wait on the pool again.
                    log.warning("long-poll on %s: the database is unavailable (%s)", scope["path"], exc)
                    await _send(send, database_unavailable().response())
                    return
        await self.app(scope, receive, send)

    async def _wait(self, wait: Wait, headers: dict[bytes, bytes], send: Send) -> bool:
        """Wait when there is something to wait for; True when the answer has been sent."""
        if wait.escalation_id is not None:
            return await wait_for_escalation(wait.token, wait.escalation_id, wait.seconds) and (
                await self._answer(
                    wait.escalation_id, wait.token, headers.get(b"if-none-match", b"").decode("latin-1"), send
                )
            )
        target = await _target_async(wait)
        if target is not None:
            await wakeup.wait_for([target.key], wait.seconds, lambda: _still_waiting_async(target))
        return False

    async def _answer(self, escalation_id: uuid.UUID, token: str, if_none_match: str, send: Send) -> bool:
        """Answer a finished escalation wait here, as the view would, without Django's
        request cycle: a thousand woken agents must not queue behind its thread hops.
        False when the view should answer instead (the token was revoked meanwhile)."""
        found = await _agent_read_async(escalation_id, hash_token(token))
        if found is None:
            return False
        status, headers, body = agent_read_answer(found, if_none_match)
        await _send_raw(send, status, headers, body)
        return True


async def _send(send: Send, response: HttpResponse) -> None:
    await _send_raw(send, response.status_code, dict(response.items()), response.content)


async def _send_raw(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    headers = {**SECURITY_HEADERS, **headers, "Content-Length": str(len(body))}
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SyncLongPollMiddleware:
    """The same in front of Django's WSGI application (gunicorn)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        wait = plan(
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_AUTHORIZATION"),
        )
        if wait is not None:
            close_old_connections()
            try:
                target = _target(wait)
                if target is not None:
                    wakeup.wait_for_sync([target.key], wait.seconds, lambda: _still_waiting(target))
            except DATABASE_DOWN as exc:
                # Django answers it: a 503 while the database is still down (handoff_site.outage).
                log.warning("long-poll on %s: the database is unavailable (%s)", environ.get("PATH_INFO"), exc)
            finally:
                connection.close()  # back to the pool while the view is not running
        return self.app(environ, start_response)
