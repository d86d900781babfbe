"""How a field of `domain.fields` is kept in a read table: its column's SQL type, the
conversion of its value to the column, and how the column is written in an answer, the
same on SQLite and PostgreSQL.

Moments are whole microseconds since the epoch (sortable alike everywhere), lists of names
JSON text, enums their value. Rows are read by column name: `select()` names the columns
it asks for and hands each row back as a mapping of those names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

from domain.fields import Field, Names
from projections.base import Cursor, dump_list, load_list, micros, rfc3339_micros

Convert = Callable[[Any], Any]


def _keep(value: Any) -> Any:
    return value


def sql_type(field: Field) -> str:
    kind = field.kind
    if kind is datetime:
        base = "BIGINT"
    elif kind is bool:
        base = "BOOLEAN"
    elif kind is int:
        base = "INTEGER"
    else:  # text, names (JSON text) and enums
        base = "TEXT"
    return base if field.nullable else f"{base} NOT NULL"


def column_definitions(fields: Sequence[Field]) -> list[str]:
    return [f"{f.name} {sql_type(f)}" for f in fields]


@cache
def _to_column(field: Field) -> Convert:
    kind = field.kind
    if kind is datetime:
        return micros
    if kind == Names:
        return dump_list
    if isinstance(kind, type) and issubclass(kind, Enum):
        return lambda value: kind(value).value
    return _keep


def to_column(field: Field, value: Any) -> Any:
    """A field's value as its column holds it."""
    return None if value is None else _to_column(field)(value)


def json_writer(field: Field) -> Convert | None:
    """How the field's column is written in an answer (as `projections.incident_view`
    writes the field's value); None when the column is written as it is (text, numbers,
    and enums as their value)."""
    kind = field.kind
    if kind is datetime:
        write: Convert = rfc3339_micros
    elif kind == Names:
        write = load_list
    elif kind is bool:  # SQLite hands booleans back as integers
        write = bool
    else:
        return None
    return _nullable(write) if field.nullable else write


def _nullable(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def named(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows selected as `columns` (in that order), each as a mapping by column name."""
    return [dict(zip(columns, row, strict=True)) for row in rows]


def select(cursor: Cursor, columns: Sequence[str], sql: str,
           params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Runs `SELECT <columns> <sql>` and gives each row as a mapping by column name."""
    return named(columns, cursor.execute(f"SELECT {', '.join(columns)} {sql}",
                                         params).fetchall())
