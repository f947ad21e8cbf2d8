"""The shipped domain policies, each with its first saved version (as policy_create saves)."""

from django.db import migrations

DEFAULTS = [
    # domain, autonomous, flag, escalate, description
    ("default", 0.90, 0.70, 0.50, "Anything without a domain of its own."),
    ("code", 0.85, 0.70, 0.50, "Code changes: autonomous a little earlier, scope watched."),
    ("db-migration", 0.95, 0.80, 0.60, "Database migrations: people look at almost everything."),
    ("research", 0.70, 0.55, 0.40, "Research and reading: mistakes are cheap to undo."),
]
# escalations.policy.RULE_FIELDS as of this migration (a migration does not follow the code).
RULE_FIELDS = ("autonomous_threshold", "flag_threshold", "escalate_threshold", "retry_cap",
               "scope_tolerance", "auto_decide", "novelty_escalates", "respond_minutes_tier3",
               "respond_minutes_tier4", "approvals_required")


def seed(apps, schema_editor):
    """Idempotent: tests/conftest.py runs it again after a transactional test's flush."""
    Policy = apps.get_model("escalations", "Policy")
    PolicyVersion = apps.get_model("escalations", "PolicyVersion")
    for domain, autonomous, flag, escalate, description in DEFAULTS:
        policy, _ = Policy.objects.get_or_create(
            domain=domain,
            defaults={
                "autonomous_threshold": autonomous,
                "flag_threshold": flag,
                "escalate_threshold": escalate,
                "description": description,
            },
        )
        rules = {name: getattr(policy, name) for name in RULE_FIELDS}
        PolicyVersion.objects.get_or_create(
            policy=policy,
            version=policy.version,
            defaults={
                "rules": {**rules, "description": policy.description, "managers": []},
                "note": "shipped with Handoff",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("escalations", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
