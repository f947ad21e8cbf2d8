import django.db.models.deletion
from django.db import migrations, models


def rebuild_all(apps, schema_editor):
    """Existing days have no machine agreement and no expired count: rebuild every day."""
    apps.get_model("insights", "RollupState").objects.update(refreshed_at=None)


class Migration(migrations.Migration):

    dependencies = [
        ("escalations", "0004_machine_first_look_receipts"),
        ("insights", "0002_ungated_escalations"),
    ]

    operations = [
        migrations.AddField(
            model_name="outcomerollup",
            name="expired",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.CreateModel(
            name="MachineRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("domain", models.SlugField(max_length=64)),
                ("archived", models.BooleanField(default=False)),
                ("reviewer", models.CharField(max_length=150)),
                ("recommended", models.PositiveIntegerField(default=0)),
                ("recommended_agreed", models.PositiveIntegerField(default=0)),
                ("decided", models.PositiveIntegerField(default=0)),
                ("decided_agreed", models.PositiveIntegerField(default=0)),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="escalations.agent"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("day", "agent", "domain", "archived", "reviewer"), name="machine_rollup_key"
                    )
                ],
            },
        ),
        migrations.RunPython(rebuild_all, migrations.RunPython.noop),
    ]
