"""Closed escalations by their last change, every closed status: retention's purge and the
insights' refresh read one range of it, however long the history.

esc_closed_updated_idx (0001) held decided, resumed and withdrawn escalations; the purge has
asked for expired ones too since decisions gained a lifetime, so its condition no longer
matched and each run read the whole table (485 ms at 1,000,000 escalations with nothing to
purge; bench/README.md, "Beat's jobs at scale"). esc_closed_change_idx's condition is
models.CLOSED, the Q both reads filter by. Built, and the old one dropped, CONCURRENTLY on
PostgreSQL (writes go on), so the migration is not atomic.
"""

from django.db import migrations, models
from django.db.models import Q

from operations.schema import AddIndexConcurrently, RemoveIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0014_delivery_sendable")]

    operations = [
        AddIndexConcurrently(
            model_name="escalation",
            index=models.Index(
                condition=Q(status__in=["decided", "resumed", "withdrawn", "expired"]),
                fields=["updated_at"],
                name="esc_closed_change_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="escalation", name="esc_closed_updated_idx"),
    ]
