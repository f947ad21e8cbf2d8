from django.db import migrations

FIELDS = (
    "autonomous_threshold",
    "flag_threshold",
    "escalate_threshold",
    "retry_cap",
    "scope_tolerance",
    "auto_decide",
    "novelty_escalates",
    "respond_minutes_tier3",
    "respond_minutes_tier4",
    "approvals_required",
)


def snapshot(apps, schema_editor):
    """Every existing policy gets a saved version for the version it is at."""
    Policy = apps.get_model("escalations", "Policy")
    PolicyVersion = apps.get_model("escalations", "PolicyVersion")
    for policy in Policy.objects.all():
        PolicyVersion.objects.get_or_create(
            policy=policy,
            version=policy.version,
            defaults={
                "rules": {name: getattr(policy, name) for name in FIELDS},
                "note": "the policy as it was when versions began",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("escalations", "0004_governance_and_review")]

    operations = [migrations.RunPython(snapshot, migrations.RunPython.noop)]
