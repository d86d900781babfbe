"""Runs the projections over the event store, each from its own tracked position.

One batch of events is applied to one projection in one transaction that also moves the
projection's position, so rows and position commit together (exactly once). On
PostgreSQL the position row is taken `FOR UPDATE SKIP LOCKED`: of several projector
processes only one works on a projection at a time, and another takes over as soon as
the first is gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import Mapper, StoredEvent

from domain.incident import IncidentEvent
from infra.database import Database
from infra.event_log import select_events, store_head
from projections.base import Cursor, Projection
from projections.feed_items import FeedItems
from projections.incident_list import IncidentList
from projections.incident_summary import IncidentSummary
from projections.incident_updates import IncidentUpdates

log = logging.getLogger("product_status.projector")

PROJECTIONS: tuple[type[Projection], ...] = (
    IncidentList, IncidentUpdates, IncidentSummary, FeedItems
)
TRACKING = "projection_positions"
ANALYZE_EVERY = 20_000


class PositionRefused(Exception):
    """A batch that does not start at the projection's recorded position: it was (or is
    being) applied already, so it is refused and its rows are rolled back."""


@dataclass(frozen=True)
class Positioned:
    position: int
    event: IncidentEvent


def record_position(cursor: Cursor, name: str, start: int, end: int) -> None:
    """Moves a projection's position from `start` to `end`, or refuses."""
    # RETURNING, not rowcount: in pipeline mode the count is known only once fetched.
    updated = cursor.execute(
        f"UPDATE {TRACKING} SET position = ? WHERE name = ? AND position = ? AND ? > ? "
        "RETURNING position",
        (end, name, start, end, start),
    ).fetchone()
    if updated is None:
        raise PositionRefused(f"{name}: position {start} -> {end} was already recorded")


def apply_batch(cursor: Cursor, projection: Projection, start: int,
                events: Sequence[Positioned]) -> None:
    """Records the last event's position, then applies the events (all after `start`),
    in the caller's transaction: a batch that was applied already is refused first."""
    record_position(cursor, projection.name, start, events[-1].position)
    projection.begin_batch()
    for item in events:
        projection.process(item.event, cursor, item.position)
    projection.end_batch(cursor)


def analyze(database: Database, projections: Sequence[Projection]) -> None:
    """Gives PostgreSQL's planner statistics of the read tables (new tables have none,
    and without them the list would sort the whole table instead of walking its index)."""
    if database.dialect != "postgres":
        return
    with database.transaction(write=True) as cursor:
        for projection in projections:
            for table in projection.tables:
                cursor.execute(f"ANALYZE {projection.t(table)}")


class Projector:
    def __init__(
        self,
        database: Database,
        mapper: Mapper[str],
        projections: Sequence[Projection] | None = None,
        batch_size: int = 500,
    ) -> None:
        self.database = database
        self.mapper = mapper
        self.projections = list(projections or [cls() for cls in PROJECTIONS])
        self.batch_size = batch_size
        self.wake = threading.Event()
        self.listeners: list[Callable[[dict[str, int]], None]] = []
        self._positions: dict[str, int] = {}
        self._since_analyze = 0

    # Set-up.

    def create_tables(self) -> None:
        """Creates what is missing. Each statement is its own transaction: a process
        starting while others project must never hold one table's lock while waiting
        for another's (CREATE INDEX IF NOT EXISTS takes a SHARE lock even when the index
        exists)."""
        statements = [
            f"CREATE TABLE IF NOT EXISTS {TRACKING} "
            "(name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
        ]
        for projection in self.projections:
            statements += projection.create_statements(self.database.dialect)
        for statement in statements:
            with self.database.transaction(write=True) as cursor:
                cursor.execute(statement)
        for projection in self.projections:
            with self.database.transaction(write=True) as cursor:
                cursor.execute(
                    f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0) "
                    "ON CONFLICT (name) DO NOTHING",
                    (projection.name,),
                )

    # Work.

    def read_events(self, cursor: Cursor, after: int, limit: int) -> list[Positioned]:
        """The next events after `after`, decoded, in the caller's transaction."""
        decode = self.mapper.to_domain_event
        return [
            Positioned(e.position, decode(StoredEvent(  # type: ignore[arg-type]
                originator_id=e.subject, originator_version=e.version, topic=e.type,
                state=e.document)))
            for e in select_events(cursor, self.database, after, limit)
        ]

    def step(self, projection: Projection) -> int:
        """Applies the next batch to one projection; 0 when it is up to date or another
        process is working on it."""
        with self.database.transaction(write=True, pipeline=True) as cursor:
            lock = " FOR UPDATE SKIP LOCKED" if self.database.dialect == "postgres" else ""
            row = cursor.execute(
                f"SELECT position FROM {TRACKING} WHERE name = ?{lock}",
                (projection.name,),
            ).fetchone()
            if row is None:
                return 0
            start = int(row[0])
            events = self.read_events(cursor, start, self.batch_size)
            if events:
                apply_batch(cursor, projection, start, events)
            end = events[-1].position if events else start
        self._positions[projection.name] = end
        return len(events)

    def catch_up(self) -> int:
        """Applies every projection until each is up to date; returns events applied."""
        total = 0
        while True:
            applied = sum(self.step(p) for p in self.projections)
            if applied:
                total += applied
                positions = dict(self._positions)
                for listener in self.listeners:
                    listener(positions)
            else:
                self._keep_statistics(total)
                return total

    def _keep_statistics(self, applied: int) -> None:
        """Refreshes PostgreSQL's planner statistics after every ~20,000 applied events,
        so list pages keep walking the index even where autovacuum is off."""
        self._since_analyze += applied
        if self._since_analyze >= ANALYZE_EVERY:
            analyze(self.database, self.projections)
            self._since_analyze = 0

    def positions(self) -> dict[str, int]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"SELECT name, position FROM {TRACKING}").fetchall()
        return {str(name): int(position) for name, position in rows}

    def head(self) -> int:
        with self.database.transaction() as cursor:
            return store_head(cursor, self.database)

    def run(self, stop: threading.Event) -> None:
        """Follows the store until `stop` is set. `wake` (set on each local commit, and on
        PostgreSQL by the store's notifications) starts the next round at once; otherwise
        a cheap look at the store's head decides whether there is work (SQLite has no
        notifications across processes, so it looks often)."""
        idle = 1.0 if self.database.dialect == "postgres" else 0.05
        self._positions = self.positions()
        while not stop.is_set():
            woken = self.wake.is_set()
            self.wake.clear()
            try:
                if woken or self.head() > min(self._positions.values(), default=0):
                    self.catch_up()
            except Exception:
                log.exception("projection round failed; retrying")
                stop.wait(1.0)
                continue
            self.wake.wait(idle)
