"""Reads of notifications: who an event reaches, a person's preferences, their recent messages."""

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from escalations.models import Escalation, EscalationLevel
from escalations.selectors import reviewers_assignable

from .models import (
    SLACK_UNSETTLED,
    Channel,
    Kind,
    Notification,
    NotificationPreference,
    PushSubscription,
)


def _with_preferences(users: QuerySet) -> QuerySet:
    return users.select_related("notification_preference")


def managers_of(domain: str | None) -> QuerySet:
    """The domain's managers when its policy names some, else every manager."""
    users = get_user_model().objects.filter(is_active=True)
    if domain:
        named = users.filter(managed_policies__domain=domain)
        if named.exists():
            return named
    return users.filter(Q(groups__name="manager") | Q(is_superuser=True)).distinct()


def recipients(kind: str, *, domain: str | None, level: int | None = None, asked_by: str | None = None) -> list:
    """Who may hear of an event, with their preferences loaded (their choices apply after).

    A halt, or a machine's first look that ended undecided: every reviewer (only those who
    opted in get it). A level: the people the level names, and the domain's managers when it
    says so. An answer: the person who asked (`asked_by`, a username), unless a machine
    reviewer asked. The rest: the domain's managers (managers_of).
    """
    if kind == Kind.QUESTION_ANSWERED:
        asker = get_user_model().objects.filter(username=asked_by or "", is_active=True).exclude(profile__is_machine=True)
        return list(_with_preferences(asker))
    if kind in (Kind.HALT_CREATED, Kind.FIRST_LOOK_ENDED):
        return list(_with_preferences(reviewers_assignable()))
    if kind == Kind.LEVEL_RAISED:
        row = (
            EscalationLevel.objects.filter(policy__domain=domain, level=level)
            .prefetch_related("notify__notification_preference")
            .first()
            if level is not None
            else None
        )
        if row is None:
            return []
        people = {user.pk: user for user in row.notify.all() if user.is_active}
        if row.notify_managers:
            people.update({user.pk: user for user in _with_preferences(managers_of(domain))})
        return sorted(people.values(), key=lambda user: user.get_username())
    return list(_with_preferences(managers_of(domain)).order_by("username"))


def preference_of(user) -> NotificationPreference | None:
    return NotificationPreference.objects.filter(user=user).first()


def recent_for(user, *, limit: int = 10) -> list[Notification]:
    return list(Notification.objects.filter(user=user).order_by("-created_at")[:limit])



def slack_behind(*, limit: int, now: datetime | None = None, grace_seconds: float = 10) -> list[str]:
    """Ids of closed escalations with a message the Slack app posted that is behind their
    status (Notification.slack_shown_status), at most `limit`, the longest behind first.
    A message settled (models.slack_settles) is never behind: what may follow reads the
    same. Changes younger than `grace_seconds` are left to the task their commit enqueued.

    Its cost is the sweep's index (SLACK_UNSETTLED: messages of open escalations, decisions
    that may still expire, and those behind), one escalation looked up by key for each: as
    a join with ORDER BY ... LIMIT, PostgreSQL walked every closed escalation in updated_at
    order instead, hoping to meet 20 behind early (seconds at 1,000,000; bench/README.md,
    "The Slack sweep at scale"). A subquery in WHERE is never turned into a join."""
    now = now or timezone.now()
    behind_since = Subquery(
        Escalation.objects.filter(
            pk=OuterRef("escalation_id"),
            status__in=Escalation.CLOSED_STATUSES,
            updated_at__lt=now - timedelta(seconds=grace_seconds),
        )
        .exclude(status=OuterRef("slack_shown_status"))
        .order_by()
        .values("updated_at")
    )
    behind = (
        Notification.objects.filter(SLACK_UNSETTLED, channel=Channel.SLACK)
        .annotate(behind_since=behind_since)
        .filter(behind_since__isnull=False)
        .values_list("escalation_id", "behind_since")
        .order_by("behind_since")
        .distinct()[:limit]
    )
    return [str(pk) for pk, _ in behind]


def push_endpoints(user) -> list[str]:
    return list(PushSubscription.objects.filter(user=user).values_list("endpoint", flat=True))


def with_push_subscriptions(user_ids: list) -> set:
    """Those of `user_ids` with at least one browser subscribed to push."""
    if not user_ids:
        return set()
    return set(PushSubscription.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True).distinct())
