"""The stored CloudEvents, in store order: the one place that reads the event store's
table. `/api/v1/events`, `product-status events`, the relay, the live stream and the
projectors all read through it, and hand out the stored documents untouched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.database import Database
from projections.base import Cursor


@dataclass(frozen=True)
class StoredCloudEvent:
    position: int
    subject: str
    version: int
    type: str
    document: bytes


def select_events(
    cursor: Cursor,
    database: Database,
    after: int,
    limit: int,
    types: Sequence[str] = (),
    subject: str | None = None,
) -> list[StoredCloudEvent]:
    """Up to `limit` events after position `after` (optionally of the given types, of one
    subject), in the caller's transaction. With a subject, the store's primary key
    (originator_id, originator_version) finds the incident's events."""
    position = database.position_column
    sql = (f"SELECT {position}, originator_id, originator_version, topic, state "
           f"FROM {database.events_table} WHERE {position} > ?")
    params: list[Any] = [after]
    if subject is not None:
        sql += " AND originator_id = ?"
        params.append(subject)
    if types:
        sql += f" AND topic IN ({', '.join('?' * len(types))})"
        params += list(types)
    rows = cursor.execute(f"{sql} ORDER BY {position} LIMIT ?", [*params, limit]).fetchall()
    return [StoredCloudEvent(int(r[0]), str(r[1]), int(r[2]), str(r[3]), bytes(r[4]))
            for r in rows]


def store_head(cursor: Cursor, database: Database) -> int:
    """The position of the last stored event (0 for an empty store)."""
    row = cursor.execute(
        f"SELECT max({database.position_column}) FROM {database.events_table}"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class EventLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    def read(
        self,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] = (),
        subject: str | None = None,
    ) -> list[StoredCloudEvent]:
        """Up to `limit` events after position `after`, optionally of the given types and
        of one subject (incident id)."""
        with self.database.transaction() as cursor:
            return select_events(cursor, self.database, after, limit, types, subject)

    def read_all(self, subject: str, batch: int = 1000) -> list[StoredCloudEvent]:
        """Every event of one subject (incident), in store order."""
        found: list[StoredCloudEvent] = []
        while page := self.read(found[-1].position if found else 0, batch, subject=subject):
            found += page
            if len(page) < batch:
                break
        return found

    def last_position(self) -> int:
        with self.database.transaction() as cursor:
            return store_head(cursor, self.database)
