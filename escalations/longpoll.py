"""Long-polls held in front of Django, with no database connection while they wait.

`GET /api/v1/escalations/{id}?wait=N` and `GET /api/v1/decisions?wait=N` are caught here
under ASGI: a short read decides whether there is anything to wait for; if so the request
waits on a wake-up (escalations.wakeup) for at most N seconds, then goes on to the
ordinary Django view, which answers with the state as it is then. Anything unusual (bad
token, bad parameters, not found) goes straight to Django, which answers it properly.
"""

import re
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from . import wakeup
from .models import AgentToken, Decision, Escalation, hash_token

ESCALATION_PATH = re.compile(r"^/api/v1/escalations/([0-9a-fA-F-]{36})/?$")
DECISIONS_PATH = re.compile(r"^/api/v1/decisions/?$")


def _bearer(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _agent_id(token: str) -> int | None:
    return (
        AgentToken.objects.filter(
            token_hash=hash_token(token), revoked_at__isnull=True, agent__is_active=True
        )
        .values_list("agent_id", flat=True)
        .first()
    )


@database_sync_to_async
def _escalation_is_open(token: str, escalation_id: uuid.UUID) -> tuple[bool, int | None]:
    agent_id = _agent_id(token)
    if agent_id is None:
        return False, None
    status = (
        Escalation.objects.filter(pk=escalation_id, agent_id=agent_id)
        .values_list("status", flat=True)
        .first()
    )
    return status in Escalation.OPEN_STATUSES, agent_id


@database_sync_to_async
def _feed_agent(token: str) -> int | None:
    return _agent_id(token)


@database_sync_to_async
def _feed_is_empty(agent_id: int, after: int) -> bool:
    return not Decision.objects.filter(agent_id=agent_id, seq__gt=after).exists()


def _wait_seconds(query: dict[str, list[str]]) -> int:
    values = query.get("wait", [])
    if len(values) != 1 or not values[0].isdigit():
        return 0
    seconds = int(values[0])
    return seconds if 0 < seconds <= settings.LONG_POLL_MAX_SECONDS else 0


class LongPollMiddleware:
    """ASGI middleware in front of Django's HTTP application."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            await self._maybe_wait(scope)
        await self.app(scope, receive, send)

    async def _maybe_wait(self, scope) -> None:
        path = scope["path"]
        escalation_match = ESCALATION_PATH.match(path)
        if not escalation_match and not DECISIONS_PATH.match(path):
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        seconds = _wait_seconds(query)
        token = _bearer(scope)
        if not seconds or token is None:
            return
        if escalation_match:
            try:
                escalation_id = uuid.UUID(escalation_match.group(1))
            except ValueError:
                return

            async def still_open() -> bool:
                return (await _escalation_is_open(token, escalation_id))[0]

            await wakeup.wait_for([wakeup.escalation_key(escalation_id)], seconds, still_open)
            return
        after_values = query.get("after", ["0"])
        if len(after_values) != 1 or not (after_values[0] or "0").isdigit() or len(after_values[0]) > 18:
            return
        after = int(after_values[0] or "0")
        agent_id = await _feed_agent(token)
        if agent_id is None:
            return

        async def nothing_new() -> bool:
            return await _feed_is_empty(agent_id, after)

        await wakeup.wait_for([wakeup.agent_key(agent_id)], seconds, nothing_new)
