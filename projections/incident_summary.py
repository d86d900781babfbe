"""Read model `incident_summary`: counters for the summary cards, kept per audience of
`domain.visibility` (scope `public`: what anonymous readers see; `all`: what readers see).

Each incident contributes a set of counter keys; an event moves the incident from its old
set to its new one, so every counter is exact after every batch. A maintenance is planned,
not an outage: while active it counts under `maintenance` (`in_progress`) and, per service,
`service_maintenance`, never under the severities of active incidents. The projection keeps the
few facts it needs per incident in a table of its own. Within a batch it works in memory
and writes each changed counter and incident once, at the end of the batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import ClassVar

from domain.incident import Incident
from domain.values import IncidentType, Severity, Status
from domain.visibility import VISIBLE, Audience, shows
from projections.base import Cursor, Projection, dump_list, handles, load_list
from projections.columns import select

Key = tuple[str, str, str]  # scope, dimension, key
SERVICE_SEPARATOR = "\x1f"
_COUNTED = ("status", "severity", "incident_type", "is_public", "services", "deleted")
# The stored name of each audience's counters.
SCOPES: dict[Audience, str] = {Audience.READER: "all", Audience.PUBLIC: "public"}


@dataclass(frozen=True)
class Counted:
    status: str
    severity: str
    incident_type: str
    is_public: bool
    services: tuple[str, ...]
    deleted: bool = False

    def keys(self) -> set[Key]:
        state = {"deleted": self.deleted, "is_public": self.is_public}
        scopes = [scope for audience, scope in SCOPES.items()
                  if shows(VISIBLE[audience], state)]
        active = Status(self.status).is_active
        planned = self.incident_type == IncidentType.MAINTENANCE.value
        keys: set[Key] = set()
        for scope in scopes:
            keys |= {(scope, "status", self.status), (scope, "severity", self.severity),
                     (scope, "type", self.incident_type)}
            for service in self.services:
                keys.add((scope, "service", service))
                if active and planned:
                    keys.add((scope, "service_maintenance", service))
                elif active:
                    keys.add((scope, "service_severity",
                              service + SERVICE_SEPARATOR + self.severity))
            if active and not planned:
                keys.add((scope, "active_severity", self.severity))
            if self.status == Status.SCHEDULED.value:
                keys.add((scope, "maintenance", "scheduled"))
            elif active and planned:
                keys.add((scope, "maintenance", "in_progress"))
        return keys


class IncidentSummary(Projection):
    name: ClassVar[str] = "incident_summary"
    tables: ClassVar[tuple[str, ...]] = ("summary_counts", "summary_incidents")
    # 1: a maintenance in progress counts under `maintenance` and `service_maintenance`,
    # never under `active_severity` or `service_severity`.
    revision: ClassVar[int] = 1

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.begin_batch()

    def begin_batch(self) -> None:
        self._known: dict[str, Counted] = {}
        self._changed: set[str] = set()
        self._deltas: Counter[Key] = Counter()

    def create_statements(self, dialect: str) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.t('summary_counts')} (
                scope TEXT NOT NULL, dimension TEXT NOT NULL, key TEXT NOT NULL,
                count BIGINT NOT NULL, PRIMARY KEY (scope, dimension, key))""",
            f"""CREATE TABLE IF NOT EXISTS {self.t('summary_incidents')} (
                id TEXT PRIMARY KEY, status TEXT NOT NULL, severity TEXT NOT NULL,
                incident_type TEXT NOT NULL, is_public BOOLEAN NOT NULL,
                services TEXT NOT NULL, deleted BOOLEAN NOT NULL)""",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        counted = Counted(event.status.value, event.severity.value, event.incident_type.value,
                          event.is_public, tuple(dict.fromkeys(event.affected_services)))
        self._move(cursor, event.originator_id, None, counted)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        old = self._load(cursor, event.originator_id)
        new = old
        changes = event.changes
        if "severity" in changes:
            new = replace(new, severity=Severity(changes["severity"]).value)
        if "incident_type" in changes:
            new = replace(new, incident_type=str(changes["incident_type"].value))
        if "is_public" in changes:
            new = replace(new, is_public=bool(changes["is_public"]))
        if "affected_services" in changes:
            new = replace(new, services=tuple(dict.fromkeys(changes["affected_services"])))
        if new != old:
            self._move(cursor, event.originator_id, old, new)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        self._set_status(cursor, event.originator_id, event.status.value)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._set_status(cursor, event.originator_id, Status.RESOLVED.value)

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        old = self._load(cursor, event.originator_id)
        self._move(cursor, event.originator_id, old, replace(old, deleted=True))

    def _set_status(self, cursor: Cursor, incident_id: str, status: str) -> None:
        old = self._load(cursor, incident_id)
        if old.status != status:
            self._move(cursor, incident_id, old, replace(old, status=status))

    def _load(self, cursor: Cursor, incident_id: str) -> Counted:
        known = self._known.get(incident_id)
        if known is not None:
            return known
        rows = select(cursor, _COUNTED, f"FROM {self.t('summary_incidents')} WHERE id = ?",
                      (incident_id,))
        assert rows, f"summary has no incident {incident_id}"
        row = rows[0]
        counted = Counted(row["status"], row["severity"], row["incident_type"],
                          bool(row["is_public"]), tuple(load_list(row["services"])),
                          bool(row["deleted"]))
        self._known[incident_id] = counted
        return counted

    def _move(self, cursor: Cursor, incident_id: str, old: Counted | None, new: Counted) -> None:
        before = old.keys() if old else set()
        after = new.keys()
        self._deltas.subtract(before - after)
        self._deltas.update(after - before)
        self._known[incident_id] = new
        self._changed.add(incident_id)

    def end_batch(self, cursor: Cursor) -> None:
        counts = self.t("summary_counts")
        moved = sorted((*key, delta) for key, delta in self._deltas.items() if delta)
        if moved:
            cursor.executemany(
                f"INSERT INTO {counts} (scope, dimension, key, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope, dimension, key) DO UPDATE "
                f"SET count = {counts}.count + excluded.count",
                moved,
            )
            # A counter back at zero is no counter: the same rows however events batch.
            # executemany: in pipeline mode a later fetch must not read this result.
            cursor.executemany(f"DELETE FROM {counts} WHERE count = 0", [()])
        if self._changed:
            cursor.executemany(
                f"INSERT INTO {self.t('summary_incidents')} (id, status, severity, "
                "incident_type, is_public, services, deleted) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "severity = excluded.severity, incident_type = excluded.incident_type, "
                "is_public = excluded.is_public, services = excluded.services, "
                "deleted = excluded.deleted",
                [(i, new.status, new.severity, new.incident_type, new.is_public,
                  dump_list(new.services), new.deleted)
                 for i in sorted(self._changed) for new in [self._known[i]]],
            )
        self.begin_batch()
