"""Notification.slack_settled: the Slack message shows what it always will
(models.slack_settles), and the sweep's partial index over the messages that are not
settled, in place of 0005's, which kept every message showing a decision: one a polling
agent never acknowledges stayed in it for good, and beat's sweep scanned them all every
minute (bench/README.md, "The Slack sweep at scale").

The column's constant default changes only the catalog on PostgreSQL (11+). The messages
posted so far are settled by two UPDATEs (a status never left; a decision without
valid_until), before the index is built, so it starts small. Both indexes are built and
dropped CONCURRENTLY on PostgreSQL (writes go on), so the migration is not atomic; elsewhere,
plainly (as 0005).
"""

from django.db import migrations, models
from django.db.models import Q

from operations.schema import AddIndexConcurrently, RemoveIndexConcurrently

OLD = models.Index(
    condition=Q(slack_ts__gt="") & ~Q(slack_shown_status__in=("resumed", "withdrawn", "expired")),
    fields=["escalation"],
    name="notif_slack_unsettled_idx",
)
INDEX = models.Index(condition=Q(slack_ts__gt="", slack_settled=False), fields=["escalation"], name="notif_slack_sweep_idx")


def settle(apps, schema_editor) -> None:
    posted = apps.get_model("notifications", "Notification").objects.filter(slack_ts__gt="", slack_settled=False)
    posted.filter(slack_shown_status__in=("resumed", "withdrawn", "expired")).update(slack_settled=True)
    posted.filter(slack_shown_status="decided", escalation__decision__valid_until__isnull=True).update(
        slack_settled=True
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0005_slack_shown_status")]

    operations = [
        # Database defaults (catalog only on PostgreSQL 11+): the code before this migration,
        # still serving while it runs, inserts rows without these columns.
        migrations.AddField("notification", "slack_settled", models.BooleanField(default=False, db_default=False)),
        migrations.AlterField(
            "notification", "slack_shown_status", models.CharField(blank=True, default="", db_default="", max_length=20)
        ),
        migrations.RunPython(settle, migrations.RunPython.noop),
        AddIndexConcurrently(model_name="notification", index=INDEX),
        RemoveIndexConcurrently(model_name="notification", name=OLD.name),
    ]
