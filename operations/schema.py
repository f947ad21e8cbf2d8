"""Migration operations for a live database: indexes built and dropped CONCURRENTLY.

compose's `migrate` runs while the release before still serves, so an index on a big table
is built without the lock that would stop its writes. A migration that uses these says
`atomic = False` (PostgreSQL builds such an index outside a transaction). Elsewhere (SQLite,
the embedded mode) they are Django's AddIndex and RemoveIndex.
"""

from django.db import migrations


def _concurrently(schema_editor) -> bool:
    return bool(schema_editor.connection.vendor == "postgresql")


class AddIndexConcurrently(migrations.AddIndex):
    """AddIndex, CONCURRENTLY on PostgreSQL. A build that was interrupted leaves an invalid
    index of the same name behind: it is dropped first, so the migration can run again."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _concurrently(schema_editor):
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
            )
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            _remove(schema_editor, model, self.index)


class RemoveIndexConcurrently(migrations.RemoveIndex):
    """RemoveIndex, CONCURRENTLY on PostgreSQL (a plain DROP INDEX waits for, and then
    blocks, every query of its table)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            _remove(schema_editor, model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            AddIndexConcurrently(self.model_name, index).database_forwards(
                app_label, schema_editor, from_state, to_state
            )


def _remove(schema_editor, model, index) -> None:
    if _concurrently(schema_editor):
        schema_editor.remove_index(model, index, concurrently=True)
    else:
        schema_editor.remove_index(model, index)
