"""Escalation.expires_at: a decided escalation's decision's valid_until, and a partial index
over the decided ones that have one (models.EXPIRES).

Beat's expiry (services.decisions_expire, every 30 s) read every decision with a valid_until
past, sorted them and looked each one's escalation up: ~270-320 ms a run at 1,000,000
escalations with nothing to expire, growing with every decision ever made (bench/README.md,
"Beat's decision expiry at scale"). The column is nullable (catalog only); the escalations
decided now get it from their decision; the index is built CONCURRENTLY on PostgreSQL (writes
go on), so the migration is not atomic; elsewhere, plainly.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery

from operations.schema import AddIndexConcurrently

EXPIRES = Q(status="decided", expires_at__isnull=False)
INDEX = models.Index(condition=EXPIRES, fields=["expires_at"], name="esc_expires_idx")


def backfill(apps, schema_editor) -> None:
    escalation, decision = apps.get_model("escalations", "Escalation"), apps.get_model("escalations", "Decision")
    escalation.objects.filter(status="decided", expires_at__isnull=True).update(
        expires_at=Subquery(decision.objects.filter(escalation_id=OuterRef("pk")).values("valid_until")[:1])
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0012_delivery_agent")]

    operations = [
        migrations.AddField(
            model_name="escalation", name="expires_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        AddIndexConcurrently(model_name="escalation", index=INDEX),
    ]
