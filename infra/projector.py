"""The read models, each a follower of the event store (see infra/follower.py) whose "done"
is its rows written in the transaction that moves its position: exactly once.

Each projection has its own position (a row of `projection_positions`) and its own lease:
of several projector processes, one works on a read model at a time and another carries
on as soon as the first stops or dies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import Mapper, StoredEvent

from domain.incident import IncidentEvent
from infra.database import Database, create_schema
from infra.event_log import StoredCloudEvent
from infra.follower import FollowerBusy, FollowerOptions, Transactional
from infra.follower_positions import (
    READ_MODELS,
    PositionRefused,
    Positions,
    advance,
    table_exists,
)
from infra.follower_worker import Follower
from infra.followers import Followers
from projections.base import Cursor, Projection
from projections.feed_items import FeedItems
from projections.incident_deadlines import IncidentDeadlines
from projections.incident_lifecycle import IncidentLifecycle
from projections.incident_list import IncidentList
from projections.incident_periods import IncidentPeriods
from projections.incident_postmortems import IncidentPostmortems
from projections.incident_summary import IncidentSummary
from projections.incident_updates import IncidentUpdates

__all__ = ["TRACKING", "PositionRefused", "Positioned", "Projector", "ShapeChanged", "analyze",
           "apply_batch"]

PROJECTIONS: tuple[type[Projection], ...] = (
    IncidentList, IncidentUpdates, IncidentSummary, FeedItems, IncidentLifecycle,
    IncidentPostmortems,
    IncidentPeriods,
    IncidentDeadlines,
)
TRACKING = READ_MODELS
ANALYZE_EVERY = 20_000


@dataclass(frozen=True)
class Positioned:
    position: int
    event: IncidentEvent


Decode = Callable[[Sequence[StoredCloudEvent]], list[Positioned]]


def decoder(mapper: Mapper[str]) -> Decode:
    """Turns stored CloudEvents into domain events with their positions."""
    decode = mapper.to_domain_event

    def positioned(events: Sequence[StoredCloudEvent]) -> list[Positioned]:
        return [
            Positioned(e.position, decode(StoredEvent(  # type: ignore[arg-type]
                originator_id=e.subject, originator_version=e.version, topic=e.type,
                state=e.document)))
            for e in events
        ]

    return positioned


def apply_events(cursor: Cursor, projection: Projection, events: Sequence[Positioned]) -> None:
    projection.begin_batch()
    for item in events:
        projection.process(item.event, cursor, item.position)
    projection.end_batch(cursor)


def apply_batch(cursor: Cursor, projection: Projection, start: int,
                events: Sequence[Positioned]) -> None:
    """Records the last event's position, then applies the events (all after `start`),
    in the caller's transaction: a batch that was applied already is refused first."""
    advance(cursor, TRACKING, projection.name, start, events[-1].position)
    apply_events(cursor, projection, events)


def analyze(database: Database, projections: Sequence[Projection]) -> None:
    """Gives PostgreSQL's planner statistics of the read tables (new tables have none,
    and without them the list would sort the whole table instead of walking its index)."""
    if database.dialect != "postgres":
        return
    with database.transaction(write=True) as cursor:
        for projection in projections:
            for table in projection.tables:
                cursor.execute(f"ANALYZE {projection.t(table)}")


class ShapeChanged(Exception):
    """The read model's tables are of another shape than this code writes (a newer
    release rebuilt them): its batches are refused, and the worker lets go of the read
    model so that a process of that release carries on."""


class ProjectionHandler(Transactional):
    """One read model as a follower: decode outside the transaction, apply inside it,
    only into tables of the shape this code writes."""

    def __init__(self, projection: Projection, decode: Decode, dialect: str,
                 batch_size: int = 500) -> None:
        self.name = projection.name
        self.projection = projection
        self.decode = decode
        self.dialect = dialect
        self.batch_size = batch_size
        self.shape = projection.shape(dialect)
        self._since_analyze = 0

    def prepare(self, events: Sequence[StoredCloudEvent]) -> list[Positioned]:
        return self.decode(events)

    def apply(self, cursor: Cursor, prepared: list[Positioned]) -> None:
        # The position's row is locked by now (`advance`): a rebuild cannot swap between.
        row = cursor.execute(f"SELECT shape FROM {TRACKING} WHERE name = ?",
                             (self.name,)).fetchone()
        if row is None or row[0] != self.shape:
            raise ShapeChanged(f"its tables are of shape {row[0] if row else None}, this "
                               f"release writes {self.shape}: restart it with the release "
                               "that made them")
        apply_events(cursor, self.projection, prepared)
        self._keep_statistics(cursor, len(prepared))

    def _keep_statistics(self, cursor: Cursor, applied: int) -> None:
        """Refreshes PostgreSQL's planner statistics of the tables after every ~20,000
        events, so list pages keep walking the index even where autovacuum is off."""
        self._since_analyze += applied
        if self._since_analyze >= ANALYZE_EVERY and self.dialect == "postgres":
            for table in self.projection.tables:
                cursor.execute(f"ANALYZE {self.projection.t(table)}")
            self._since_analyze = 0


class Projector:
    """The read models of this process, registered as followers of `followers`."""

    def __init__(
        self,
        followers: Followers,
        mapper: Mapper[str],
        projections: Sequence[Projection] | None = None,
        batch_size: int = 500,
        options: FollowerOptions | None = None,
    ) -> None:
        self.database = followers.database
        self.event_log = followers.event_log
        self.projections = list(projections or [cls() for cls in PROJECTIONS])
        self.decode = decoder(mapper)
        self.followers: list[Follower] = [
            followers.add(ProjectionHandler(p, self.decode, self.database.dialect,
                                            batch_size), options)
            for p in self.projections
        ]
        self._positions = Positions(self.database, TRACKING)

    @property
    def names(self) -> list[str]:
        return [projection.name for projection in self.projections]

    def create_tables(self) -> list[Projection]:
        """Creates what is missing, under the schema lock the caller holds, and returns
        the read models whose tables were made in another shape than this code's
        (`Projection.shape`, recorded beside the position): the caller rebuilds those.
        Tables created here, empty, get their shape recorded."""
        dialect = self.database.dialect
        self._positions.create([], schema_locked=True)
        recorded, positions = self._positions.shapes(), self._positions.all()
        changed: list[Projection] = []
        for projection in self.projections:
            shape = projection.shape(dialect)
            with self.database.transaction() as cursor:
                made = any(table_exists(cursor, self.database, projection.t(table))
                           for table in projection.tables)
            if (made or positions.get(projection.name, 0) > 0) \
                    and recorded.get(projection.name) != shape:
                changed.append(projection)  # its statements may not fit the old tables
                continue
            create_schema(self.database, projection.create_statements(dialect))
            if recorded.get(projection.name) != shape:
                self._positions.record_shape(projection.name, shape)
        self._positions.create(self.names, schema_locked=True)
        return changed

    def read_events(self, after: int, limit: int) -> list[Positioned]:
        """The next events after `after`, decoded."""
        return self.decode(self.event_log.read(after, limit))

    def catch_up(self) -> int:
        """Brings every read model up to date here and now (skipping those another worker
        is following); returns the events applied, summed over the read models."""
        total = 0
        while True:
            applied = 0
            for follower in self.followers:
                try:
                    applied += follower.run_once()
                except FollowerBusy:
                    continue
            total += applied
            if not applied:
                return total

    def positions(self) -> dict[str, int]:
        return {name: position for name, position in self._positions.all().items()
                if name in self.names}
