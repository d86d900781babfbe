"""Read model `incident_updates`: the status updates of each incident, in order."""

from __future__ import annotations

from typing import ClassVar

from domain.incident import Incident
from projections.base import AppendBuffer, Cursor, Projection, handles, micros


class IncidentUpdates(Projection):
    name: ClassVar[str] = "incident_updates"
    tables: ClassVar[tuple[str, ...]] = ("incident_updates",)

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.updates = AppendBuffer(self.t("incident_updates"), (
            "incident_id", "number", "status", "previous_status", "message", "public_message",
            "update_type", "author", "created_at", "position"))

    def create_statements(self, dialect: str) -> list[str]:
        table = self.t("incident_updates")
        return [
            f"""CREATE TABLE IF NOT EXISTS {table} (
                incident_id TEXT NOT NULL,
                number INTEGER NOT NULL,
                status TEXT NOT NULL,
                previous_status TEXT NOT NULL,
                message TEXT NOT NULL,
                public_message TEXT NOT NULL,
                update_type TEXT NOT NULL,
                author TEXT,
                created_at BIGINT NOT NULL,
                position BIGINT NOT NULL,
                PRIMARY KEY (incident_id, number)
            )""",
        ]

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        self.updates.add(
            event.originator_id, event.number, event.status.value, event.previous_status.value,
            event.message, event.public_message, event.update_type.value, event.author,
            micros(event.timestamp), position,
        )

    def end_batch(self, cursor: Cursor) -> None:
        self.updates.flush(cursor)
