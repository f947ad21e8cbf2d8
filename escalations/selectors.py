"""Reads shared by the agent API, the reviewer API and the dashboard."""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from .models import Delivery, Escalation


def escalations_for_reviewer(user) -> QuerySet[Escalation]:
    """Everything a reviewer may see. Every signed-in reviewer sees every escalation today;
    narrowing by team or domain starts here."""
    return Escalation.objects.select_related("agent", "run", "claimed_by", "decision")


def escalation_page(user) -> QuerySet[Escalation]:
    """Escalations with everything their page shows: events, deliveries and their attempts."""
    deliveries = Delivery.objects.prefetch_related("attempts").order_by("-created_at")
    return escalations_for_reviewer(user).prefetch_related(
        "events", Prefetch("deliveries", queryset=deliveries)
    )


def open_queue(user) -> QuerySet[Escalation]:
    return escalations_for_reviewer(user).open().in_queue_order()


@dataclass(frozen=True)
class QueueCursor:
    """A position in queue order (-priority, created_at, id): keyset paging, no OFFSET."""

    priority: int
    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = f"{self.priority}|{self.created_at.isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> "QueueCursor":
        """Raises ValueError for anything that is not a cursor we made."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            priority, created_at, pk = raw.split("|")
            return cls(int(priority), datetime.fromisoformat(created_at), pk)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("not a queue cursor") from exc

    @classmethod
    def of(cls, escalation: Escalation) -> "QueueCursor":
        return cls(escalation.priority, escalation.created_at, str(escalation.id))


def after_cursor(queryset: QuerySet[Escalation], cursor: QueueCursor | None) -> QuerySet[Escalation]:
    """The rows after `cursor` in queue order (the queryset must be in queue order)."""
    if cursor is None:
        return queryset
    return queryset.filter(
        Q(priority__lt=cursor.priority)
        | Q(priority=cursor.priority, created_at__gt=cursor.created_at)
        | Q(priority=cursor.priority, created_at=cursor.created_at, id__gt=cursor.id)
    )


def page(queryset: QuerySet[Escalation], cursor: QueueCursor | None, limit: int):
    """(rows, next cursor or None): one query of limit + 1 rows."""
    rows = list(after_cursor(queryset, cursor)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (QueueCursor.of(rows[-1]) if more and rows else None)
