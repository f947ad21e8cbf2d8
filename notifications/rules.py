"""Pure rules of notifications: defaults, which channels a person gets, the event identity.

No ORM and no I/O: the services and selectors feed these plain values.
"""

import hashlib
import json

from .models import Channel, Kind

# Sent to managers (of the domain when its policy names some, else to all managers).
MANAGER_KINDS = (Kind.DELIVERY_FAILED, Kind.OVER_BUDGET, Kind.DRIFT_ALERT)
# For someone who never saved preferences: email for managers' events and for levels that
# name them; halts reach only reviewers who opted in (they are many and frequent).
DEFAULT_CHOICES: dict[str, list[str]] = {
    Kind.LEVEL_RAISED: [Channel.EMAIL],
    # A machine's first look ran out or passed: the escalation waits for a person now.
    Kind.FIRST_LOOK_ENDED: [Channel.EMAIL],
    # The agent answered the question this person asked: it is back in the queue.
    Kind.QUESTION_ANSWERED: [Channel.EMAIL],
    Kind.DELIVERY_FAILED: [Channel.EMAIL],
    Kind.OVER_BUDGET: [Channel.EMAIL],
    Kind.DRIFT_ALERT: [Channel.EMAIL],
}


def kinds_for(*, is_manager: bool) -> list[Kind]:
    """The events a person may receive, in the order the preferences page shows them."""
    kinds = [Kind.HALT_CREATED, Kind.LEVEL_RAISED, Kind.FIRST_LOOK_ENDED, Kind.QUESTION_ANSWERED]
    return kinds + list(MANAGER_KINDS) if is_manager else kinds


PUSH_TARGET = "browser"  # a push row goes to every browser the person subscribed


def target(
    channel: str, *, email: str, slack_url: str, webhook_url: str, slack_member: str = "", push: bool = False
) -> str:
    """Where a channel goes for a person ("" when they have not set it up). Slack goes to
    the person's member id through the Slack app when both are set up (`slack_member`: the
    id, given only when the app is configured), else to their incoming webhook URL."""
    return {
        Channel.EMAIL: email,
        Channel.SLACK: slack_member or slack_url,
        Channel.WEBHOOK: webhook_url,
        Channel.PUSH: PUSH_TARGET if push else "",
    }[Channel(channel)]


def channels_for(
    kind: str,
    *,
    choices: dict | None,
    email: str,
    slack_url: str,
    webhook_url: str,
    slack_member: str = "",
    push: bool = False,
) -> list[str]:
    """The channels `kind` goes out on for a person: chosen (or the default) and set up.

    `choices` is None for someone who never saved preferences; an event missing from
    saved choices (say, a reviewer who became a manager since) gets its default too. A test
    goes to every channel set up.
    """
    if kind == Kind.TEST:
        chosen = set(Channel.values)
    elif choices is not None and kind in choices:
        chosen = set(choices[kind])
    else:
        chosen = set(DEFAULT_CHOICES.get(kind, []))
    return [
        channel
        for channel in Channel.values
        if channel in chosen
        and target(
            channel, email=email, slack_url=slack_url, webhook_url=webhook_url, slack_member=slack_member, push=push
        )
    ]


def event_key(kind: str, subject: str, data: dict) -> str:
    """What makes one event one: the same event told twice is sent once.

    A level is told once per escalation and level, a failed delivery once per delivery, an
    agent over budget once per day, a drift alert once per agent and week, an answer once per
    question (the time it was asked); otherwise (tests,
    drift alerts without a week) the data decides.
    """
    if kind == Kind.LEVEL_RAISED:
        detail = str(data.get("level", ""))
    elif kind == Kind.DELIVERY_FAILED:
        detail = str(data.get("delivery", ""))
    elif kind == Kind.OVER_BUDGET:
        detail = str(data.get("day", ""))
    elif kind == Kind.QUESTION_ANSWERED:
        detail = str(data.get("asked_at", ""))
    elif kind in (Kind.HALT_CREATED, Kind.FIRST_LOOK_ENDED):
        detail = ""
    elif kind == Kind.DRIFT_ALERT and data.get("week_start"):
        detail = str(data["week_start"])
    else:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        detail = hashlib.sha256(canonical.encode()).hexdigest()[:24]
    return f"{kind}:{subject}:{detail}"


def slack_escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup: escape them in anything quoted."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def decidable_outside(escalation_options: list[dict], action: dict | None, option_key: str) -> bool:
    """May this option be decided from a message (a Slack button, an e-mail link)?

    Only a reversible option of a reversible action, with its own args: irreversible
    choices (and so the two-person rule), edited args and take-overs need the dashboard.
    """
    if (action or {}).get("irreversible"):
        return False
    option = next((o for o in escalation_options if o.get("key") == option_key), None)
    return option is not None and not option.get("irreversible")
