"""What every projection is: a named read model with its own tables and one handler per
event type, writing through the cursor of the transaction that also moves its position."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from domain.incident import IncidentEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
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

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def t(self, table: str) -> str:
        """The table's name in this instance (live, or built aside)."""
        assert table in self.tables, table
        return table + self.suffix

    def create_statements(self, dialect: str) -> list[str]:
        """CREATE TABLE / INDEX statements, idempotent."""
        raise NotImplementedError

    handlers: ClassVar[dict[type[IncidentEvent], str]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.handlers = {
            event_type: name
            for name, member in vars(cls).items()
            for event_type in getattr(member, "_handles", ())
        }

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
