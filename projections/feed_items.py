"""Read model `feed_items`: what the RSS and Atom feeds read.

`feed_incidents` holds one row per incident with its latest public message and the time
and store position of its last public change (a change of internal notes is not one, so
it does not move a feed's ETag). `feed_entries` holds one row per public entry of an
incident: its declaration and each update that says something public or moves its status.
Internal notes and internal messages never enter these tables.
"""

from __future__ import annotations

from typing import Any, ClassVar

from domain.incident import Incident
from projections.base import Cursor, Projection, dump_list, handles, micros

_PUBLIC_DETAILS = {
    "title": "title",
    "description": "description",
    "severity": "severity",
    "incident_type": "incident_type",
    "public_message": "public_message",
    "is_public": "is_public",
    "rss_enabled": "rss_enabled",
}


class FeedItems(Projection):
    name: ClassVar[str] = "feed_items"
    tables: ClassVar[tuple[str, ...]] = ("feed_incidents", "feed_entries")

    def create_statements(self, dialect: str) -> list[str]:
        incidents, entries = self.t("feed_incidents"), self.t("feed_entries")
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
                public_message TEXT NOT NULL,
                is_public BOOLEAN NOT NULL,
                rss_enabled BOOLEAN NOT NULL,
                deleted BOOLEAN NOT NULL,
                created_at BIGINT NOT NULL,
                last_public_change BIGINT NOT NULL,
                position BIGINT NOT NULL
            )""",
            f"CREATE INDEX IF NOT EXISTS {incidents}_recent ON {incidents} "
            f"(last_public_change, id)",
            f"""CREATE TABLE IF NOT EXISTS {entries} (
                incident_id TEXT NOT NULL,
                number INTEGER NOT NULL,
                status TEXT NOT NULL,
                public_message TEXT NOT NULL,
                published_at BIGINT NOT NULL,
                position BIGINT NOT NULL,
                PRIMARY KEY (incident_id, number)
            )""",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        at = micros(event.timestamp)
        cursor.execute(
            f"INSERT INTO {self.t('feed_incidents')} (id, created_position, title, "
            "description, status, severity, incident_type, affected_services, public_message,"
            " is_public, rss_enabled, deleted, created_at, last_public_change, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.originator_id, position, event.title, event.description,
                event.status.value, event.severity.value, event.incident_type.value,
                dump_list(event.affected_services), event.public_message, event.is_public,
                event.rss_enabled, False, at, at, position,
            ),
        )
        self._entry(cursor, event.originator_id, 0, event.status.value,
                    event.public_message, at, position)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        public: dict[str, Any] = {}
        for name, value in event.changes.items():
            if name in _PUBLIC_DETAILS:
                public[_PUBLIC_DETAILS[name]] = getattr(value, "value", value)
            elif name == "affected_services":
                public["affected_services"] = dump_list(value)
        if public:  # a change of internal notes alone is not a public change
            self._touch(cursor, event, position, public)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        says_something = bool(event.public_message.strip())
        if not says_something and event.status == event.previous_status:
            return  # an internal note
        changes: dict[str, Any] = {"status": event.status.value}
        if says_something:
            changes["public_message"] = event.public_message
        self._touch(cursor, event, position, changes)
        self._entry(cursor, event.originator_id, event.number, event.status.value,
                    event.public_message, micros(event.timestamp), position)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(cursor, event, position, {"status": "resolved"})

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(cursor, event, position, {"deleted": True})

    def _touch(
        self, cursor: Cursor, event: Incident.Event, position: int, changes: dict[str, Any]
    ) -> None:
        values = {**changes, "last_public_change": micros(event.timestamp), "position": position}
        assignments = ", ".join(f"{column} = ?" for column in values)
        cursor.execute(
            f"UPDATE {self.t('feed_incidents')} SET {assignments} WHERE id = ?",
            (*values.values(), event.originator_id),
        )

    def _entry(
        self, cursor: Cursor, incident_id: str, number: int, status: str, message: str,
        at: int, position: int,
    ) -> None:
        cursor.execute(
            f"INSERT INTO {self.t('feed_entries')} (incident_id, number, status, "
            "public_message, published_at, position) VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, number, status, message, at, position),
        )
