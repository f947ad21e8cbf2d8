"""Deciding from outside the dashboard: a Slack click, an e-mail action link.

Every decision goes through the domain's decision service (escalations.services
.escalation_decide), so it has the dashboard's rules, audit, live updates and wake-ups.
What may be decided from a message is narrower (rules.decidable_outside): a reversible
option with its own args; irreversible options (and so the two-person rule), edited args and
take-overs need the dashboard. Every attempt, decided or refused, is an InboundAction row.

E-mail action links are signed tokens naming the user, the escalation, the option and a
nonce; they expire (ACTION_LINK_MAX_AGE_SECONDS) and work once (ActionLinkUse).
"""

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations import services as domain
from escalations.models import Decision, Escalation
from escalations.problems import Problem
from operations import metrics
from people.roles import is_reviewer

from . import rules, slack
from .models import ActionLinkUse, InboundAction, Notification, NotificationPreference

log = logging.getLogger(__name__)

LINK_SALT = "notifications.action-link"
Outcome = InboundAction.Outcome


@dataclass(frozen=True)
class Result:
    outcome: str
    text: str  # what to tell the person, in a sentence
    escalation: Escalation | None = None
    decided_by: str = ""


def _label(escalation: Escalation, option_key: str) -> str:
    option = escalation.option(option_key) or {}
    return option.get("label") or option_key


def decided_text(escalation: Escalation) -> str:
    """"Decided by X: <what>" of an escalation that is no longer open, and that the decision
    expired when it did. Of its status, it tells apart what closed_state does."""
    try:
        decision = escalation.decision
    except Decision.DoesNotExist:
        return f"This escalation is {escalation.get_status_display().lower()}."
    if decision.kind == Decision.Kind.OPTION:
        what = _label(escalation, decision.option_key)
    else:
        what = decision.get_kind_display().lower()
    text = f"Decided by {decision.decided_by_name}: {what}."
    if closed_state(escalation.status) == Escalation.Status.EXPIRED:
        text += " The decision expired before the agent acted on it."
    return text


def closed_state(status: str) -> str:
    """What decided_text (and so a closed message) tells apart of an escalation's status:
    a resumed escalation reads as its decision, so its message needs no update."""
    return Escalation.Status.DECIDED if status == Escalation.Status.RESUMED else status


def _escalation(escalation_id) -> Escalation | None:
    try:
        return Escalation.objects.select_related("agent", "run", "decision").filter(pk=escalation_id).first()
    except (ValidationError, ValueError, TypeError):
        return None


def decide(
    *, via: str, user, external_user: str, escalation_id, option_key: str, now: datetime | None = None
) -> Result:
    """Decide `option_key` on the escalation as `user` (None: nobody Handoff knows), for a
    message outside the dashboard. Never raises for a refusal: the Result says why."""
    now = now or timezone.now()
    escalation = _escalation(escalation_id)
    result = _decide(escalation, via=via, user=user, option_key=option_key, now=now)
    InboundAction.objects.create(
        via=via,
        outcome=result.outcome,
        reason=result.text[:300],
        user=user,
        external_user=external_user[:64],
        escalation=escalation,
        option_key=option_key[:64],
        at=now,
    )
    metrics.count_on_commit(metrics.INBOUND_ACTIONS, via=via, outcome=result.outcome)
    return result


def _decide(escalation: Escalation | None, *, via: str, user, option_key: str, now: datetime) -> Result:
    if escalation is None:
        return Result(Outcome.REFUSED, "Not recorded: this escalation no longer exists.")
    if user is None:
        unknown = (
            "your Slack account is not linked to a Handoff reviewer. Add your Slack member id "
            "in Handoff's notification settings."
            if via == InboundAction.Via.SLACK
            else "the account this link was sent to is no longer active."
        )
        return Result(Outcome.REFUSED, f"Not recorded: {unknown}", escalation)
    if not is_reviewer(user):
        return Result(Outcome.REFUSED, "Not recorded: deciding needs the reviewer role in Handoff.", escalation)
    if not escalation.is_open:
        return Result(Outcome.ALREADY_DECIDED, f"Already decided. {decided_text(escalation)}", escalation, _by(escalation))
    if escalation.option(option_key) is None:
        return Result(Outcome.REFUSED, "Not recorded: that is not an option of this escalation.", escalation)
    if not rules.decidable_outside(escalation.options, escalation.action, option_key):
        return Result(
            Outcome.REFUSED,
            "Not recorded: this choice is irreversible and is decided in Handoff itself.",
            escalation,
        )
    request = domain.DecisionRequest(kind=Decision.Kind.OPTION, option=option_key)
    try:
        decided = domain.escalation_decide(escalation_id=escalation.pk, request=request, user=user, now=now)
    except domain.AlreadyDecided as exc:
        return Result(
            Outcome.ALREADY_DECIDED, f"Already decided. {decided_text(exc.escalation)}", exc.escalation, _by(exc.escalation)
        )
    except Problem as problem:
        return Result(Outcome.REFUSED, f"Not recorded: {problem.detail}", escalation)
    if decided.is_open:  # an approval under the two-person rule: never offered outside, but said
        return Result(Outcome.REFUSED, "Recorded as an approval; the decision waits in Handoff.", decided)
    name = user.get_username()
    return Result(Outcome.DECIDED, f"Decided by {name}: {_label(decided, option_key)}.", decided, name)


def _by(escalation: Escalation) -> str:
    try:
        return escalation.decision.decided_by_name
    except Decision.DoesNotExist:
        return ""


# ---------------------------------------------------------------- Slack members


def slack_user(member_id: str):
    """The active Handoff user behind a Slack member: the one whose notification settings
    name that member id, else the one account whose e-mail matches the member's confirmed
    Slack e-mail (asked of Slack). None when neither finds exactly one."""
    if not member_id:
        return None
    users = get_user_model().objects.filter(is_active=True)
    named = list(users.filter(notification_preference__slack_user_id=member_id)[:2])
    if len(named) == 1:
        return named[0]
    if named:
        return None  # two people claim the same member id: trust neither
    email = slack.member_email(member_id)
    if not email:
        return None
    matches = list(users.filter(email__iexact=email)[:2])
    return matches[0] if len(matches) == 1 else None


def slack_member_save(*, user, member_id: str, now: datetime | None = None) -> NotificationPreference:
    """Link a person's Slack member id (blank unlinks)."""
    now = now or timezone.now()
    with transaction.atomic():
        preference, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
        preference.slack_user_id, preference.updated_at = member_id.strip(), now
        preference.save(update_fields=["slack_user_id", "updated_at"])
    return preference


# ---------------------------------------------------------------- e-mail action links


@dataclass(frozen=True)
class Link:
    user_id: int
    escalation_id: str
    option_key: str
    nonce: str


class LinkRefused(Exception):
    """The link cannot be used: expired, used already, or not a link of ours."""

    def __init__(self, reason: str, title: str) -> None:
        super().__init__(reason)
        self.reason, self.title = reason, title


def link_token(*, user, escalation: Escalation, option_key: str) -> str:
    """A signed, timestamped token naming the user, escalation, option and a fresh nonce."""
    data = {"u": user.pk, "e": str(escalation.pk), "o": option_key, "n": secrets.token_urlsafe(16)}
    return signing.dumps(data, salt=LINK_SALT)


def link_read(token: str) -> Link:
    """The link a token names, or LinkRefused (expired, used, or forged)."""
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=settings.ACTION_LINK_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise LinkRefused(
            "This link has expired. Decide from the escalation page in Handoff instead.", "Link expired"
        ) from None
    except signing.BadSignature:
        raise LinkRefused("This is not a valid Handoff link (it may have been cut short).", "Link not valid") from None
    link = Link(user_id=data["u"], escalation_id=data["e"], option_key=data["o"], nonce=data["n"])
    if ActionLinkUse.objects.filter(nonce=link.nonce).exists():
        raise LinkRefused("This link has already been used: each link decides once.", "Link already used")
    return link


def link_decide(token: str, *, now: datetime | None = None) -> Result:
    """Use an action link: once (the nonce is recorded in the same transaction as the
    decision), as the user it names. LinkRefused when it cannot be used."""
    now = now or timezone.now()
    link = link_read(token)
    if not Escalation.objects.filter(pk=link.escalation_id).exists():
        raise LinkRefused("The escalation this link decides no longer exists.", "Escalation gone")
    user = get_user_model().objects.filter(pk=link.user_id, is_active=True).first()
    with transaction.atomic():
        try:
            with transaction.atomic():
                ActionLinkUse.objects.create(
                    nonce=link.nonce, user_id=link.user_id, escalation_id=link.escalation_id,
                    option_key=link.option_key, used_at=now,
                )
        except IntegrityError:  # a concurrent use got there first
            raise LinkRefused("This link has already been used: each link decides once.", "Link already used") from None
        return decide(
            via=InboundAction.Via.EMAIL, user=user, external_user=str(link.user_id),
            escalation_id=link.escalation_id, option_key=link.option_key, now=now,
        )


# ---------------------------------------------------------------- answering in Slack


def slack_click(payload: dict) -> Result | None:
    """A verified block_actions payload from Slack: decide what its decide button names,
    as the Handoff user behind the Slack member, then (after commit) update the message in
    place and explain any refusal ephemerally. None for anything that is not a decide click
    (the "Open in Handoff" button also reports its click)."""
    actions = payload.get("actions") or []
    if payload.get("type") != "block_actions" or not actions:
        return None
    action = actions[0]
    if not str(action.get("action_id", "")).startswith(slack.DECIDE + ":"):
        return None
    try:
        value = json.loads(action.get("value") or "")
        escalation_id, option_key = str(value["escalation"]), str(value["option"])
    except (ValueError, KeyError, TypeError):
        return None
    member = str((payload.get("user") or {}).get("id") or "")
    container = payload.get("container") or {}
    channel = str(container.get("channel_id") or (payload.get("channel") or {}).get("id") or "")
    ts = str(container.get("message_ts") or (payload.get("message") or {}).get("ts") or "")
    result = decide(
        via=InboundAction.Via.SLACK, user=slack_user(member), external_user=member,
        escalation_id=escalation_id, option_key=option_key,
    )
    reply = {
        "channel": channel, "ts": ts, "member": member, "outcome": result.outcome, "text": result.text,
        "escalation_id": str(result.escalation.pk) if result.escalation is not None else None,
    }
    transaction.on_commit(lambda: _enqueue_slack_reply(reply))
    return result


def _enqueue_slack_reply(reply: dict) -> None:
    from .tasks import slack_reply_task

    try:
        slack_reply_task.delay(reply)
    except Exception as exc:
        log.warning("slack reply not enqueued (%s): the message keeps its buttons", exc)


def slack_closed_payload(escalation: Escalation) -> dict:
    """A Slack message about an escalation that is no longer open: who decided what, no
    decide buttons (every message the app posted, once it is closed: channels.slack_close)."""
    return slack.decided_payload(escalation, decided_text(escalation))


def slack_reply(*, channel: str, ts: str, member: str, outcome: str, text: str, escalation_id: str | None) -> None:
    """After a click: the clicked message says who decided what (in place), and anything
    but the clicker's own decision is explained to them alone. A message the click decided
    whose address Handoff kept is left to channels.slack_close, which every decision sets
    off (the message is updated once)."""
    escalation = _escalation(escalation_id) if escalation_id else None
    if escalation is not None and not escalation.is_open and channel and ts:
        kept = outcome == Outcome.DECIDED and Notification.objects.filter(slack_channel=channel, slack_ts=ts).exists()
        if not kept:
            slack.update_message(channel, ts, slack_closed_payload(escalation))
    if outcome != Outcome.DECIDED and channel and member:
        slack.post_ephemeral(channel, member, text)
