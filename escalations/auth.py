"""Agent authentication for the API: `Authorization: Bearer <token>`, tokens stored hashed."""

from django.http import HttpRequest
from ninja.security import HttpBearer

from .models import Agent
from .services import agent_for_token


class AgentRequest(HttpRequest):
    auth: Agent


class AgentBearer(HttpBearer):
    openapi_description = "An agent's API token (`manage.py agent_create` prints one)."

    def authenticate(self, request: HttpRequest, token: str) -> Agent | None:
        if len(token) > 200:
            return None
        return agent_for_token(token)
