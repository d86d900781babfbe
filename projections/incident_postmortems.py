"""Read model `incident_postmortems`: each incident's postmortem as last written, one
column per field of a postmortem (`domain.fields.POSTMORTEM_FIELDS`). Drafts are kept
too: who sees which is decided when it is read (`domain.visibility.POSTMORTEM_VISIBLE`)."""

from __future__ import annotations

from typing import ClassVar

from domain.fields import POSTMORTEM_FIELDS
from domain.incident import Incident
from projections.base import Cursor, Projection, RowBuffer, handles
from projections.columns import column_definitions, to_column

COLUMNS = ("incident_id", *(f.name for f in POSTMORTEM_FIELDS))


class IncidentPostmortems(Projection):
    name: ClassVar[str] = "incident_postmortems"
    tables: ClassVar[tuple[str, ...]] = ("incident_postmortems",)

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("incident_postmortems"), "incident_id", COLUMNS,
                              booleans=("published",))

    def create_statements(self, dialect: str) -> list[str]:
        columns = ",\n                ".join([
            "incident_id TEXT PRIMARY KEY", *column_definitions(POSTMORTEM_FIELDS)])
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.t("incident_postmortems")} (
                {columns}
            )""",
        ]

    @handles(Incident.PostmortemUpdated)
    def _written(self, event: Incident.PostmortemUpdated, cursor: Cursor, position: int
                 ) -> None:
        values = {"body": event.body, "published": event.published,
                  "updated_at": event.timestamp}
        self.rows.put({"incident_id": event.originator_id,
                       **{f.name: to_column(f, values[f.name]) for f in POSTMORTEM_FIELDS}})

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)
