"""The stored CloudEvents, in store order: the one module that reads the event store.

The store's table, its notification channel and its head come from eventsourcing's
application recorder (`events_table_name`, `channel_name`, `max_notification_id`). Batches
of events are read with one query of this module's (see `read`, which says why);
no other module names the table.

Positions are eventsourcing's notification ids. On PostgreSQL every insert into the store
takes an exclusive lock on its table until commit, so positions become visible in order:
a reader that saw position N has seen every committed position below it, and "after my
position" never skips an event still being committed (the high-water mark is the head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from eventsourcing.persistence import ApplicationRecorder

from infra.audit_chain import TABLE as CHAIN
from infra.database import Database


class StoredCloudEvent(NamedTuple):
    """One stored event: its position and the CloudEvents document as stored. (A named
    tuple: followers make one per event they read, and a tuple is cheap to make.)"""

    position: int
    subject: str
    version: int
    type: str
    document: bytes


class EventLog:
    def __init__(self, recorder: ApplicationRecorder, database: Database) -> None:
        self.recorder = recorder
        self.database = database

    @property
    def table(self) -> str:
        """The store's table, as eventsourcing named it (for diagnostics and benchmarks)."""
        name: str = self.recorder.events_table_name  # type: ignore[attr-defined]
        return name

    @property
    def position_column(self) -> str:
        """The store's column of positions (eventsourcing's notification ids)."""
        return "rowid" if self.database.dialect == "sqlite" else "notification_id"

    @property
    def channel(self) -> str | None:
        """The channel PostgreSQL NOTIFYs on each insert into the store (None: SQLite,
        whose recorder notifies nobody)."""
        channel: str | None = getattr(self.recorder, "channel_name", None)
        return channel

    def read(
        self,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] = (),
        subject: str | None = None,
        actor: str | None = None,
    ) -> list[StoredCloudEvent]:
        """Up to `limit` events after position `after`, optionally of the given types, of
        one subject (incident id) and of one actor (a token's name, or `system`: found
        through the audit chain's index of actors, infra/audit_chain.py)."""
        # Not the recorder's `select_notifications`: followers read the raw stored bytes
        # in batches of 500-1000 on their hot path, and it builds a dict row and a frozen
        # Notification per event: ~4.5 us an event against ~1.7 us for this query's
        # tuples (measured here, SQLite and PostgreSQL), some 7% of the NATS relay's CPU
        # per message. Nor can it filter by incident (`select_events` can, through the
        # primary key, but drops the positions `?subject=` pages by). Same table and
        # columns as the recorder's.
        position = self.position_column
        sql = (f"SELECT {position}, originator_id, originator_version, topic, state "
               f"FROM {self.table} WHERE {position} > ?")
        params: list[Any] = [after]
        if actor is not None:
            sql += (f" AND {position} IN (SELECT position FROM {CHAIN} WHERE actor = ? "
                    "AND position > ?)")
            params += [actor, after]
        if subject is not None:
            sql += " AND originator_id = ?"
            params.append(subject)
        if types:
            sql += f" AND topic IN ({', '.join('?' * len(types))})"
            params += list(types)
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"{sql} ORDER BY {position} LIMIT ?",
                                  [*params, limit]).fetchall()
        return [StoredCloudEvent(int(r[0]), str(r[1]), int(r[2]), str(r[3]), bytes(r[4]))
                for r in rows]

    def read_all(self, subject: str, batch: int = 1000) -> list[StoredCloudEvent]:
        """Every event of one subject (incident), in store order."""
        found: list[StoredCloudEvent] = []
        while page := self.read(found[-1].position if found else 0, batch, subject=subject):
            found += page
            if len(page) < batch:
                break
        return found

    def last_position(self) -> int:
        """The position of the last stored event (0 for an empty store)."""
        return self.recorder.max_notification_id() or 0
