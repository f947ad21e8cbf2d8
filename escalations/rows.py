"""Model instances from hand-written SQL, for the hot paths (an agent's create, a decide).

The ORM compiles every query anew: 0.4-1.4 ms of CPU for each read of a create or a decide,
more than the round trip itself. A statement written here selects a model's columns by
name (`columns`), runs once prepared, and each value goes through the converters the ORM
itself would apply to that field (`instance`), so the instances are the ORM's own. Every
statement written with these is held equal to its ORM meaning by tests/test_rows.py.
"""

from collections.abc import Callable, Sequence
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
