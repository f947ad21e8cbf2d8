"""Agent authentication for the API: `Authorization: Bearer <token>`, tokens stored hashed."""

from django.http import HttpRequest
from ninja.security import HttpBearer

from .models import Agent
from .services import agent_for_token


class AgentRequest(HttpRequest):
    auth: Agent


class PendingToken(str):
    """A bearer token not checked yet: the view checks it in the same query as its read."""


class AgentBearer(HttpBearer):
    openapi_description = "An agent's API token (`manage.py agent_create` prints one)."

    def authenticate(self, request: HttpRequest, token: str) -> Agent | None:
        if len(token) > 200:
            return None
        return agent_for_token(token)


class AgentBearerInQuery(HttpBearer):
    """For hot reads: the view authenticates in the query that reads (one round trip),
    and must call `resolve_unauthorized` when that query finds nothing."""

    openapi_description = AgentBearer.openapi_description

    def authenticate(self, request: HttpRequest, token: str) -> PendingToken | None:
        return PendingToken(token) if len(token) <= 200 else None
