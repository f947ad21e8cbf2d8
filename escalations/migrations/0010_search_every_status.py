"""On PostgreSQL, the queue search's trigram indexes cover every escalation, not only the
open ones (0003).

The search (reviews.queue.matching: every word, case-insensitive, in the title or the
uncertainty) narrows every tab and every tab count, and most tabs hold closed escalations
(flagged, decided today, closed): with open-only indexes those statements read every
candidate row and tested the text (seconds at 550,000 closed escalations, bench/README.md).
The expressions are the ones Django's `icontains` writes, `UPPER(col::text)`, so the planner
matches them. Built CONCURRENTLY (writes go on while a large table is indexed), so the
migration is not atomic; SQLite, and a PostgreSQL without pg_trgm, skip it (the search
then scans: correct, slower).
"""

from django.db import migrations

OPEN = "status IN ('pending', 'claimed')"
COLUMNS = {"title": ("esc_open_title_trgm_idx", "esc_title_trgm_idx"),
           "uncertainty": ("esc_open_uncertainty_trgm_idx", "esc_uncertainty_trgm_idx")}


def _trigrams(schema_editor) -> bool:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        return cursor.fetchone() is not None


def _build(schema_editor, name: str, column: str, where: str = "") -> None:
    # An interrupted concurrent build leaves an invalid index behind: drop it first.
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY {name} ON escalations_escalation "
        f"USING gin (UPPER({column}::text) gin_trgm_ops){where}"
    )


def every_status(apps, schema_editor) -> None:
    if not _trigrams(schema_editor):
        return
    for column, (open_only, every) in COLUMNS.items():
        _build(schema_editor, every, column)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {open_only}")


def open_only(apps, schema_editor) -> None:
    if not _trigrams(schema_editor):
        return
    for column, (open_only, every) in COLUMNS.items():
        _build(schema_editor, open_only, column, f" WHERE {OPEN}")
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {every}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("escalations", "0009_flagged_awaiting_look")]

    operations = [migrations.RunPython(every_status, open_only)]
