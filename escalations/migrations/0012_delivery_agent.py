"""A delivery names its agent, and an agent's rows still to send have an index.

The agent's send task (escalations.tasks.deliver_agent_task) claims that agent's due
deliveries one after the other: one range of a partial index over the rows still to send
(pending, sending, retrying), by due time. The column is the escalation's agent, copied when
the row is written; rows still to send get it here, delivered and failed ones keep NULL. On
PostgreSQL the index is built CONCURRENTLY (writes go on while a large table is indexed), so
the migration is not atomic; elsewhere, plainly.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery

from operations.schema import AddIndexConcurrently

IN_FLIGHT = Q(status__in=["pending", "sending", "retrying"])
INDEX = models.Index(condition=IN_FLIGHT, fields=["agent", "next_attempt_at"], name="delivery_agent_due_idx")


def backfill(apps, schema_editor) -> None:
    delivery, escalation = apps.get_model("escalations", "Delivery"), apps.get_model("escalations", "Escalation")
    delivery.objects.filter(IN_FLIGHT, agent__isnull=True).update(
        agent_id=Subquery(escalation.objects.filter(pk=OuterRef("escalation_id")).values("agent_id")[:1])
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0011_closed_tab_sorts")]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="agent",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, null=True, on_delete=models.deletion.DO_NOTHING,
                related_name="+", to="escalations.agent",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        AddIndexConcurrently(model_name="delivery", index=INDEX),
    ]
