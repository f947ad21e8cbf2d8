"""What a notification says: subject, text and deep link per event, and each channel's body.

Everything here is plain text; the Slack body escapes what Slack would read as markup, and
e-mail is sent as text only, so nothing an agent wrote can become markup anywhere.
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from escalations.levels import duration

from .models import Kind
from .rules import slack_escape

UNCERTAINTY_CHARS = 300
ANSWER_CHARS = 2000


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    link: str


def absolute(path: str) -> str:
    """A path on the dashboard as a full URL (PUBLIC_URL, as escalation `url`s use)."""
    return settings.PUBLIC_URL + path


def absolute_escalation_link(escalation) -> str:
    return absolute(reverse("reviews:detail", args=[escalation.pk]))


def _agent_link() -> str:
    """The insights page when it is installed, else the queue."""
    try:
        return absolute(reverse("insights:page"))
    except NoReverseMatch:
        return absolute(reverse("reviews:queue"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def compose(kind: str, *, escalation=None, agent=None, data: dict[str, Any]) -> Message:
    """The message of one event. `escalation` has its agent and run loaded when given."""
    data = data or {}
    if kind == Kind.TEST:
        return Message(
            "Test notification from Handoff",
            "This is a test from your notification settings: this channel works.",
            absolute(reverse("notifications:preferences")),
        )
    if escalation is not None:
        return _about_escalation(kind, escalation, data)
    name = agent.name if agent is not None else "An agent"
    if kind == Kind.DRIFT_ALERT:
        return Message(f"Drift alert: {name}", _drift_text(name, data), _agent_link())
    return Message(
        f"Over budget: {name}",
        f"{name} made {data.get('used', '?')} escalations today, over its daily budget "
        f"of {data.get('budget', '?')}.",
        _agent_link(),
    )


DRIFT_KEYS = ("escalations", "gate_checks", "baseline_escalations", "baseline_gate_checks")


def _drift_text(name: str, data: dict[str, Any]) -> str:
    """The insights' numbers in a sentence when they are all there, else as they come."""
    text = f"{name}'s escalation rate climbed well above its usual level."
    if all(key in data for key in DRIFT_KEYS):
        week = f" (week of {data['week_start']})" if data.get("week_start") else ""
        p_value = data.get("p_value")
        chance = f"; p = {p_value:.2g}" if isinstance(p_value, int | float) else ""
        return (
            f"{text} This week{week}: {data['escalations']} escalations in "
            f"{data['gate_checks']} gate checks, against {data['baseline_escalations']} in "
            f"{data['baseline_gate_checks']} over the previous four weeks{chance}."
        )
    numbers = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in data.items())
    return f"{text} {numbers}".strip()


def _about_escalation(kind: str, escalation, data: dict[str, Any]) -> Message:
    title, agent, domain = escalation.title, escalation.agent.name, escalation.domain
    where = f"{agent} in {domain}"
    link = absolute_escalation_link(escalation)
    if kind == Kind.HALT_CREATED:
        text = (
            f"{where} halted run {escalation.run.run_id} and needs a person "
            f"(tier 4, priority {escalation.priority}). "
            f"Unsure: {_clip(escalation.uncertainty, UNCERTAINTY_CHARS)}"
        )
        return Message(f"Halt: {title}", text, link)
    if kind == Kind.LEVEL_RAISED:
        level = data.get("level", escalation.level)
        waited = escalation.level_changed_at or escalation.updated_at
        minutes = int((waited - escalation.created_at).total_seconds() // 60)
        came_from = f" from level {data['from']}" if "from" in data else ""
        text = (
            f"Still open after {duration(minutes)}: “{title}” ({where}) moved to level "
            f"{level}{came_from}; priority {escalation.priority}."
        )
        return Message(f"Level {level}: {title}", text, link)
    if kind == Kind.FIRST_LOOK_ENDED:
        machine = data.get("machine") or "The machine reviewer"
        how = {"timed out": "ran out of time", "passed": "passed", "recommended": "left a recommendation"}
        text = (
            f"{machine} {how.get(data.get('outcome', ''), 'finished')} on “{title}” ({where}) "
            f"without deciding: it waits for a person (tier {escalation.tier}, priority "
            f"{escalation.priority})."
        )
        return Message(f"Needs a person: {title}", text, link)
    if kind == Kind.QUESTION_ANSWERED:
        text = (
            f"{agent} answered your question on “{title}” ({domain}); it is back in the queue. "
            f"Answer: {_clip(data.get('answer', ''), ANSWER_CHARS)} "
            f"(You asked: {_clip(data.get('question', ''), UNCERTAINTY_CHARS)})"
        )
        return Message(f"Answered: {title}", text, link)
    if kind == Kind.DELIVERY_FAILED:
        text = (
            f"The decision on “{title}” could not be delivered to {agent} after "
            f"{data.get('attempts', '?')} attempts ({data.get('error') or 'no answer'}). "
            "Redeliver it from the escalation page once the agent is back."
        )
        return Message(f"Delivery failed: {title}", text, link)
    if kind == Kind.OVER_BUDGET:
        text = (
            f"{agent} made {data.get('used', '?')} escalations today, over its daily budget of "
            f"{data.get('budget', '?')}; the latest is “{title}”."
        )
        return Message(f"Over budget: {agent}", text, link)
    return Message(f"{Kind(kind).label}: {title}", f"{where}: {title}", link)


def slack_body(message: Message) -> dict[str, str]:
    """A Slack-compatible incoming-webhook body: {"text": ...} with the deep link."""
    return {
        "text": f"*{slack_escape(message.subject)}*\n{slack_escape(message.text)}\n"
        f"<{message.link}|Open in Handoff>"
    }


def webhook_body(
    kind: str, message: Message, *, notification_id: str, escalation=None, agent=None, data=None
) -> dict[str, Any]:
    """The signed generic webhook's JSON body."""
    body: dict[str, Any] = {
        "event": f"notification.{kind}",
        "notification_id": notification_id,
        "subject": message.subject,
        "text": message.text,
        "url": message.link,
        "data": data or {},
    }
    if escalation is not None:
        body["escalation"] = {
            "id": str(escalation.pk),
            "title": escalation.title,
            "agent": escalation.agent.name,
            "domain": escalation.domain,
            "tier": escalation.tier,
            "priority": escalation.priority,
            "level": escalation.level,
            "status": escalation.status,
        }
    if agent is not None:
        body["agent"] = {"id": agent.pk, "name": agent.name, "domain": agent.domain}
    return body


def email_body(message: Message, links: list[dict[str, str]] | None = None) -> str:
    """The plain-text part: the text, a link per option that may be decided from the message
    (each opens a confirmation page first), and the escalation's page."""
    settings_link = absolute(reverse("notifications:preferences"))
    decide = ""
    if links:
        lines = [
            f"  {link['label']}{' (recommended)' if link.get('recommended') else ''}: {link['url']}" for link in links
        ]
        hours = settings.ACTION_LINK_MAX_AGE_SECONDS // 3600
        decide = (
            "Decide from here (each link asks you to confirm, works once, for "
            f"{hours} hours):\n" + "\n".join(lines) + "\n\n"
        )
    return (
        f"{message.text}\n\n{decide}Open in Handoff: {message.link}\n\n"
        f"-- \nHandoff. Choose what reaches you: {settings_link}\n"
    )
