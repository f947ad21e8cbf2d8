"""Notification.slack_shown_status: the escalation status its Slack message was last brought
up to date with, and a partial index over the messages that may still need an update
(beat's sweep, notifications.selectors.slack_behind).

Adding the column with a constant default changes only the catalog on PostgreSQL (11+): no
table rewrite. Rows already posted start blank, so the first sweeps update the messages of
closed escalations once each (what they say already, or the expiry they missed). The index
is built CONCURRENTLY on PostgreSQL (writes go on while a large table is indexed), so the
migration is not atomic; elsewhere, plainly (as escalations 0011).
"""

from functools import partial

from django.db import migrations, models
from django.db.models import Q

INDEX = models.Index(
    condition=Q(slack_ts__gt="") & ~Q(slack_shown_status__in=("resumed", "withdrawn", "expired")),
    fields=["escalation"],
    name="notif_slack_unsettled_idx",
)


def index(apps, schema_editor, *, add: bool) -> None:
    model = apps.get_model("notifications", "Notification")
    concurrently = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
    if add and concurrently:  # an interrupted concurrent build leaves an invalid index: drop it first
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
    (schema_editor.add_index if add else schema_editor.remove_index)(model, INDEX, **concurrently)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0004_slack_message_question_answered")]

    operations = [
        migrations.AddField("notification", "slack_shown_status", models.CharField(blank=True, max_length=20)),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(partial(index, add=True), partial(index, add=False))],
            state_operations=[migrations.AddIndex(model_name="notification", index=INDEX)],
        ),
    ]
