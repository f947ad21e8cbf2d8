"""The managers' agents page: register agents, their tokens and signing secret, their
settings, delivery health and redelivery.

A token or secret exists in plain text only in the answer to the POST that made it: those
answers render the page (with `Cache-Control: no-store`) instead of redirecting, since a
redirect would have to keep the secret somewhere to show it. Every other write redirects.
"""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations import selectors, services
from escalations.errors import DomainError
from escalations.models import Agent, AgentToken
from people.roles import manager_required

from . import refusals
from .forms_agents import AgentEditForm, AgentRegisterForm, TokenRotateForm

LIST = "reviews/agents/list.html"
NEW = "reviews/agents/new.html"
DETAIL = "reviews/agents/detail.html"


@manager_required
@require_GET
def agents(request: HttpRequest) -> HttpResponse:
    rows = selectors.agents_with_health(now=timezone.now()).order_by("name")
    context = {"agents": rows, "health_days": selectors.HEALTH_DAYS}
    return TemplateResponse(request, LIST, context)


@manager_required
@never_cache
@require_http_methods(["GET", "POST"])
def agent_register(request: HttpRequest) -> HttpResponse:
    form = AgentRegisterForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            new = services.agent_create(**form.cleaned_data)
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            context = {"agent": new.agent, "token": new.token, "secret": new.agent.signing_secret}
            return TemplateResponse(request, NEW, context)
    status = 422 if form.is_bound else 200
    return TemplateResponse(request, NEW, {"form": form}, status=status)


def _agent(agent_id: int) -> Agent:
    return get_object_or_404(selectors.agents_with_health(now=timezone.now()), pk=agent_id)


def _page(request: HttpRequest, agent: Agent, *, status: int = 200, **extra) -> TemplateResponse:
    """The agent's page; `extra` may carry a bound form with errors or a secret to reveal."""
    tokens = list(agent.tokens.all())
    context = {
        "agent": agent,
        "health_days": selectors.HEALTH_DAYS,
        "retry_hours": settings.WEBHOOK_RETRY_FOR_SECONDS // 3600,
        "tokens": tokens,
        "has_live_token": any(t.revoked_at is None for t in tokens),
        "escalations": selectors.agent_recent_escalations(agent),
        "failed_deliveries": selectors.agent_failed_deliveries(agent),
        "form": AgentEditForm.for_agent(agent),
        "rotate_form": TokenRotateForm(),
        **extra,
    }
    return TemplateResponse(request, DETAIL, context, status=status)


@manager_required
@never_cache
@require_GET
def agent_detail(request: HttpRequest, agent_id: int) -> HttpResponse:
    return _page(request, _agent(agent_id))


@manager_required
@require_POST
def agent_settings(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = _agent(agent_id)
    form = AgentEditForm(request.POST)
    if form.is_valid():
        try:
            services.agent_update(agent=agent, **form.cleaned_data)
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            messages.success(request, f"Saved the settings of {agent.name}.")
            return redirect("reviews:agent", agent_id=agent.pk)
    return _page(request, _agent(agent_id), form=form, status=422)


@manager_required
@never_cache
@require_POST
def agent_token_rotate(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = _agent(agent_id)
    form = TokenRotateForm(request.POST)
    revoke = form.is_valid() and form.cleaned_data["revoke_others"]
    token = services.token_rotate(agent=agent, revoke_others=revoke)
    return _page(request, agent, revealed_token=token, revoked_others=revoke)


@manager_required
@require_POST
def agent_token_revoke(request: HttpRequest, agent_id: int, token_id: int) -> HttpResponse:
    agent = _agent(agent_id)
    token = get_object_or_404(AgentToken, pk=token_id, agent=agent)
    if token.revoked_at:
        messages.info(request, f"The token {token.prefix}… was already revoked.")
    else:
        services.token_revoke(token=token)
        messages.success(request, f"Revoked the token {token.prefix}…: it is refused from now on.")
    return redirect("reviews:agent", agent_id=agent.pk)


@manager_required
@never_cache
@require_POST
def agent_secret_roll(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = _agent(agent_id)
    secret = services.agent_secret_roll(agent=agent)
    return _page(request, agent, revealed_secret=secret)


@manager_required
@require_POST
def agent_redeliver(request: HttpRequest, agent_id: int, delivery_id) -> HttpResponse:
    agent = _agent(agent_id)
    delivery = selectors.agent_delivery(agent, delivery_id)
    if delivery is None:
        messages.error(request, "No such delivery for this agent.")
        return redirect("reviews:agent", agent_id=agent.pk)
    try:
        services.delivery_redeliver(escalation=delivery.escalation, user=request.user)
    except DomainError as refusal:
        messages.error(request, f"Not redelivered: {refusals.notice(refusal)}")
    else:
        messages.success(request, f"Queued a new delivery of “{delivery.escalation.title}”.")
    return redirect("reviews:agent", agent_id=agent.pk)
