"""Read model `incident_list`: one row per incident for the list and the detail view,
with the services and regions it affects in side tables for filtering."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.incident import Incident
from projections.base import Cursor, NameLists, Projection, RowBuffer, dump_list, handles, micros

COLUMNS = (
    "id", "created_position", "title", "description", "status", "severity", "incident_type",
    "affected_services", "affected_regions", "start_time", "resolved_at", "public_message",
    "internal_notes", "is_public", "rss_enabled", "created_at", "updated_at", "version",
    "deleted",
)
_PLAIN_DETAILS = ("title", "description", "severity", "incident_type", "public_message",
                  "internal_notes", "is_public", "rss_enabled")


class IncidentList(Projection):
    name: ClassVar[str] = "incident_list"
    tables: ClassVar[tuple[str, ...]] = ("incidents", "incident_services", "incident_regions")

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("incidents"), "id", COLUMNS,
                              booleans=("is_public", "rss_enabled", "deleted"))
        self.services = NameLists(self.t("incident_services"))
        self.regions = NameLists(self.t("incident_regions"))

    def create_statements(self, dialect: str) -> list[str]:
        incidents, services, regions = (self.t(n) for n in self.tables)
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                id TEXT PRIMARY KEY,
                created_position BIGINT NOT NULL,
                title TEXT NOT NULL,
                description TEXT NOT NULL,
                status TEXT NOT NULL,
                severity TEXT NOT NULL,
                incident_type TEXT NOT NULL,
                affected_services TEXT NOT NULL,
                affected_regions TEXT NOT NULL,
                start_time BIGINT NOT NULL,
                resolved_at BIGINT,
                public_message TEXT NOT NULL,
                internal_notes TEXT NOT NULL,
                is_public BOOLEAN NOT NULL,
                rss_enabled BOOLEAN NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                version INTEGER NOT NULL,
                deleted BOOLEAN NOT NULL
            )""",
            # The list walks this index newest first and filters as it goes, so a page
            # costs the same at any depth (no index that would make planners sort).
            f"CREATE UNIQUE INDEX IF NOT EXISTS {incidents}_newest "
            f"ON {incidents} (created_position)",
            f"""CREATE TABLE IF NOT EXISTS {services} (
                incident_id TEXT NOT NULL, name TEXT NOT NULL,
                PRIMARY KEY (name, incident_id))""",
            f"CREATE INDEX IF NOT EXISTS {services}_incident ON {services} (incident_id)",
            f"""CREATE TABLE IF NOT EXISTS {regions} (
                incident_id TEXT NOT NULL, name TEXT NOT NULL,
                PRIMARY KEY (name, incident_id))""",
            f"CREATE INDEX IF NOT EXISTS {regions}_incident ON {regions} (incident_id)",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        at = micros(event.timestamp)
        self.rows.put({
            "id": event.originator_id, "created_position": position, "title": event.title,
            "description": event.description, "status": event.status.value,
            "severity": event.severity.value, "incident_type": event.incident_type.value,
            "affected_services": dump_list(event.affected_services),
            "affected_regions": dump_list(event.affected_regions),
            "start_time": micros(event.start_time), "resolved_at": None,
            "public_message": event.public_message, "internal_notes": event.internal_notes,
            "is_public": event.is_public, "rss_enabled": event.rss_enabled,
            "created_at": at, "updated_at": at, "version": event.originator_version,
            "deleted": False,
        })
        self.services.replace(event.originator_id, event.affected_services, new=True)
        self.regions.replace(event.originator_id, event.affected_regions, new=True)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        values: dict[str, Any] = {}
        for name, value in event.changes.items():
            if name in _PLAIN_DETAILS:
                values[name] = getattr(value, "value", value)
            elif name == "start_time":
                values["start_time"] = micros(value)
            elif name == "affected_services":
                values["affected_services"] = dump_list(value)
                self.services.replace(event.originator_id, value)
            elif name == "affected_regions":
                values["affected_regions"] = dump_list(value)
                self.regions.replace(event.originator_id, value)
        self._touch(event, cursor, values)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        values: dict[str, Any] = {"status": event.status.value}
        if event.status.is_active:
            values["resolved_at"] = None  # reopened
        self._touch(event, cursor, values)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"status": "resolved",
                                    "resolved_at": micros(event.resolved_at)})

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"deleted": True})

    def _touch(self, event: Incident.Event, cursor: Cursor, values: dict[str, Any]) -> None:
        self.rows.change(cursor, event.originator_id, **values,
                         updated_at=micros(event.timestamp), version=event.originator_version)

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)
        self.services.flush(cursor)
        self.regions.flush(cursor)
