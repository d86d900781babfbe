"""The stored CloudEvents, in store order: the one module that reads the event store.

Reads go through eventsourcing's application recorder (`select_notifications`,
`max_notification_id`), so the store's table is eventsourcing's business. The one read
the recorder cannot serve, an incident's events with their positions, is written here
(see `_subject_events`); no other module names the table.

Positions are eventsourcing's notification ids. On PostgreSQL every insert into the store
takes an exclusive lock on its table until commit, so positions become visible in order:
a reader that saw position N has seen every committed position below it, and "after my
position" never skips an event still being committed (the high-water mark is the head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from eventsourcing.persistence import ApplicationRecorder, Notification

from infra.database import Database


class StoredCloudEvent(NamedTuple):
    """One stored event: its position and the CloudEvents document as stored. (A named
    tuple: followers make one per event read, and a tuple is the cheapest to make.)"""

    position: int
    subject: str
    version: int
    type: str
    document: bytes

    @classmethod
    def of(cls, notification: Notification) -> StoredCloudEvent:
        return cls(notification.id, str(notification.originator_id),
                   notification.originator_version, notification.topic,
                   bytes(notification.state))


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
    ) -> list[StoredCloudEvent]:
        """Up to `limit` events after position `after`, optionally of the given types and
        of one subject (incident id)."""
        if subject is not None:
            return self._subject_events(after, limit, types, subject)
        found = self.recorder.select_notifications(
            after, limit, topics=list(types), inclusive_of_start=False)
        return [StoredCloudEvent.of(notification) for notification in found]

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

    def _subject_events(self, after: int, limit: int, types: Sequence[str],
                        subject: str) -> list[StoredCloudEvent]:
        # The recorder cannot do this read: `select_notifications` has no originator
        # filter (it would scan the whole store for one incident), and `select_events`
        # filters by originator through the primary key but drops the positions, which
        # `/api/v1/events?subject=` pages by. Same table and columns as the recorder's.
        table = self.table
        position = "rowid" if self.database.dialect == "sqlite" else "notification_id"
        sql = (f"SELECT {position}, originator_id, originator_version, topic, state "
               f"FROM {table} WHERE originator_id = ? AND {position} > ?")
        params: list[Any] = [subject, after]
        if types:
            sql += f" AND topic IN ({', '.join('?' * len(types))})"
            params += list(types)
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"{sql} ORDER BY {position} LIMIT ?",
                                  [*params, limit]).fetchall()
        return [StoredCloudEvent(int(r[0]), str(r[1]), int(r[2]), str(r[3]), bytes(r[4]))
                for r in rows]
