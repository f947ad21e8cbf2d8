"""Notification.slack_shown_status: the escalation status its Slack message was last brought
up to date with, and a partial index over the messages that may still need an update
(beat's sweep, notifications.selectors.slack_behind).

Adding the column with a constant default changes only the catalog on PostgreSQL (11+): no
table rewrite. Rows already posted start blank, so the first sweeps update the messages of
closed escalations once each (what they say already, or the expiry they missed). The index
is built CONCURRENTLY on PostgreSQL (writes go on while a large table is indexed), so the
migration is not atomic; elsewhere, plainly (as escalations 0011).
"""

from django.db import migrations, models
from django.db.models import Q

from operations.schema import AddIndexConcurrently

INDEX = models.Index(
    condition=Q(slack_ts__gt="") & ~Q(slack_shown_status__in=("resumed", "withdrawn", "expired")),
    fields=["escalation"],
    name="notif_slack_unsettled_idx",
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0004_slack_message_question_answered")]

    operations = [
        migrations.AddField("notification", "slack_shown_status", models.CharField(blank=True, max_length=20)),
        AddIndexConcurrently(model_name="notification", index=INDEX),
    ]
