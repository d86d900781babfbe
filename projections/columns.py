"""How a field of `domain.fields` is kept in a read table: its column's SQL type and the
conversions of its value to the column and back, the same on SQLite and PostgreSQL.

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
from projections.base import Cursor, dump_list, load_list, micros, moment

Convert = Callable[[Any], Any]


def _keep(value: Any) -> Any:
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(load_list(text))


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


@cache
def _from_column(field: Field) -> Convert:
    kind = field.kind
    if kind is datetime:
        return moment
    if kind == Names:
        return _names
    if kind is bool:  # SQLite hands booleans back as integers
        return bool
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind
    return _keep


def to_column(field: Field, value: Any) -> Any:
    """A field's value as its column holds it."""
    return None if value is None else _to_column(field)(value)


def from_column(field: Field, value: Any) -> Any:
    """A column's value as the field's value."""
    return None if value is None else _from_column(field)(value)


def decoders(fields: Sequence[Field]) -> tuple[tuple[str, Convert], ...]:
    """How to read each of these fields from its column (worked out once per table)."""
    return tuple((f.name, _nullable(_from_column(f)) if f.nullable else _from_column(f))
                 for f in fields)


def _nullable(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def record_of(decoding: tuple[tuple[str, Convert], ...], row: dict[str, Any]
              ) -> dict[str, Any]:
    """A row read by name, its columns turned into the fields' values in place (other
    columns kept as they are)."""
    for name, convert in decoding:
        row[name] = convert(row[name])
    return row


def named(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows selected as `columns` (in that order), each as a mapping by column name."""
    return [dict(zip(columns, row, strict=True)) for row in rows]


def select(cursor: Cursor, columns: Sequence[str], sql: str,
           params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Runs `SELECT <columns> <sql>` and gives each row as a mapping by column name."""
    return named(columns, cursor.execute(f"SELECT {', '.join(columns)} {sql}",
                                         params).fetchall())
