"""The stored CloudEvents, in store order: the audit log that `/api/v1/events` and
`product-status events` read. Hands out the stored documents untouched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier


@dataclass(frozen=True)
class StoredCloudEvent:
    position: int
    subject: str
    version: int
    type: str
    document: bytes


class EventLog:
    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder

    def read(
        self,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] = (),
        subject: str | None = None,
    ) -> list[StoredCloudEvent]:
        """Up to `limit` events after position `after`, optionally of the given types and
        of one subject (incident id)."""
        if subject is None:
            rows: Sequence[Any] = self.recorder.select_notifications(
                after, limit, topics=types, inclusive_of_start=False
            )
            return [
                StoredCloudEvent(n.id, str(n.originator_id), n.originator_version, n.topic,
                                 bytes(n.state))
                for n in rows
            ]
        return self._read_subject(after, limit, types, subject)

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def _read_subject(
        self, after: int, limit: int, types: Sequence[str], subject: str
    ) -> list[StoredCloudEvent]:
        # The store's primary key (originator_id, originator_version) finds one
        # incident's events; their positions order them.
        recorder = self.recorder
        if isinstance(recorder, SQLiteApplicationRecorder):
            sql = (
                f"SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {recorder.events_table_name} WHERE originator_id = ? AND rowid > ?"
            )
            params: list[Any] = [subject, after]
            if types:
                sql += f" AND topic IN ({','.join('?' * len(types))})"
                params += list(types)
            sql += " ORDER BY rowid LIMIT ?"
            params.append(limit)
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(sql, params)
                rows = [tuple(row) for row in cursor.fetchall()]
        elif isinstance(recorder, PostgresApplicationRecorder):
            query = SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM {schema}.{table} WHERE originator_id = %s AND notification_id > %s"
                " AND (cardinality(%s::text[]) = 0 OR topic = ANY(%s::text[]))"
                " ORDER BY notification_id LIMIT %s"
            ).format(
                schema=Identifier(recorder.datastore.schema),
                table=Identifier(recorder.events_table_name),
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(query, (subject, after, list(types), list(types), limit))
                rows = [
                    (r["notification_id"], r["originator_id"], r["originator_version"],
                     r["topic"], r["state"])
                    for r in cursor.fetchall()
                ]
        else:
            rows = [
                (n.id, n.originator_id, n.originator_version, n.topic, n.state)
                for n in recorder.select_notifications(
                    after, 1_000_000, topics=types, inclusive_of_start=False
                )
                if n.originator_id == subject
            ][:limit]
        return [
            StoredCloudEvent(int(r[0]), str(r[1]), int(r[2]), str(r[3]), bytes(r[4]))
            for r in rows
        ]
