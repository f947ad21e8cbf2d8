"""The send task claims any agent's next due delivery: a partial index of the rows still to
send by due time (models.SENDABLE) takes the place of 0012's per-agent one.

deliver_due_task claims the oldest due delivery of any agent (services.delivery_claim_next),
one range of this index however long the history; 0012's index led with the agent, which that
claim cannot use. Both are built and dropped CONCURRENTLY on PostgreSQL (writes go on), so
the migration is not atomic. The agent column stays (the release before still writes it).
"""

from django.db import migrations, models
from django.db.models import Q

from operations.schema import AddIndexConcurrently, RemoveIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0013_expires_at")]

    operations = [
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=Q(status__in=["pending", "sending", "retrying"]),
                fields=["next_attempt_at"],
                name="delivery_sendable_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="delivery", name="delivery_agent_due_idx"),
    ]
