"""On PostgreSQL, a trigram GiST index over decided escalations' titles for precedents
(escalations.precedents: `title % q ORDER BY title <-> q`). Needs pg_trgm, which migration
0003 creates where the role may; without it precedents fall back to a short scan."""

from django.db import migrations

DECIDED = "status IN ('decided', 'resumed')"
NAME = "esc_decided_title_trgm_idx"


def create_index(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {NAME} ON escalations_escalation "
        f"USING gist (title gist_trgm_ops) WHERE {DECIDED}"
    )


def drop_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("escalations", "0005_calibration")]

    operations = [migrations.RunPython(create_index, drop_index)]
