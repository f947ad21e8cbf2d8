"""Model instances to and from hand-written SQL, for the hot paths (an agent's create, a
decide).

The ORM compiles every query anew: 0.4-1.4 ms of CPU for each read of a create or a decide,
more than the round trip itself. A statement written here selects a model's columns by
name (`columns`), runs once prepared, and each value goes through the converters the ORM
itself would apply to that field (`instance`), so the instances are the ORM's own; `insert`
writes a new instance as save(force_insert=True) does (each field's pre_save and
get_db_prep_save) with a statement built once per model. Every statement written with
these is held equal to its ORM meaning by tests/test_rows.py.
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)

Converter = Callable[[Any, Any, Any], Any]
_converters: dict[tuple[type[Model], str], list[tuple[int, list[Converter], Any]]] = {}


def columns(model: type[Model], alias: str) -> str:
    """`alias."column", ...` for every concrete field of `model`, in field order."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(str(field.column))}" for field in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def _field_converters(model: type[Model]) -> list[tuple[int, list[Converter], Any]]:
    """(index, converters, expression) of each field that has any: the backend's and the
    field's, as SQLCompiler.get_converters gathers them for a column."""
    key = (model, connection.vendor)
    found = _converters.get(key)
    if found is None:
        found = []
        for index, field in enumerate(model._meta.concrete_fields):
            col = field.get_col(model._meta.db_table)
            converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if converters:
                found.append((index, converters, col))
        _converters[key] = found
    return found


def instance(model: type[M], row: Sequence[Any], start: int = 0) -> M:
    """The `model` instance of the columns `row[start:start + width(model)]` (as `columns`
    selected them), converted as the ORM converts them."""
    values = list(row[start : start + width(model)])
    for index, converters, col in _field_converters(model):
        value = values[index]
        for convert in converters:
            value = convert(value, col, connection)
        values[index] = value
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], values)


@cache
def _insert_sql(model: type[Model], with_pk: bool, on_conflict: str) -> "tuple[str, list[Field[Any, Any]], list[Field[Any, Any]]]":
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and (with_pk or f is not meta.auto_field)]
    returning = list(meta.db_returning_fields)
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(f.column)) for f in fields)
    sql = f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 (the model's own table and columns)
    if on_conflict:
        sql += f" ON CONFLICT {on_conflict}"
    if returning:
        sql += f" RETURNING {', '.join(quote(str(f.column)) for f in returning)}"
    return sql, fields, returning


def insert(obj: Model, *, on_conflict: str = "") -> None:
    """Write a new `obj` as obj.save(force_insert=True) would, its database-set columns (the
    auto pk) read back. `on_conflict` is what follows ON CONFLICT, for an upsert
    (`(a, b) DO UPDATE SET b = EXCLUDED.b`, which still returns the row's pk)."""
    model = type(obj)
    with_pk = obj.pk is not None
    sql, fields, returning = _insert_sql(model, with_pk, on_conflict)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            for field, value in zip(returning, cursor.fetchone(), strict=True):
                setattr(obj, field.attname, value)
    mark_saved(obj)


def _insert_fields(model: type[Model], taken: frozenset[str]) -> "list[Field[Any, Any]]":
    meta = model._meta
    return [f for f in meta.local_concrete_fields if not f.generated and (f.attname in taken or f is not meta.auto_field)]


@cache
def _insert_select_sql(model: type[Model], taken: tuple[tuple[str, str], ...], source: str, nulls: tuple[bool, ...]) -> str:
    exprs = dict(taken)
    fields = _insert_fields(model, frozenset(exprs))
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(f.column)) for f in fields)
    values = iter(nulls)
    select = ", ".join(exprs[f.attname] if f.attname in exprs else "NULL" if next(values) else "%s" for f in fields)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT {select}"
    if source:
        sql += f" FROM {source}"
    return sql


def insert_select(obj: Model, source: str, taken: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    """(sql, params) of an INSERT of `obj` as insert() writes it (each field's pre_save and
    get_db_prep_save), one row per row of `source` (a CTE of the caller's statement; ""
    for one row), the attnames in `taken` set to those SQL expressions over it instead
    (`{"run_id": "run.id"}`). PostgreSQL types each value by its column, as in VALUES.
    A NULL is written in the statement, not sent: a create's statement keeps under
    psycopg's 50 parameters, past which it converts the statement anew on every call
    (MAX_CACHED_STATEMENT_PARAMS). The caller appends ON CONFLICT or RETURNING, runs it,
    sets what it returns on `obj`, then mark_saved(obj)."""
    taken = taken or {}
    fields = [f for f in _insert_fields(type(obj), frozenset(taken)) if f.attname not in taken]
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    nulls = tuple(value is None for value in values)
    sql = _insert_select_sql(type(obj), tuple(sorted(taken.items())), source, nulls)
    return sql, [value for value in values if value is not None]


def mark_saved(obj: Model) -> None:
    """`obj` as the ORM leaves an instance it has just written."""
    obj._state.adding = False
    obj._state.db = connection.alias


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a write; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def prep(model: type[Model], name: str, value: Any) -> Any:
    """`value` as the ORM sends it for the field `name` of `model` (a UUID or a time in
    the form this backend stores)."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field):
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field.get_db_prep_save(value, connection)


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def one(model: type[M], sql: str, params: Sequence[Any]) -> M | None:
    """The first row of `sql` (which selects `columns(model, ...)`) as a `model`, or None."""
    row = fetch_one(sql, params)
    return instance(model, row) if row is not None else None
