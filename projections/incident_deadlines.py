"""Read model `incident_deadlines`: what each incident waits for, for the service's own
commands (infra/timers.py).

* Auto-resolve: an active incident's last change (`idle_since`); it is due
  `INCIDENT_AUTO_RESOLVE_HOURS` later (a setting, applied when asked, so the read model
  does not depend on it). A maintenance in progress waits for its end instead.
* Maintenance: a scheduled maintenance starts at `scheduled_start`; one in progress
  (moved from scheduled to monitoring, and not moved since) completes at `scheduled_end`.

Each row carries the incident's version: the service's command expects it, so a deadline
is acted on once, and never after someone changed the incident first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from domain.incident import Incident
from domain.values import Status
from projections.base import Cursor, Projection, ReadStore, RowBuffer, handles, micros, moment

COLUMNS = ("id", "version", "status", "changed_at", "scheduled_start", "scheduled_end",
           "in_progress", "deleted", "idle_since", "maintenance_due", "maintenance_step")
START, END, AUTO_RESOLVE = "maintenance_start", "maintenance_end", "auto_resolve"


@dataclass(frozen=True)
class Deadline:
    """One thing due: `kind` (START, END or AUTO_RESOLVE) of an incident at `version`."""

    incident_id: str
    version: int
    kind: str
    due: datetime


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    """The columns the due query reads, from the incident's state."""
    status = Status(row["status"])
    live = not row["deleted"]
    in_progress = live and row["in_progress"] and status is Status.MONITORING
    row["idle_since"] = row["changed_at"] if live and status.is_active \
        and not in_progress else None
    row["maintenance_due"], row["maintenance_step"] = None, None
    if live and status is Status.SCHEDULED and row["scheduled_start"] is not None:
        row["maintenance_due"], row["maintenance_step"] = row["scheduled_start"], START
    elif in_progress and row["scheduled_end"] is not None:
        row["maintenance_due"], row["maintenance_step"] = row["scheduled_end"], END
    return row


class IncidentDeadlines(Projection):
    name: ClassVar[str] = "incident_deadlines"
    tables: ClassVar[tuple[str, ...]] = ("incident_deadlines",)

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("incident_deadlines"), "id", COLUMNS,
                              booleans=("in_progress", "deleted"))

    def create_statements(self, dialect: str) -> list[str]:
        table = self.t("incident_deadlines")
        return [
            f"""CREATE TABLE IF NOT EXISTS {table} (
                id TEXT PRIMARY KEY, version INTEGER NOT NULL, status TEXT NOT NULL,
                changed_at BIGINT NOT NULL, scheduled_start BIGINT, scheduled_end BIGINT,
                in_progress BOOLEAN NOT NULL, deleted BOOLEAN NOT NULL,
                idle_since BIGINT, maintenance_due BIGINT, maintenance_step TEXT)""",
            f"CREATE INDEX IF NOT EXISTS {table}_idle ON {table} (idle_since)",
            f"CREATE INDEX IF NOT EXISTS {table}_maintenance ON {table} (maintenance_due)",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        self.rows.put(_derive({
            "id": event.originator_id, "version": event.originator_version,
            "status": Status(event.status).value, "changed_at": micros(event.timestamp),
            "scheduled_start": _micros(event.scheduled_start),
            "scheduled_end": _micros(event.scheduled_end),
            "in_progress": False, "deleted": False}))

    @handles(Incident.DetailsChanged)
    def _details_changed(self, event: Incident.DetailsChanged, cursor: Cursor,
                         position: int) -> None:
        window = {name: _micros(event.changes[name])
                  for name in ("scheduled_start", "scheduled_end") if name in event.changes}
        self._touch(event, cursor, **window)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor,
                      position: int) -> None:
        status, previous = Status(event.status), Status(event.previous_status)
        values: dict[str, Any] = {"status": status.value}
        if status is not previous:  # a move: a maintenance starts, or no longer runs alone
            values["in_progress"] = previous is Status.SCHEDULED \
                and status is Status.MONITORING
        self._touch(event, cursor, **values)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, status=Status.RESOLVED.value, in_progress=False)

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, deleted=True)

    def _touch(self, event: Incident.Event, cursor: Cursor, **values: Any) -> None:
        self.rows.change(cursor, event.originator_id, **values,
                         version=event.originator_version, changed_at=micros(event.timestamp))
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None
        _derive(row)

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)


def _micros(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def due_deadlines(store: ReadStore, now: datetime,
                  auto_resolve_hours: float) -> list[Deadline]:
    """What is due at `now`, oldest first: a maintenance step, or an auto-resolve (when
    `auto_resolve_hours` is not 0), whichever comes first for each incident."""
    at = micros(now)
    idle_limit = at - round(auto_resolve_hours * 3_600_000_000) if auto_resolve_hours else None
    table = IncidentDeadlines.tables[0]
    sql = (f"SELECT id, version, idle_since, maintenance_due, maintenance_step FROM {table} "
           "WHERE maintenance_due <= ?")
    params: list[Any] = [at]
    if idle_limit is not None:
        sql += " OR idle_since <= ?"
        params.append(idle_limit)
    with store.transaction() as cursor:
        rows = cursor.execute(sql, params).fetchall()
    found: list[Deadline] = []
    for incident_id, version, idle_since, maintenance_due, step in rows:
        options = []
        if maintenance_due is not None and maintenance_due <= at:
            options.append((maintenance_due, step))
        if idle_limit is not None and idle_since is not None and idle_since <= idle_limit:
            options.append((idle_since + (at - idle_limit), AUTO_RESOLVE))
        due, kind = min(options)
        found.append(Deadline(incident_id, int(version), kind, moment(due)))
    found.sort(key=lambda d: (d.due, d.incident_id))
    return found
