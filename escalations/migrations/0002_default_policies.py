from django.db import migrations

DEFAULTS = [
    # domain, autonomous, flag, escalate, description
    ("default", 0.90, 0.70, 0.50, "Anything without a domain of its own."),
    ("code", 0.85, 0.70, 0.50, "Code changes: autonomous a little earlier, scope watched."),
    ("db-migration", 0.95, 0.80, 0.60, "Database migrations: people look at almost everything."),
    ("research", 0.70, 0.55, 0.40, "Research and reading: mistakes are cheap to undo."),
]


def seed(apps, schema_editor):
    Policy = apps.get_model("escalations", "Policy")
    for domain, autonomous, flag, escalate, description in DEFAULTS:
        Policy.objects.get_or_create(
            domain=domain,
            defaults={
                "autonomous_threshold": autonomous,
                "flag_threshold": flag,
                "escalate_threshold": escalate,
                "description": description,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("escalations", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
