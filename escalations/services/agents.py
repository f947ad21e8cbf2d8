"""Agents and their tokens: register, change settings, roll the signing secret, issue,
rotate and revoke bearer tokens, and find the agent a token belongs to."""

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations import rows
from escalations.errors import FieldError, Invalid
from escalations.models import Agent, AgentToken, Policy, hash_token

from . import policies


@dataclass
class NewAgent:
    agent: Agent
    token: str


def agent_create(
    *, name: str, domain: str = "default", resume_url: str = "", daily_budget: int = 50
) -> NewAgent:
    """Register an agent with its first token. The token is returned once, stored hashed.

    Raises Invalid naming the field for an unknown domain, a negative budget or a
    name already taken (also when a concurrent registration took it first).
    """
    errors = _agent_setting_errors(domain=domain, daily_budget=daily_budget)
    if errors:
        raise Invalid(errors)
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                name=name,
                domain=domain,
                resume_url=resume_url,
                daily_budget=daily_budget,
                signing_secret=Agent.new_signing_secret(),
            )
            token = token_issue(agent=agent)
    except IntegrityError:  # the name's unique constraint: the only one a new row can break
        raise Invalid([FieldError("name", f"an agent named {name!r} already exists")]) from None
    return NewAgent(agent, token)


def _agent_setting_errors(*, domain: str, daily_budget: int) -> list[FieldError]:
    errors = []
    if not Policy.objects.filter(domain=domain).exists():
        errors.append(policies.unknown_domain(domain, "domain"))
    if daily_budget < 0:
        errors.append(FieldError("daily_budget", "must be 0 or more"))
    return errors


def agent_update(
    *, agent: Agent, domain: str, resume_url: str, daily_budget: int, is_active: bool
) -> Agent:
    """Change an agent's settings. Takes effect on its next request: a deactivated agent's
    tokens answer 401 at once. Raises Invalid naming the field (unknown domain,
    negative budget). Deliveries already queued keep the URL they were queued with."""
    errors = _agent_setting_errors(domain=domain, daily_budget=daily_budget)
    if errors:
        raise Invalid(errors)
    agent.domain, agent.resume_url = domain, resume_url
    agent.daily_budget, agent.is_active = daily_budget, is_active
    agent.save(update_fields=["domain", "resume_url", "daily_budget", "is_active"])
    return agent


def agent_secret_roll(*, agent: Agent) -> str:
    """A new webhook signing secret; the old one stops signing at once (deliveries read the
    secret when they send). Returned once; the agent must switch to it."""
    agent.signing_secret = Agent.new_signing_secret()
    agent.save(update_fields=["signing_secret"])
    return agent.signing_secret


def token_issue(*, agent: Agent) -> str:
    """A new API token for `agent`; the only time the plain token exists."""
    token = AgentToken.generate()
    AgentToken.objects.create(agent=agent, token_hash=hash_token(token), prefix=token[:10])
    return token


def token_rotate(*, agent: Agent, revoke_others: bool = False, now: datetime | None = None) -> str:
    """Issue a new token (returned once) and, if asked, revoke every other live token of the
    agent in the same transaction, so the agent is never left without a working token."""
    now = now or timezone.now()
    with transaction.atomic():
        token = token_issue(agent=agent)
        if revoke_others:
            agent.tokens.filter(revoked_at__isnull=True).exclude(
                token_hash=hash_token(token)
            ).update(revoked_at=now)
    return token


def token_revoke(*, token: AgentToken, now: datetime | None = None) -> None:
    """Revoke a token; the API refuses it from the next request. Revoking twice keeps the
    first time."""
    AgentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )


@cache
def _agent_for_token_sql() -> str:
    # AgentToken.objects.live by hand (tests/test_live_token.py holds the two equal): every
    # agent API call authenticates here, and the ORM's compile cost more than the query.
    return (
        f"SELECT {rows.columns(Agent, 'a')} FROM escalations_agenttoken t"  # noqa: S608 (the model's own table and columns, never input)
        " JOIN escalations_agent a ON a.id = t.agent_id"
        " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND a.is_active"
    )


def agent_for_token(token: str) -> Agent | None:
    """The agent of a live token (AgentToken.objects.live), or None."""
    return rows.one(Agent, _agent_for_token_sql(), [hash_token(token)])
