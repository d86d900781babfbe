"""The event store's recorders, extended to write each stored event's link of the audit
chain (infra/audit_chain.py) in the same transaction as the event, after its insert:
under PostgreSQL's table lock (eventsourcing takes it for every insert, so that commit
order is position order) or SQLite's write lock, the chain's head cannot move meanwhile.
Chosen with eventsourcing's APPLICATION_RECORDER_TOPIC (infra/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from infra.audit_chain import INSERT, head_of, links_for


class ChainedSQLiteRecorder(SQLiteApplicationRecorder):
    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if not stored_events or positions is None:
            return positions
        events = [(int(position), str(e.originator_id), e.originator_version, e.topic, e.state)
                  for position, e in zip(positions, stored_events, strict=True)]
        links = links_for(head_of(c).sha256, events)
        c.executemany(INSERT, links)
        return positions


class ChainedPostgresRecorder(PostgresApplicationRecorder):
    def _fetch_ids_after_insert_events(self, curs: Cursor[DictRow],
                                       stored_events: Sequence[StoredEvent],
                                       **kwargs: Any) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if not positions:
            return positions
        # The rows as stored, read back by the positions just issued (the order of an
        # INSERT's RETURNING is not promised to be the order of its input).
        curs.execute(SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id = ANY(%s)").format(
                schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)),
            (list(positions),))
        events = [(int(r["notification_id"]), str(r["originator_id"]),
                   int(r["originator_version"]), str(r["topic"]), bytes(r["state"]))
                  for r in curs.fetchall()]
        links = links_for(head_of(curs).sha256, events)
        curs.executemany(INSERT.replace("?", "%s"), links)
        return positions
