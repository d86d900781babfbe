"""Read model `incident_updates`: the status updates of each incident, in order; one
column per field of a status update (`domain.fields.UPDATE_FIELDS`)."""

from __future__ import annotations

from typing import ClassVar

from domain.fields import UPDATE_FIELDS
from domain.incident import Incident
from projections.base import AppendBuffer, Cursor, Projection, handles
from projections.columns import column_definitions, to_column

COLUMNS = ("incident_id", *(f.name for f in UPDATE_FIELDS), "position")


class IncidentUpdates(Projection):
    name: ClassVar[str] = "incident_updates"
    tables: ClassVar[tuple[str, ...]] = ("incident_updates",)

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.updates = AppendBuffer(self.t("incident_updates"), COLUMNS)

    def create_statements(self, dialect: str) -> list[str]:
        columns = ",\n                ".join([
            "incident_id TEXT NOT NULL", *column_definitions(UPDATE_FIELDS),
            "position BIGINT NOT NULL", "PRIMARY KEY (incident_id, number)"])
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.t("incident_updates")} (
                {columns}
            )""",
        ]

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        values = {f.name: to_column(f, event.timestamp if f.name == "created_at"
                                    else getattr(event, f.name)) for f in UPDATE_FIELDS}
        self.updates.add(event.originator_id, *values.values(), position)

    def end_batch(self, cursor: Cursor) -> None:
        self.updates.flush(cursor)
