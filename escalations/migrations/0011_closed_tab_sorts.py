"""The queue's sorts over closed escalations (the closed tab), one partial index each.

The closed tab (reviews.queue.in_tab: every escalation no longer open) had no index for its
sorts: each page sorted every closed escalation (1.6-3.6 s at 550,000, bench/README.md).
Each index's condition is the tab's `exclude(status__in=OPEN_STATUSES)` as Django writes it,
so the planner proves the index applies. On PostgreSQL they are built CONCURRENTLY (writes go
on while a large table is indexed), so the migration is not atomic; elsewhere, plainly.
"""

from django.db import migrations, models
from django.db.models import Q

from operations.schema import AddIndexConcurrently

CLOSED = ~Q(status__in=["pending", "claimed", "awaiting_agent"])
INDEXES = [
    models.Index(condition=CLOSED, fields=["-priority", "created_at", "id"], name="esc_closed_priority_idx"),
    models.Index(condition=CLOSED, fields=["respond_by", "created_at", "id"], name="esc_closed_deadline_idx"),
    models.Index(condition=CLOSED, fields=["created_at", "id"], name="esc_closed_age_idx"),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0010_search_every_status")]

    operations = [AddIndexConcurrently(model_name="escalation", index=index) for index in INDEXES]
