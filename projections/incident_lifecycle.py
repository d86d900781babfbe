"""Read model `incident_lifecycle`: one row per incident with its type and the moments its
reports are measured from (declared, acknowledged by someone, resolved), how long it spent
in each status, and the services it affects (a side table, for the report's filter).

Figures that depend on the settings (response targets) or on the present (time in the
current status) are worked out when a report is asked for (`projections/reports.py`), so the
rows are a pure fold of the store: a rebuild writes the same rows.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from domain.incident import Incident
from domain.response import is_response
from domain.values import IncidentType, Severity, Status
from projections.base import Cursor, NameLists, Projection, RowBuffer, handles, micros

COLUMNS = ("id", "severity", "incident_type", "start_time", "created_at", "acknowledged_at",
           "resolved_at", "status", "status_since", "status_micros", "deleted")


def dump_durations(durations: dict[str, int]) -> str:
    return json.dumps(durations, sort_keys=True)


def load_durations(text: str) -> dict[str, int]:
    loaded: dict[str, int] = json.loads(text)
    return loaded


class IncidentLifecycle(Projection):
    name: ClassVar[str] = "incident_lifecycle"
    tables: ClassVar[tuple[str, ...]] = ("lifecycle_incidents", "lifecycle_services")

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("lifecycle_incidents"), "id", COLUMNS,
                              booleans=("deleted",))
        self.services = NameLists(self.t("lifecycle_services"))

    def create_statements(self, dialect: str) -> list[str]:
        incidents = self.t("lifecycle_incidents")
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                id TEXT PRIMARY KEY, severity TEXT NOT NULL, incident_type TEXT NOT NULL,
                start_time BIGINT NOT NULL,
                created_at BIGINT NOT NULL, acknowledged_at BIGINT, resolved_at BIGINT,
                status TEXT NOT NULL, status_since BIGINT NOT NULL,
                status_micros TEXT NOT NULL, deleted BOOLEAN NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {incidents}_start ON {incidents} (start_time)",
            *self.services.create_statements(),
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        at = micros(event.timestamp)
        self.rows.put({"id": event.originator_id, "severity": event.severity.value,
                       "incident_type": IncidentType(event.incident_type).value,
                       "start_time": micros(event.start_time), "created_at": at,
                       "acknowledged_at": None, "resolved_at": None,
                       "status": Status(event.status).value, "status_since": at,
                       "status_micros": dump_durations({}), "deleted": False})
        self.services.replace(event.originator_id, event.affected_services, new=True)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        changes = event.changes
        values: dict[str, Any] = {}
        if "severity" in changes:
            values["severity"] = Severity(changes["severity"]).value
        if "incident_type" in changes:
            values["incident_type"] = IncidentType(changes["incident_type"]).value
        if "start_time" in changes:
            values["start_time"] = micros(changes["start_time"])
        if "affected_services" in changes:
            self.services.replace(event.originator_id, changes["affected_services"])
        if values:
            self.rows.change(cursor, event.originator_id, **values)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no lifecycle row for {event.originator_id}"
        at = micros(event.timestamp)
        values: dict[str, Any] = {}
        # The first update posted by someone is the response (not the service's own).
        if row["acknowledged_at"] is None and is_response(event.request_key):
            values["acknowledged_at"] = at
        status = Status(event.status).value
        if status != row["status"]:
            spent = load_durations(row["status_micros"])
            spent[row["status"]] = spent.get(row["status"], 0) + at - row["status_since"]
            values.update(status=status, status_since=at, status_micros=dump_durations(spent))
            if event.status.is_active:  # reopened: resolved again later, or not at all
                values["resolved_at"] = None
        if values:
            self.rows.change(cursor, event.originator_id, **values)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self.rows.change(cursor, event.originator_id, resolved_at=micros(event.resolved_at))

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self.rows.change(cursor, event.originator_id, deleted=True)

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)
        self.services.flush(cursor)
