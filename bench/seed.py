"""What the seeding bench scripts share: the start-up on a bench database of their own, and
INSERT ... SELECT statements whose column list comes from the model, so that a column the model
gains is filled as the ORM would fill it, or refused by name, never left to a NOT NULL error
half-way through a million-row run (tests/test_bench_seeders.py runs every seeder on a few rows).

Django is imported inside the functions: each script sets its environment up first.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from lib import RESULTS, ROOT

# What a generated row of each model is unless its bench says otherwise, over a temporary table
# `g` with the columns i (from 1), agent_id, created_at and confidence: escalation i in run i,
# decided by a reviewer, option "a" of two, the claim event before.
GENERATED: dict[str, dict[str, str]] = {
    "run": {"id": "i", "agent_id": "agent_id", "run_id": "'bench-' || i", "created_at": "created_at"},
    "escalation": {
        "id": "md5(i::text)::uuid", "agent_id": "agent_id", "run_id": "i",
        "title": "'Bench escalation ' || i", "uncertainty": "'Which way?'", "reason": "'approach_choice'",
        "confidence": "confidence", "history": "'[]'::jsonb",
        "options": """'[{"key": "a", "label": "A", "recommended": true}, {"key": "b", "label": "B"}]'::jsonb""",
        "impact": "'medium'", "created_at": "created_at", "updated_at": "created_at",
    },
    "decision": {
        "escalation_id": "md5(i::text)::uuid", "agent_id": "agent_id", "seq": "i", "kind": "'option'",
        "option_key": "'a'", "decided_by_type": "'human'", "decided_by_name": "'reviewer-' || (i %% 8)",
    },
    "event": {"escalation_id": "md5(i::text)::uuid", "kind": "'claimed'", "actor": "'reviewer-' || (i %% 8)"},
    # The decision's webhook, sent on the first attempt an hour after the escalation came.
    "delivery": {
        "id": "md5('d' || i::text)::uuid", "escalation_id": "md5(i::text)::uuid", "agent_id": "agent_id",
        "url": "'http://127.0.0.1:9/resume'", "payload": "'{}'::jsonb", "status": "'delivered'",
        "attempt_count": "1", "claim_count": "1", "next_attempt_at": "created_at + interval '1 hour'",
        "created_at": "created_at + interval '1 hour'", "delivered_at": "created_at + interval '1 hour 1 second'",
    },
}


class SeederOutOfDate(Exception):
    """A seeder names a column the model no longer has, or leaves out one it cannot fill."""


def bench_db(default: str) -> str:
    """The script's database: BENCH_DB when set (beside another checkout's run), else its own."""
    return os.environ.get("BENCH_DB", default)


def start_django(db: str, name: str, *, redis_url: str | None = None, static: bool = True) -> None:
    """Production settings (DEBUG off, psycopg's pool) on `db`; migrate, and collect the static
    files when pages are rendered (DEBUG=0 serves hashed names from the manifest)."""
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
        DEBUG="0",
        SECRET_KEY=f"bench-{name}-" + "k" * 40,
        ALLOWED_HOSTS="testserver,127.0.0.1",
        SECURE_SSL_REDIRECT="0",  # plain http on 127.0.0.1
        HANDOFF_VAR_DIR=str(RESULTS / f"var-{name}"),
        DJANGO_SETTINGS_MODULE="handoff_site.settings",
    )
    if redis_url is None:
        os.environ.pop("REDIS_URL", None)
    else:
        os.environ["REDIS_URL"] = redis_url
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    if static:
        call_command("collectstatic", "--noinput", verbosity=0)
    call_command("migrate", verbosity=0)


def insert_select(model: Any, values: Mapping[str, str], source: str, *, template: str | None = None) -> str:
    """`INSERT INTO <model's table> (...) SELECT ... FROM source`, every concrete column accounted for.

    `values`: a column's SQL per row of `source`. Any other column: an auto primary key, its
    sequence; with `template`, that row alias's value (a row the service made, joined into
    `source`); else the database's default (db_default), or the field's default as the ORM
    writes it (`get_default()`: '' for text without one), one literal for every row, or NULL
    when nullable. A column left without any of these, a unique one the template or a default
    would give every row alike (uuid4 once would collide) or a value for a column the model
    does not have raises SeederOutOfDate, naming it.
    The statement is run with parameters (`%%` for a literal %): cursor.execute(sql, params).
    """
    from django.db import connection
    from django.db.backends.postgresql.operations import DatabaseOperations
    from django.db.models import NOT_PROVIDED, AutoField, BigAutoField, SmallAutoField

    ops = cast(DatabaseOperations, connection.ops)  # the benches run on PostgreSQL only
    meta = model._meta
    fields = meta.concrete_fields
    unknown = set(values) - {f.column for f in fields}
    if unknown:
        raise SeederOutOfDate(f"{meta.db_table} has no column {', '.join(sorted(unknown))}")
    columns, selected = [], []
    for f in fields:
        if f.column in values:
            expression = values[f.column]
        elif isinstance(f, AutoField | BigAutoField | SmallAutoField):
            continue  # its sequence
        elif (f.unique or f.primary_key) and (template is not None or f.has_default()):
            raise SeederOutOfDate(f"{meta.db_table}.{f.column} is unique: the seeder must give each row its value")
        elif template is not None:
            expression = f"{template}.{f.column}"
        elif f.db_default is not NOT_PROVIDED:
            continue
        else:
            default = f.get_default()
            if default is None:
                if f.null:
                    continue
                raise SeederOutOfDate(f"{meta.db_table}.{f.column} is NOT NULL without a default: give it a value")
            literal = ops.compose_sql("%s", [f.get_db_prep_save(default, connection)])
            expression = literal.replace("%", "%%")
        columns.append(f.column)
        selected.append(expression)
    return f"INSERT INTO {meta.db_table} ({', '.join(columns)}) SELECT {', '.join(selected)} FROM {source}"


def generated(model: Any, where: str = "", **values: str) -> str:
    """insert_select of a row of `model` per row of `g` (`where`: e.g. "WHERE r1 >= 0.02"):
    GENERATED's values for it, then `values`."""
    return insert_select(model, GENERATED.get(model._meta.model_name, {}) | values, f"g {where}")


def execute(statements: Iterable[str], params: Mapping[str, Any]) -> float:
    """Each statement in turn on Django's connection (the bench's database, or a test's); seconds."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement, params)
    return time.monotonic() - started


def agent_params(count: int, domains: list[str]) -> dict[str, Any]:
    """`count` agents made by the service (`bench-agent-NN`, their domains in turn), as the
    statements' parameters: `agents` (ids), `domains`, `n_agents`."""
    from escalations import services

    agents = [
        services.agent_create(name=f"bench-agent-{i:02d}", domain=domains[i % len(domains)]).agent
        for i in range(count)
    ]
    return {"agents": [a.pk for a in agents], "domains": [a.domain for a in agents], "n_agents": count}


def analyze(vacuum: bool = False) -> None:
    """What autovacuum does after a bulk load: statistics (and with `vacuum` the visibility map)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
