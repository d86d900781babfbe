"""What every projection is: a named read model with its own tables and one handler per
event type, writing through the cursor of the transaction that also moves its position."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from domain.incident import IncidentEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    @property
    def rowcount(self) -> int: ...


def micros(moment: datetime) -> int:
    """A moment as whole microseconds since the epoch: sortable the same on every store."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def moment(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def rfc3339(moment: datetime) -> str:
    """A moment as answers write it: RFC 3339 in UTC, with `Z`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def rfc3339_micros(us: int) -> str:
    """A moment kept as microseconds since the epoch, as answers write it."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def dump_list(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def load_list(text: str) -> list[str]:
    loaded: list[str] = json.loads(text)
    return loaded


class Projection:
    """A read model. Subclasses list their tables (created with `{suffix}` after each
    table name, so a rebuild can build them aside) and register handlers on `process`."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    # Raised when what the rows hold changes while the tables do not: another shape, so an
    # existing deployment rebuilds the read model (0 adds nothing to the shape).
    revision: ClassVar[int] = 0

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def t(self, table: str) -> str:
        """The table's name in this instance (live, or built aside)."""
        assert table in self.tables, table
        return table + self.suffix

    def create_statements(self, dialect: str) -> list[str]:
        """CREATE TABLE / INDEX statements, idempotent."""
        raise NotImplementedError

    @classmethod
    def shape(cls, dialect: str) -> str:
        """The digest of the read model's tables and indexes as this code creates them
        (its live CREATE statements, whitespace aside). It is recorded beside the read
        model's position: a start that finds another recorded rebuilds the read model
        (`infra/rebuild.py`), so changing a table needs no version number bumped; changing
        what its rows hold in the same tables raises `revision`."""
        statements = [" ".join(s.split()) for s in cls().create_statements(dialect)]
        if cls.revision:
            statements.append(f"revision {cls.revision}")
        return hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]

    handlers: ClassVar[dict[type[IncidentEvent], str]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.handlers = {
            event_type: name
            for name, member in vars(cls).items()
            for event_type in getattr(member, "_handles", ())
        }

    def begin_batch(self) -> None:
        """Called before a batch of events, in its transaction."""

    def end_batch(self, cursor: Cursor) -> None:
        """Called after a batch of events, in its transaction: a projection that gathers
        its writes in memory during a batch writes them here."""

    def process(self, event: IncidentEvent, cursor: Cursor, position: int) -> None:
        """Applies the event through its handler; events the read model does not care
        about are passed over."""
        name = self.handlers.get(type(event))
        if name is not None:
            getattr(self, name)(event, cursor, position)


H = TypeVar("H")


def handles(*event_types: type[IncidentEvent]) -> Callable[[H], H]:
    """Marks a projection method as the handler of these event types."""

    def mark(method: H) -> H:
        method._handles = event_types  # type: ignore[attr-defined]
        return method

    return mark


class ReadStore(Protocol):
    """Where queries run: something that opens read transactions."""

    dialect: Any

    def transaction(self, *, write: bool = False) -> Any: ...


class RowBuffer:
    """One table's rows by primary key, gathered during a batch: each is read once when
    first needed and written once, by one pipelined executemany, at the end of the batch."""

    def __init__(self, table: str, key: str, columns: Sequence[str],
                 booleans: Sequence[str] = ()) -> None:
        self.table, self.key, self.columns = table, key, tuple(columns)
        self.booleans = tuple(booleans)
        self.rows: dict[Any, dict[str, Any]] = {}
        self.dirty: set[Any] = set()

    def get(self, cursor: Cursor, key: Any) -> dict[str, Any] | None:
        if key in self.rows:
            return self.rows[key]
        found = cursor.execute(
            f"SELECT {', '.join(self.columns)} FROM {self.table} WHERE {self.key} = ?", (key,)
        ).fetchone()
        if found is None:
            return None
        row = dict(zip(self.columns, found, strict=True))
        for name in self.booleans:  # SQLite hands booleans back as integers
            row[name] = bool(row[name])
        self.rows[key] = row
        return row

    def put(self, row: dict[str, Any]) -> None:
        self.rows[row[self.key]] = row
        self.dirty.add(row[self.key])

    def change(self, cursor: Cursor, key: Any, **values: Any) -> None:
        row = self.get(cursor, key)
        assert row is not None, f"{self.table} has no row {key}"
        row.update(values)
        self.dirty.add(key)

    def flush(self, cursor: Cursor) -> None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c != self.key)
        if self.dirty:
            cursor.executemany(
                f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join('?' * len(self.columns))}) "
                f"ON CONFLICT ({self.key}) DO UPDATE SET {updates}",
                [[self.rows[key][c] for c in self.columns] for key in sorted(self.dirty)],
            )
        self.rows.clear()
        self.dirty.clear()


class AppendBuffer:
    """Rows only ever added, written by one executemany at the end of the batch."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        self.table, self.columns = table, tuple(columns)
        self.rows: list[tuple[Any, ...]] = []

    def add(self, *values: Any) -> None:
        self.rows.append(values)

    def flush(self, cursor: Cursor) -> None:
        if self.rows:
            cursor.executemany(
                f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join('?' * len(self.columns))})",
                self.rows,
            )
        self.rows.clear()


class NameLists:
    """A side table of (incident_id, name) rows, replaced per incident at batch end."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.lists: dict[str, tuple[str, ...]] = {}
        self.new: set[str] = set()  # incidents created in this batch: nothing to delete

    def create_statements(self) -> list[str]:
        """CREATE statements of the table, keyed by name then incident, and of its index by
        incident."""
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                incident_id TEXT NOT NULL, name TEXT NOT NULL,
                PRIMARY KEY (name, incident_id))""",
            f"CREATE INDEX IF NOT EXISTS {self.table}_incident ON {self.table} (incident_id)",
        ]

    def replace(self, incident_id: str, names: Sequence[str], *, new: bool = False) -> None:
        self.lists[incident_id] = tuple(dict.fromkeys(names))
        if new:
            self.new.add(incident_id)

    def flush(self, cursor: Cursor) -> None:
        known = sorted(set(self.lists) - self.new)
        if known:
            cursor.executemany(f"DELETE FROM {self.table} WHERE incident_id = ?",
                               [(i,) for i in known])
        rows = [(i, name) for i in sorted(self.lists) for name in self.lists[i]]
        if rows:
            cursor.executemany(f"INSERT INTO {self.table} (incident_id, name) VALUES (?, ?)",
                               rows)
        self.lists.clear()
        self.new.clear()
