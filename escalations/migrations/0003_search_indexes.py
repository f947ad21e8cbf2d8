"""On PostgreSQL, trigram indexes for the queue's free-text search.

The search (reviews.filters: every word, case-insensitive, in the title or the uncertainty)
is `UPPER(col::text) LIKE UPPER('%word%')`, which only a trigram index can serve. pg_trgm
ships with PostgreSQL but creating an extension may need a privilege the app's role lacks:
then the search stays a scan (correct, slower) and the migration says so.
"""

import logging

from django.db import DatabaseError, migrations, transaction

log = logging.getLogger(__name__)

OPEN = "status IN ('pending', 'claimed')"
TRIGRAM_INDEXES = {
    "esc_open_title_trgm_idx": "title",
    "esc_open_uncertainty_trgm_idx": "uncertainty",
}


def create_trigram_indexes(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:
        log.warning("pg_trgm is not available: the queue's search will scan instead of using an index")
        return
    for name, column in TRIGRAM_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON escalations_escalation "
            f"USING gin (UPPER({column}::text) gin_trgm_ops) WHERE {OPEN}"
        )


def drop_trigram_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("escalations", "0002_default_policies")]

    operations = [migrations.RunPython(create_trigram_indexes, drop_trigram_indexes)]
