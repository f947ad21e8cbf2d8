"""The database's side of /metrics: what stands now, counted at scrape time.

Each count is answered by an index over the rows it counts (open escalations, or outbox
rows not yet finished), never by a scan of history: bench/metrics_bench.py times them.
"""

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, QuerySet

from escalations.models import Delivery, Escalation
from escalations.models.deliveries import UNFINISHED
from escalations.models.escalations import CLOSED
from notifications.models import Notification


def queue_depth() -> dict[tuple[int, str], int]:
    """{(tier, status): open escalations} (esc_open_tier_idx, an index-only scan)."""
    rows = Escalation.objects.in_queue().values_list("tier", "status").annotate(n=Count("pk")).order_by()
    return {(tier, status): n for tier, status, n in rows}


def oldest_open_created_at() -> datetime | None:
    """When the oldest open escalation was created (esc_open_age_idx: one index entry)."""
    return Escalation.objects.in_queue().order_by("created_at").values_list("created_at", flat=True).first()


def outbox_by_status(model) -> dict[str, int]:
    """{status: rows} of an outbox's unfinished rows (its (status, next_attempt_at) index)."""
    rows = model.objects.filter(status__in=UNFINISHED).values_list("status").annotate(n=Count("pk"))
    return dict(rows.order_by())


def webhook_outbox() -> dict[str, int]:
    return outbox_by_status(Delivery)


def notification_outbox() -> dict[str, int]:
    return outbox_by_status(Notification)


def expired_escalations(*, before: datetime) -> QuerySet[Escalation]:
    """Closed escalations (CLOSED: decided, resumed, withdrawn, expired) last changed before
    `before`, with nothing still on its way out (a delivery or a notification not yet sent or
    given up), oldest change first: one range of esc_closed_change_idx, however long the
    history (its condition once left `expired` out, and every run read the whole table:
    bench/README.md, "Beat's jobs at scale")."""
    unsent_deliveries = Delivery.objects.filter(escalation=OuterRef("pk"), status__in=UNFINISHED)
    unsent_notifications = Notification.objects.filter(escalation=OuterRef("pk"), status__in=UNFINISHED)
    return (
        Escalation.objects.filter(CLOSED, updated_at__lt=before)
        .exclude(Exists(unsent_deliveries))
        .exclude(Exists(unsent_notifications))
        .order_by("updated_at")
    )
