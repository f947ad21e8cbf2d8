"""Migrations and rolling deploys: a NOT NULL column the previous release leaves out needs a
database default, and an index on a table that exists is built CONCURRENTLY.

docker-compose's `migrate` runs while the previous release's web and worker still serve; they
are replaced after it succeeds. Their INSERTs name only the columns their models know, so a
column added NOT NULL without `db_default` fails every insert of the old code into that table
until it is replaced (notifications 0005 did that to every notification; 0006 gave the column
its default). A Python `default` does not help: Django sets it on the column only while adding
it, then drops it. The same holds for a nullable column made NOT NULL, and there `db_default`
does not help either: the old code names the column and sends NULL for an unset value.

Every migration of the project's own apps is read through Django's MigrationLoader and checked
against the project state just before it, which stands for the previous release's models.
Migrations that shipped cannot change, so those that broke the rule before it was checked are
listed in SHIPPED and the test fails only for new ones.

A plain AddIndex on a table that exists locks its writes for the whole build (seconds to
minutes on escalations at 1,000,000 rows), so the old release's writes wait: such an index is
built with operations.schema.AddIndexConcurrently in a non-atomic migration. Constraints (a
unique one builds its index plainly) and indexes made in RunSQL are not checked.
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from django.apps import apps
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState

ROOT = Path(__file__).resolve().parent.parent

# (app, migration, "model.field") that broke the rule before it was checked: they shipped, and
# migrations freeze (a database that applied one keeps it). Each failed the previous release's
# inserts into its table while `migrate` ran; nothing new may join them.
SHIPPED = {
    # Policies created on the old release's policies page.
    ("escalations", "0004_machine_first_look_receipts", "policy.first_look_seconds"),
    ("escalations", "0004_machine_first_look_receipts", "policy.machine_tiers"),
    ("escalations", "0005_calibration", "policy.reason_floors"),
    ("escalations", "0005_calibration", "policy.tier_by_calibrated"),
    # Every escalation the agents created through the old release.
    ("escalations", "0007_questions_to_the_agent", "escalation.question_by"),
    ("escalations", "0007_questions_to_the_agent", "escalation.question_text"),
    ("escalations", "0007_questions_to_the_agent", "escalation.waited_on_agent"),
    ("escalations", "0009_flagged_awaiting_look", "escalation.awaiting_look"),
    # The old release's rollups.
    ("insights", "0002_ungated_escalations", "activityrollup.ungated_escalations"),
    ("insights", "0003_machine_agreement_expired", "outcomerollup.expired"),
    # Notifications and preferences the old release wrote (0006 gave slack_shown_status a
    # db_default, after the fact).
    ("notifications", "0003_inbound_actions", "notificationpreference.slack_user_id"),
    ("notifications", "0004_slack_message_question_answered", "notification.slack_channel"),
    ("notifications", "0004_slack_message_question_answered", "notification.slack_ts"),
    ("notifications", "0005_slack_shown_status", "notification.slack_shown_status"),
    # Machine reviewers the old release made (reviewer_token --machine).
    ("people", "0002_machine_webhook", "profile.signing_secret"),
    ("people", "0002_machine_webhook", "profile.webhook_url"),
}


# (app, migration, "model.index") built plainly on a table that existed, before the rule was
# checked: each held the escalations' writes while it built.
SHIPPED_PLAIN_INDEXES = {
    ("escalations", "0008_precedent_candidates", "escalation.esc_decided_agent_idx"),
    ("escalations", "0008_precedent_candidates", "escalation.esc_decided_domain_idx"),
    ("escalations", "0009_flagged_awaiting_look", "escalation.esc_flagged_priority_idx"),
    ("escalations", "0009_flagged_awaiting_look", "escalation.esc_flagged_age_idx"),
    ("escalations", "0009_flagged_awaiting_look", "escalation.esc_flagged_uncertain_idx"),
    ("escalations", "0009_flagged_awaiting_look", "escalation.esc_flagged_deadline_idx"),
}


def database_operations(operations: Sequence[Operation]) -> Iterator[Operation]:
    """What the migration does to the database: a SeparateDatabaseAndState's database side."""
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            yield from database_operations(operation.database_operations)
        else:
            yield operation


def old_insert_may_send_null(old: models.Field, new: models.Field) -> bool:
    """What the old code's INSERT puts in a column its model knows, when nothing sets it: the
    Python default, else DEFAULT (the new column's db_default, if any), else NULL."""
    if old.has_default():
        return old.default is None
    if old.has_db_default():
        return not new.has_db_default()
    return old.null


def breaks_old_inserts(
    operation: migrations.AddField | migrations.AlterField, table: ModelState | None
) -> bool:
    """Whether the previous release's inserts into the table (None: it is new) may fail NOT NULL
    after this operation."""
    field = operation.field
    if table is None or field.null or field.many_to_many:
        return False
    old = table.fields.get(operation.name)
    if old is None:  # the old code leaves the column out
        return not field.has_db_default()
    return old_insert_may_send_null(old, field)


def breaches(app: str, migration: migrations.Migration, before: ProjectState) -> set[str]:
    """The "model.field"s of a migration that the previous release's inserts may fail on;
    `before` is the project state just before it."""
    return {
        f"{operation.model_name_lower}.{operation.name}"
        for operation in database_operations(migration.operations)
        if isinstance(operation, migrations.AddField | migrations.AlterField)
        and breaks_old_inserts(operation, before.models.get((app, operation.model_name_lower)))
    }


def plain_indexes(app: str, migration: migrations.Migration, before: ProjectState) -> set[str]:
    """The "model.index"es a migration builds plainly (not CONCURRENTLY) on a table that exists."""
    from operations.schema import AddIndexConcurrently

    return {
        f"{operation.model_name_lower}.{operation.index.name}"
        for operation in database_operations(migration.operations)
        if isinstance(operation, migrations.AddIndex)
        and not isinstance(operation, AddIndexConcurrently)
        and (app, operation.model_name_lower) in before.models
    }


def our_apps() -> set[str]:
    """The project's own apps: the packages at the top of the repository."""
    return {config.label for config in apps.get_app_configs() if Path(config.path).parent == ROOT}


# A check of one migration against the state before it: what it finds.
Rule = Callable[[str, migrations.Migration, ProjectState], set[str]]


def project_breaches(rule: Rule | None = None) -> set[tuple[str, str, str]]:
    """(app, migration, name) of every migration of our apps that `rule` (breaches by default)
    finds something in."""
    rule = rule or breaches
    loader = MigrationLoader(None, ignore_no_migrations=True)
    ours = our_apps()
    found: set[tuple[str, str, str]] = set()
    for app, name in sorted(loader.graph.nodes):
        if app in ours:
            before = loader.project_state((app, name), at_end=False)
            found |= {(app, name, what) for what in rule(app, loader.graph.nodes[app, name], before)}
    return found


def test_no_new_migration_adds_a_not_null_column_the_previous_release_leaves_out() -> None:
    new = project_breaches() - SHIPPED
    assert not new, (
        "NOT NULL without a database default on a table the previous release still inserts into"
        f" while `migrate` runs: {sorted(new)}. Give the field db_default=<constant> (catalog only"
        " on PostgreSQL), or null=True"
    )


def test_the_shipped_list_names_only_what_the_migrations_do() -> None:
    assert project_breaches() >= SHIPPED


def test_no_new_migration_builds_an_index_plainly_on_a_table_that_exists() -> None:
    new = project_breaches(plain_indexes) - SHIPPED_PLAIN_INDEXES
    assert not new, (
        f"an index built plainly on a table the previous release still writes: {sorted(new)}."
        " Use operations.schema.AddIndexConcurrently in a migration with atomic = False"
    )
    assert project_breaches(plain_indexes) >= SHIPPED_PLAIN_INDEXES


def test_an_index_on_an_existing_table_is_built_concurrently() -> None:
    from operations.schema import AddIndexConcurrently

    index = models.Index(fields=["kind"], name="order_kind_idx")
    assert plain_indexes("shop", migration(migrations.AddIndex("order", index)), BEFORE) == {
        "order.order_kind_idx"
    }
    assert plain_indexes("shop", migration(AddIndexConcurrently("order", index)), BEFORE) == set()
    new_table = [
        migrations.CreateModel("refund", [("id", models.AutoField(primary_key=True))]),
        migrations.AddIndex("refund", models.Index(fields=["id"], name="refund_idx")),
    ]
    assert plain_indexes("shop", migration(*new_table), BEFORE) == set()


def test_our_apps_are_the_repositorys() -> None:
    assert {"people", "escalations", "reviews", "insights", "notifications"} <= our_apps()
    assert "auth" not in our_apps()


# The checker itself, on made-up migrations of a made-up app: it fails where it should.


def orders(**fields: models.Field) -> ProjectState:
    """The project state before the made-up migration: one table, shop.order."""
    state = ProjectState()
    state.add_model(
        ModelState("shop", "order", [("id", models.AutoField(primary_key=True)), *fields.items()])
    )
    return state


BEFORE = orders(
    note=models.TextField(null=True),
    memo=models.TextField(null=True, default=""),
    state=models.CharField(max_length=9, db_default="new"),
    kind=models.CharField(max_length=9),
)


def migration(*operations: Operation) -> migrations.Migration:
    made = type("Migration", (migrations.Migration,), {"operations": list(operations)})
    return made("0002_change", "shop")


@pytest.mark.parametrize(
    ("operation", "field"),
    [
        # A Python default is set on the column while it is added, then dropped.
        (migrations.AddField("order", "paid", models.BooleanField(default=False)), "paid"),
        (migrations.AddField("order", "code", models.CharField(max_length=5, blank=True)), "code"),
        (
            migrations.SeparateDatabaseAndState(
                database_operations=[
                    migrations.AddField("order", "paid", models.BooleanField(default=False))
                ]
            ),
            "paid",
        ),
        # The old code names `note` and sends NULL: the new database default is not used.
        (migrations.AlterField("order", "note", models.TextField(db_default="")), "note"),
        # The old code sends DEFAULT for `state`, which is NULL once the default is gone.
        (migrations.AlterField("order", "state", models.CharField(max_length=9)), "state"),
    ],
)
def test_a_column_the_old_inserts_leave_null_breaks_the_rule(
    operation: Operation, field: str
) -> None:
    assert breaches("shop", migration(operation), BEFORE) == {f"order.{field}"}


@pytest.mark.parametrize(
    "operations",
    [
        [
            migrations.AddField(
                "order", "paid", models.BooleanField(default=False, db_default=False)
            )
        ],
        [migrations.AddField("order", "paid_at", models.DateTimeField(null=True))],
        # A table made in the same migration: no old code inserts there.
        [
            migrations.CreateModel("refund", [("id", models.AutoField(primary_key=True))]),
            migrations.AddField("refund", "amount", models.IntegerField()),
        ],
        # The old code sends its Python default, or DEFAULT to a column that keeps one.
        [migrations.AlterField("order", "memo", models.TextField(default=""))],
        [
            migrations.AlterField(
                "order", "state", models.CharField(max_length=9, db_default="open")
            )
        ],
        # Only the choices change on a column that was NOT NULL already.
        [
            migrations.AlterField(
                "order", "kind", models.CharField(max_length=9, choices=[("a", "A")])
            )
        ],
        # The model's state alone: the database keeps what it had.
        [
            migrations.SeparateDatabaseAndState(
                state_operations=[
                    migrations.AddField("order", "paid", models.BooleanField(default=False))
                ]
            )
        ],
    ],
)
def test_a_column_the_old_inserts_fill_keeps_the_rule(operations: list[Operation]) -> None:
    assert breaches("shop", migration(*operations), BEFORE) == set()
