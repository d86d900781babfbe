"""Read model `incident_list`: one row per incident for the list and the detail view,
with the services and regions it affects in side tables for filtering."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.incident import Incident
from projections.base import Cursor, Projection, dump_list, handles, micros

_COLUMNS = {
    "title": "title",
    "description": "description",
    "severity": "severity",
    "incident_type": "incident_type",
    "public_message": "public_message",
    "internal_notes": "internal_notes",
    "is_public": "is_public",
    "rss_enabled": "rss_enabled",
}


class IncidentList(Projection):
    name: ClassVar[str] = "incident_list"
    tables: ClassVar[tuple[str, ...]] = ("incidents", "incident_services", "incident_regions")

    def create_statements(self, dialect: str) -> list[str]:
        big = "BIGINT"
        incidents, services, regions = (self.t(n) for n in self.tables)
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                id TEXT PRIMARY KEY,
                created_position {big} NOT NULL,
                title TEXT NOT NULL,
                description TEXT NOT NULL,
                status TEXT NOT NULL,
                severity TEXT NOT NULL,
                incident_type TEXT NOT NULL,
                affected_services TEXT NOT NULL,
                affected_regions TEXT NOT NULL,
                start_time {big} NOT NULL,
                resolved_at {big},
                public_message TEXT NOT NULL,
                internal_notes TEXT NOT NULL,
                is_public BOOLEAN NOT NULL,
                rss_enabled BOOLEAN NOT NULL,
                created_at {big} NOT NULL,
                updated_at {big} NOT NULL,
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
            f"""CREATE TABLE IF NOT EXISTS {regions} (
                incident_id TEXT NOT NULL, name TEXT NOT NULL,
                PRIMARY KEY (name, incident_id))""",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        cursor.execute(
            f"INSERT INTO {self.t('incidents')} (id, created_position, title, description, "
            "status, severity, incident_type, affected_services, affected_regions, start_time,"
            " resolved_at, public_message, internal_notes, is_public, rss_enabled, created_at,"
            " updated_at, version, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.originator_id, position, event.title, event.description,
                event.status.value, event.severity.value, event.incident_type.value,
                dump_list(event.affected_services), dump_list(event.affected_regions),
                micros(event.start_time), event.public_message, event.internal_notes,
                event.is_public, event.rss_enabled, micros(event.timestamp),
                micros(event.timestamp), event.originator_version, False,
            ),
        )
        self._set_names("incident_services", event.originator_id, event.affected_services,
                        cursor)
        self._set_names("incident_regions", event.originator_id, event.affected_regions,
                        cursor)

    @handles(Incident.DetailsChanged)
    def _details_changed(self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        assignments: dict[str, Any] = {}
        for name, value in event.changes.items():
            if name in _COLUMNS:
                assignments[_COLUMNS[name]] = getattr(value, "value", value)
            elif name == "start_time":
                assignments["start_time"] = micros(value)
            elif name == "affected_services":
                assignments["affected_services"] = dump_list(value)
                self._set_names("incident_services", event.originator_id, value, cursor)
            elif name == "affected_regions":
                assignments["affected_regions"] = dump_list(value)
                self._set_names("incident_regions", event.originator_id, value, cursor)
        self._touch(event, cursor, assignments)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        changes: dict[str, Any] = {"status": event.status.value}
        if event.status.is_active:
            changes["resolved_at"] = None  # reopened
        self._touch(event, cursor, changes)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"status": "resolved",
                                    "resolved_at": micros(event.resolved_at)})

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"deleted": True})

    def _touch(self, event: Incident.Event, cursor: Cursor, changes: dict[str, Any]) -> None:
        values = {**changes, "updated_at": micros(event.timestamp),
                  "version": event.originator_version}
        assignments = ", ".join(f"{column} = ?" for column in values)
        cursor.execute(
            f"UPDATE {self.t('incidents')} SET {assignments} WHERE id = ?",
            (*values.values(), event.originator_id),
        )

    def _set_names(
        self, table: str, incident_id: str, names: tuple[str, ...], cursor: Cursor
    ) -> None:
        cursor.execute(f"DELETE FROM {self.t(table)} WHERE incident_id = ?",
                       (incident_id,))
        for name in dict.fromkeys(names):
            cursor.execute(
                f"INSERT INTO {self.t(table)} (incident_id, name) VALUES (?, ?)",
                (incident_id, name),
            )
