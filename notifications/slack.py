"""Slack through a Slack app: Block Kit messages with decide buttons (chat.postMessage), the
message updated in place after a click (chat.update), ephemeral refusals
(chat.postEphemeral), and a member's e-mail for mapping them to a person (users.info).

The Web API is reached at settings.SLACK_API_URL with the app's bot token, through the
official slack_sdk. Everything quoted is escaped for Slack's mrkdwn (rules.slack_escape).
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import SignatureVerifier

from . import rules
from .messages import UNCERTAINTY_CHARS, Message, absolute_escalation_link
from .rules import slack_escape

log = logging.getLogger(__name__)

DECIDE = "handoff_decide"  # the action_id prefix of a decide button ("handoff_decide:<key>")
OPEN = "handoff_open"
# Slack's own retryable answers (plus any 5xx and network error).
RETRYABLE_ERRORS = {"ratelimited", "service_unavailable", "request_timeout", "internal_error", "fatal_error"}


def configured() -> bool:
    """The Slack app is set up: messages go through it, and clicks can be verified."""
    return bool(settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET)


# users.info runs while Slack waits for the click's answer (three seconds at most).
LOOKUP_TIMEOUT_SECONDS = 2


def client(timeout: float | None = None) -> WebClient:
    base = settings.SLACK_API_URL if settings.SLACK_API_URL.endswith("/") else settings.SLACK_API_URL + "/"
    seconds = timeout if timeout is not None else settings.WEBHOOK_TIMEOUT_SECONDS
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=base, timeout=max(1, int(seconds)))


def signature_valid(body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """Slack's request signature (v0 HMAC-SHA256 of "v0:timestamp:body" with the signing
    secret), within five minutes of now: the official SDK's verifier."""
    if not settings.SLACK_SIGNING_SECRET or not timestamp or not signature:
        return False
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET)
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError):  # a timestamp that is not a number
        return False


# ---------------------------------------------------------------- Block Kit


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _cost_of_delay(escalation) -> str:
    parts = [f"priority {escalation.priority}", f"impact {escalation.impact}"]
    if escalation.blocking:
        parts.append(f"blocking {escalation.blocked_tasks} task{'s' if escalation.blocked_tasks != 1 else ''}")
    if escalation.respond_by:
        parts.append(f"respond by {escalation.respond_by:%Y-%m-%d %H:%M} UTC")
    if escalation.delay_note:
        parts.append(escalation.delay_note)
    return "Cost of delay: " + "; ".join(slack_escape(part) for part in parts)


def _options_text(escalation) -> str:
    lines = []
    for option in escalation.options:
        marks = []
        if option.get("recommended"):
            marks.append("recommended")
        if not rules.decidable_outside(escalation.options, escalation.action, option["key"]):
            marks.append("decide in Handoff")
        suffix = f" _({', '.join(marks)})_" if marks else ""
        lines.append(f"• *{slack_escape(option.get('label') or option['key'])}*{suffix}")
    return "\n".join(lines)


def _header(escalation, subject: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack_escape(subject)}*"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*Unsure:* {slack_escape(_clip(escalation.uncertainty, UNCERTAINTY_CHARS))}",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _cost_of_delay(escalation)}]},
    ]


def _open_button(link: str) -> dict[str, Any]:
    return {"type": "button", "action_id": OPEN, "text": {"type": "plain_text", "text": "Open in Handoff"}, "url": link}


def decide_buttons(escalation) -> list[dict[str, Any]]:
    """One button per option that may be decided from Slack (rules.decidable_outside)."""
    buttons = []
    for option in escalation.options:
        if not rules.decidable_outside(escalation.options, escalation.action, option["key"]):
            continue
        button: dict[str, Any] = {
            "type": "button",
            "action_id": f"{DECIDE}:{option['key']}"[:255],
            "text": {"type": "plain_text", "text": _clip(option.get("label") or option["key"], 75)},
            "value": json.dumps({"escalation": str(escalation.pk), "option": option["key"]}),
        }
        if option.get("recommended"):
            button["style"] = "primary"
        buttons.append(button)
    return buttons


def message_payload(
    message: Message, escalation=None, *, open_escalation: bool = True, with_text: bool = False
) -> dict[str, Any]:
    """chat.postMessage's text (the fallback for notifications) and blocks. An open
    escalation gets its package's essentials and decide buttons (and the message's text
    under them when `with_text`: an agent's answer); anything else, the text."""
    text = f"{message.subject}: {message.text}"[:3000]
    blocks: list[dict[str, Any]]
    if escalation is None:
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack_escape(message.subject)}*\n{slack_escape(message.text)}"}},
            {"type": "actions", "elements": [_open_button(message.link)]},
        ]
        return {"text": text, "blocks": blocks}
    blocks = _header(escalation, message.subject)
    if with_text:
        blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(_clip(message.text, 2900))}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _options_text(escalation)}})
    elements = (decide_buttons(escalation) if open_escalation else []) + [_open_button(message.link)]
    blocks.append({"type": "actions", "elements": elements})
    return {"text": text, "blocks": blocks}


def decided_payload(escalation, outcome_text: str) -> dict[str, Any]:
    """The message after a decision: the package's essentials, who decided what, no buttons
    but the one opening the escalation."""
    blocks = _header(escalation, escalation.title)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(outcome_text)}})
    blocks.append({"type": "actions", "elements": [_open_button(absolute_escalation_link(escalation))]})
    return {"text": outcome_text, "blocks": blocks}


# ---------------------------------------------------------------- Web API calls


@dataclass(frozen=True)
class Sent:
    """How a chat.postMessage or chat.update went; where the message is when it went."""

    ok: bool
    retryable: bool = False
    error: str = ""
    channel: str = ""  # chat.postMessage to a member answers with the DM's channel id
    ts: str = ""


def _send(call: Callable[[], Any]) -> Sent:
    try:
        answer = call()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or exc.response.status_code)
        status = exc.response.status_code
        return Sent(False, error in RETRYABLE_ERRORS or status >= 500 or status == 429, f"slack: {error}"[:500])
    except (SlackRequestError, OSError) as exc:
        return Sent(False, True, f"slack: {type(exc).__name__}: {exc}"[:500])
    return Sent(True, channel=str(answer.get("channel") or ""), ts=str(answer.get("ts") or ""))


def post_message(channel: str, payload: dict[str, Any]) -> Sent:
    """chat.postMessage."""
    return _send(lambda: client().chat_postMessage(channel=channel, text=payload.get("text", ""), blocks=payload.get("blocks")))


def update_message(channel: str, ts: str, payload: dict[str, Any]) -> Sent:
    """chat.update of the message at (channel, ts)."""
    sent = _send(lambda: client().chat_update(channel=channel, ts=ts, text=payload["text"], blocks=payload["blocks"]))
    if not sent.ok:
        log.warning("slack chat.update of %s/%s failed: %s", channel, ts, sent.error)
    return sent


def post_ephemeral(channel: str, user: str, text: str) -> bool:
    try:
        client().chat_postEphemeral(channel=channel, user=user, text=text)
    except (SlackApiError, SlackRequestError, OSError) as exc:
        log.warning("slack chat.postEphemeral to %s failed: %s", user, exc)
        return False
    return True


def member_email(member_id: str) -> str | None:
    """The member's e-mail address when Slack says it is confirmed (users.info, which needs
    the users:read.email scope), else None."""
    try:
        answer = client(LOOKUP_TIMEOUT_SECONDS).users_info(user=member_id)
    except (SlackApiError, SlackRequestError, OSError) as exc:
        log.warning("slack users.info of %s failed: %s", member_id, exc)
        return None
    member = answer.get("user") or {}
    email = (member.get("profile") or {}).get("email")
    if not email or not member.get("is_email_confirmed") or member.get("deleted"):
        return None
    return email
