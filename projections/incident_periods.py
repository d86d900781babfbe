"""Read model `incident_periods`: when each incident was active, and at which severity, for
the services' day bars (`GET /api/v1/services`), the Statuspage-compatible components and
the history page.

What "affected" means: an incident affects its services from its `start_time` (when it
started, which may be before it was declared) until it is resolved; reopening it starts a
new period at the reopening update, resolving it again ends that one. A change of severity
while it is active ends the period at the old severity and starts one at the new. A
maintenance incident's periods are kept like any other's (queries tell them apart by type).
The services named and the visibility are the incident's current ones. An incident's
`updated_at` (and so its services' in `period_service_stats`) is the time of its last public
change: a change of internal notes alone, or an update that neither says anything public
nor moves the status, changes nothing here.

Each incident is one row; its periods are a JSON list of `[start, end or null, severity]`
(microseconds since the epoch), with `first_start` and `last_end` beside it (`OPEN` while a
period is open) so that a query finds the incidents overlapping a window by two bounds, and
its services as a JSON list (the window's query reads no other table). `period_services`
names each incident's services; `period_service_stats` keeps per audience of
`domain.visibility` (scope `public` or `all`, as `incident_summary` names them) each service
named by a visible incident, with how many, when the first was declared and when one last
changed: recounted at the end of a batch for the services its events touched.
`period_days` holds the day cells of `projections.day_cells` (of an ended period, only
the days a window of the bars can show).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from domain.fields import INCIDENT
from domain.incident import Incident
from domain.values import Status
from domain.visibility import VISIBLE, is_team_note, where
from projections.base import (
    Cursor,
    NameLists,
    Projection,
    RowBuffer,
    dump_list,
    handles,
    load_list,
    micros,
)
from projections.columns import to_column
from projections.day_cells import Cells, contributions
from projections.incident_summary import SCOPES

OPEN = 2**62  # `last_end` of an incident with an open period: later than any moment
Period = list[Any]  # [start_us, end_us | None, severity]
COLUMNS = ("id", "title", "status", "severity", "incident_type", "is_public", "deleted",
           "start_time", "resolved_at", "created_at", "updated_at", "first_start",
           "last_end", "periods", "services")


def bounds(periods: list[Period]) -> tuple[int, int]:
    """(first start, last end) of the periods; an open period ends at OPEN; no period:
    a window no query overlaps."""
    if not periods:
        return OPEN, 0
    ends = [OPEN if p[1] is None else p[1] for p in periods]
    return min(p[0] for p in periods), max(ends)


class IncidentPeriods(Projection):
    name: ClassVar[str] = "incident_periods"
    tables: ClassVar[tuple[str, ...]] = ("period_incidents", "period_services",
                                         "period_service_stats", "period_days")
    # 1: an ended period's day cells are only its last `day_cells.KEPT_DAYS` days.
    # 2: `updated_at` is the last public change (internal notes and updates move nothing).
    # 3: `period_service_stats.changed` (and so a rebuild: it holds positions).
    revision: ClassVar[int] = 3

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("period_incidents"), "id", COLUMNS,
                              booleans=("is_public", "deleted"))
        self.services = NameLists(self.t("period_services"))
        # The services whose stats to count again, with the position of the last event
        # that touched each (its `changed`).
        self.touched: dict[str, int] = {}
        self.cells = Cells(self.t("period_days"))

    def create_statements(self, dialect: str) -> list[str]:
        incidents, _, stats, days = (self.t(n) for n in self.tables)  # _: self.services
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL,
                severity TEXT NOT NULL, incident_type TEXT NOT NULL,
                is_public BOOLEAN NOT NULL, deleted BOOLEAN NOT NULL,
                start_time BIGINT NOT NULL, resolved_at BIGINT, created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL, first_start BIGINT NOT NULL,
                last_end BIGINT NOT NULL, periods TEXT NOT NULL, services TEXT NOT NULL)""",
            # The day bars ask for the incidents still active at or after a window's start.
            f"CREATE INDEX IF NOT EXISTS {incidents}_last_end ON {incidents} (last_end)",
            # The history walks this one newest first, a page at a time (keyset).
            f"CREATE INDEX IF NOT EXISTS {incidents}_start ON {incidents} (start_time, id)",
            *self.services.create_statements(),
            f"""CREATE TABLE IF NOT EXISTS {stats} (
                scope TEXT NOT NULL, name TEXT NOT NULL, incidents BIGINT NOT NULL,
                created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                changed BIGINT NOT NULL, PRIMARY KEY (scope, name))""",
            f"""CREATE TABLE IF NOT EXISTS {days} (
                scope TEXT NOT NULL, name TEXT NOT NULL, day BIGINT NOT NULL,
                entries TEXT NOT NULL, incidents TEXT NOT NULL, spans TEXT NOT NULL,
                affected BIGINT NOT NULL, worst TEXT, PRIMARY KEY (scope, day, name))""",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        start = micros(event.start_time)
        periods: list[Period] = ([[start, None, event.severity.value]]
                                 if Status(event.status).is_active else [])
        first, last = bounds(periods)
        self.rows.put({
            "id": event.originator_id, "title": event.title, "status": event.status.value,
            "severity": event.severity.value, "incident_type": event.incident_type.value,
            "is_public": event.is_public, "deleted": False, "start_time": start,
            "resolved_at": None, "created_at": micros(event.timestamp),
            "updated_at": micros(event.timestamp), "first_start": first, "last_end": last,
            "periods": json.dumps(periods), "services": dump_list(event.affected_services)})
        self.services.replace(event.originator_id, event.affected_services, new=True)
        self._touched(event.affected_services, position)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        changes = event.changes
        if all(INCIDENT[name].internal for name in changes):
            return  # internal notes: nothing public changed
        values: dict[str, Any] = {name: to_column(INCIDENT[name], changes[name])
                  for name in ("title", "severity", "incident_type", "is_public", "start_time",
                               "affected_services")
                  if name in changes}
        if "affected_services" in values:
            self.services.replace(event.originator_id, changes["affected_services"])
            self._touched(changes["affected_services"], position)
            values["services"] = values.pop("affected_services")
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        periods: list[Period] = json.loads(row["periods"])
        if "start_time" in values and periods:
            first = periods[0]
            first[0] = values["start_time"] if first[1] is None else min(values["start_time"],
                                                                         first[1])
        if "severity" in values and periods and periods[-1][1] is None:
            at, current = micros(event.timestamp), periods[-1]
            if at <= current[0]:
                current[2] = values["severity"]
            else:
                current[1] = at
                periods.append([at, None, values["severity"]])
        self._touch(event, cursor, position, periods, **values)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        if is_team_note(event.public_message, event.status, event.previous_status):
            return  # a note for the team: nothing public changed
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        periods: list[Period] = json.loads(row["periods"])
        at = micros(event.timestamp)
        is_open = bool(periods) and periods[-1][1] is None
        values: dict[str, Any] = {"status": event.status.value}
        if event.status.is_active:
            values["resolved_at"] = None  # reopened
            if not is_open:
                periods.append([at, None, row["severity"]])
        elif is_open:
            periods[-1][1] = max(at, periods[-1][0])
        self._touch(event, cursor, position, periods, **values)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        periods: list[Period] = json.loads(row["periods"])
        at = micros(event.resolved_at)
        if periods and periods[-1][1] is None:
            periods[-1][1] = max(at, periods[-1][0])
        self._touch(event, cursor, position, periods, status=Status.RESOLVED.value,
                    resolved_at=at)

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        self._touch(event, cursor, position, json.loads(row["periods"]), deleted=True)

    def _touched(self, names: Iterable[str], position: int) -> None:
        for name in names:
            self.touched[name] = max(position, self.touched.get(name, 0))

    def _touch(self, event: Incident.Event, cursor: Cursor, position: int,
               periods: list[Period], **values: Any) -> None:
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        self._touched(load_list(row["services"]), position)
        before = contributions(row)
        first, last = bounds(periods)
        self.rows.change(cursor, event.originator_id, **values, periods=json.dumps(periods),
                         first_start=first, last_end=last, updated_at=micros(event.timestamp))
        self.cells.move(cursor, event.originator_id, before, contributions(row))

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)
        self.services.flush(cursor)
        self.cells.flush(cursor)
        self._count_again(cursor, sorted(self.touched.items()))
        self.touched.clear()

    def _count_again(self, cursor: Cursor, touched: list[tuple[str, int]]) -> None:
        """The stats of these services, counted again from the rows just written, each
        `changed` at the position of the last event that touched it: what a service's day
        bars show is the same while its `changed` is (queries keep them by it)."""
        incidents, services, stats, _ = (self.t(n) for n in self.tables)
        for start in range(0, len(touched), 500):
            chunk = touched[start:start + 500]
            names = [name for name, _ in chunk]
            marks = ", ".join("?" * len(chunk))
            # (name, changed) of each, as rows: `SELECT ?, ? UNION ALL ...` (both dialects)
            pairs = " UNION ALL ".join(
                ["SELECT CAST(? AS TEXT) AS name, CAST(? AS BIGINT) AS changed"] * len(chunk))
            flat = [value for pair in chunk for value in pair]
            # executemany: in pipeline mode no later fetch may read these statements' results
            cursor.executemany(f"DELETE FROM {stats} WHERE name IN ({marks})", [names])
            for audience, scope in SCOPES.items():
                visible, params = where(VISIBLE[audience], "i")
                cursor.executemany(
                    f"INSERT INTO {stats} "
                    "(scope, name, incidents, created_at, updated_at, changed) "
                    f"SELECT ?, n.name, count(*), min(i.created_at), max(i.updated_at), "
                    f"max(t.changed) FROM {services} n "
                    f"JOIN {incidents} i ON i.id = n.incident_id "
                    f"JOIN ({pairs}) t ON t.name = n.name "
                    f"WHERE {visible} GROUP BY n.name",
                    [[scope, *flat, *params]])
