# Questions to the agent (issue 14): status awaiting_agent (open, out of the queue), the open
# question, the time waited on the agent; a run still has one open escalation.

import datetime
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('escalations', '0006_precedent_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='escalation',
            name='escalation_one_open_per_run',
        ),
        migrations.AddField(
            model_name='escalation',
            name='question_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='escalation',
            name='question_by',
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name='escalation',
            name='question_text',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='escalation',
            name='waited_on_agent',
            field=models.DurationField(default=datetime.timedelta(0)),
        ),
        migrations.AlterField(
            model_name='escalation',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('claimed', 'Claimed'), ('awaiting_agent', 'Waiting for agent'), ('decided', 'Decided'), ('resumed', 'Resumed'), ('withdrawn', 'Withdrawn'), ('expired', 'Expired')], default='pending', max_length=20),
        ),
        migrations.AlterField(
            model_name='event',
            name='kind',
            field=models.CharField(choices=[('created', 'Created'), ('claimed', 'Claimed'), ('released', 'Released'), ('claim_expired', 'Claim Expired'), ('decided', 'Decided'), ('withdrawn', 'Withdrawn'), ('acknowledged', 'Acknowledged'), ('resumed', 'Resumed'), ('delivery_failed', 'Delivery Failed'), ('redelivery', 'Redelivery'), ('reprioritized', 'Reprioritized'), ('reassigned', 'Reassigned'), ('commented', 'Commented'), ('approved', 'Approved'), ('level_raised', 'Level Raised'), ('notified', 'Notified'), ('flag_reviewed', 'Flag Reviewed'), ('run_closed', 'Run Closed'), ('first_look', 'First Look'), ('first_look_ended', 'First Look Ended'), ('recommended', 'Recommended'), ('expired', 'Expired'), ('question_asked', 'Question Asked'), ('question_answered', 'Question Answered')], max_length=32),
        ),
        migrations.AddConstraint(
            model_name='escalation',
            constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['pending', 'claimed', 'awaiting_agent'])), fields=('run',), name='escalation_one_open_per_run'),
        ),
    ]
