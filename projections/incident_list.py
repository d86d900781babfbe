"""Read model `incident_list`: one row per incident for the list and the detail view,
with the services and regions it affects in side tables for filtering.

Beside `updated_at` and `version`, which every change moves, a row keeps the time and
version of the incident's last public change (`incident_history.is_public_change`), which
the public is shown instead, and whether its postmortem is published (withdrawing one is a
public change, writing a draft is not)."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.fields import INCIDENT, STORED_FIELDS
from domain.incident import Incident
from domain.response import is_response
from domain.values import Status
from projections.base import Cursor, NameLists, Projection, RowBuffer, handles, micros
from projections.columns import column_definitions, to_column
from projections.incident_history import (
    PUBLIC_CHANGED_AT,
    PUBLIC_UPDATE_AT,
    PUBLIC_VERSION,
    evolve,
    is_public_change,
    is_public_update,
)

# One column per stored field of the incident (`domain.fields`), by the field's name, plus
# the store position of its creation (the list's order), when the public last heard of it,
# when and at which version it last changed publicly, whether its postmortem is published,
# and whether it was deleted.
_FIELDS = STORED_FIELDS[1:]  # after the id, the table's key
POSTMORTEM_PUBLISHED = "postmortem_published"
COLUMNS = ("id", "created_position", *(f.name for f in _FIELDS), PUBLIC_UPDATE_AT,
           PUBLIC_CHANGED_AT, PUBLIC_VERSION, POSTMORTEM_PUBLISHED, "deleted")
_BOOLEANS = (*(f.name for f in STORED_FIELDS if f.kind is bool), POSTMORTEM_PUBLISHED,
             "deleted")


class IncidentList(Projection):
    name: ClassVar[str] = "incident_list"
    tables: ClassVar[tuple[str, ...]] = ("incidents", "incident_services", "incident_regions")

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowBuffer(self.t("incidents"), "id", COLUMNS,
                              booleans=_BOOLEANS)
        self.services = NameLists(self.t("incident_services"))
        self.regions = NameLists(self.t("incident_regions"))

    def create_statements(self, dialect: str) -> list[str]:
        incidents = self.t("incidents")
        columns = ",\n                ".join([
            "id TEXT PRIMARY KEY", "created_position BIGINT NOT NULL",
            *column_definitions(_FIELDS), f"{PUBLIC_UPDATE_AT} BIGINT NOT NULL",
            f"{PUBLIC_CHANGED_AT} BIGINT NOT NULL", f"{PUBLIC_VERSION} BIGINT NOT NULL",
            f"{POSTMORTEM_PUBLISHED} BOOLEAN NOT NULL", "deleted BOOLEAN NOT NULL"])
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                {columns}
            )""",
            # The list walks this index newest first and filters as it goes, so a page
            # costs the same at any depth (no index that would make planners sort).
            f"CREATE UNIQUE INDEX IF NOT EXISTS {incidents}_newest "
            f"ON {incidents} (created_position)",
            *self.services.create_statements(),
            *self.regions.create_statements(),
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        record = evolve(None, event)  # the new incident, as the audit fold has it
        self.rows.put({"created_position": position, "deleted": False,
                       PUBLIC_UPDATE_AT: micros(record[PUBLIC_UPDATE_AT]),
                       PUBLIC_CHANGED_AT: micros(record[PUBLIC_CHANGED_AT]),
                       PUBLIC_VERSION: record[PUBLIC_VERSION], POSTMORTEM_PUBLISHED: False,
                       **{f.name: to_column(f, record[f.name]) for f in STORED_FIELDS}})
        self.services.replace(event.originator_id, event.affected_services, new=True)
        self.regions.replace(event.originator_id, event.affected_regions, new=True)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        changes = event.changes
        if "affected_services" in changes:
            self.services.replace(event.originator_id, changes["affected_services"])
        if "affected_regions" in changes:
            self.regions.replace(event.originator_id, changes["affected_regions"])
        self._touch(event, cursor, {name: to_column(INCIDENT[name], value)
                                    for name, value in changes.items()})

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        values: dict[str, Any] = {"status": to_column(INCIDENT["status"], event.status)}
        row = self.rows.get(cursor, event.originator_id)
        if (row is not None and row["acknowledged_at"] is None
                and is_response(event.request_key)):  # the response
            values["acknowledged_at"] = micros(event.timestamp)
        if is_public_update(event):
            values[PUBLIC_UPDATE_AT] = micros(event.timestamp)
        if event.status.is_active:
            values["resolved_at"] = None  # reopened
        self._touch(event, cursor, values)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"status": to_column(INCIDENT["status"], Status.RESOLVED),
                                    "resolved_at": micros(event.resolved_at)})

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(event, cursor, {"deleted": True})

    @handles(Incident.PostmortemUpdated)
    def _postmortem(self, event: Incident.PostmortemUpdated, cursor: Cursor, position: int
                    ) -> None:
        # Its text is in `incident_postmortems`.
        self._touch(event, cursor, {POSTMORTEM_PUBLISHED: event.published})

    def _touch(self, event: Incident.Event, cursor: Cursor, values: dict[str, Any]) -> None:
        row = self.rows.get(cursor, event.originator_id)
        assert row is not None, f"no incident {event.originator_id}"
        if is_public_change(event, bool(row[POSTMORTEM_PUBLISHED])):
            values = {**values, PUBLIC_CHANGED_AT: micros(event.timestamp),
                      PUBLIC_VERSION: event.originator_version}
        self.rows.change(cursor, event.originator_id, **values,
                         updated_at=micros(event.timestamp), version=event.originator_version)

    def end_batch(self, cursor: Cursor) -> None:
        self.rows.flush(cursor)
        self.services.flush(cursor)
        self.regions.flush(cursor)
