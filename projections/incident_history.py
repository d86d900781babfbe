"""One incident as it stood after a run of its events: the audit fold.

Used to answer a command with the incident it produced, and to show an incident as of
an instant (`as_of`). Pure: it only reads the events it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.incident import Incident, IncidentEvent
from domain.values import IncidentType, Severity, Status, UpdateType


@dataclass(frozen=True)
class UpdateRecord:
    number: int
    status: Status
    previous_status: Status
    message: str
    public_message: str
    update_type: UpdateType
    author: str | None
    created_at: datetime


@dataclass(frozen=True)
class IncidentRecord:
    id: str
    title: str
    description: str
    status: Status
    severity: Severity
    incident_type: IncidentType
    affected_services: tuple[str, ...]
    affected_regions: tuple[str, ...]
    start_time: datetime
    resolved_at: datetime | None
    public_message: str
    internal_notes: str
    is_public: bool
    rss_enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int
    deleted: bool = False
    updates: tuple[UpdateRecord, ...] = field(default=())


def fold(events: Iterable[IncidentEvent], as_of: datetime | None = None) -> IncidentRecord | None:
    """The incident after the given events (only those at or before `as_of`, if given);
    None when no event qualifies."""
    record: IncidentRecord | None = None
    for event in events:
        if as_of is not None and event.timestamp > as_of:
            break
        record = evolve(record, event)
    return record


def evolve(record: IncidentRecord | None, event: IncidentEvent) -> IncidentRecord:
    if isinstance(event, Incident.Created):
        return IncidentRecord(
            id=event.originator_id,
            title=event.title,
            description=event.description,
            status=event.status,
            severity=event.severity,
            incident_type=event.incident_type,
            affected_services=event.affected_services,
            affected_regions=event.affected_regions,
            start_time=event.start_time,
            resolved_at=None,
            public_message=event.public_message,
            internal_notes=event.internal_notes,
            is_public=event.is_public,
            rss_enabled=event.rss_enabled,
            created_at=event.timestamp,
            updated_at=event.timestamp,
            version=event.originator_version,
        )
    assert record is not None, "an incident's first event is its creation"
    stamp: dict[str, Any] = {"updated_at": event.timestamp, "version": event.originator_version}
    if isinstance(event, Incident.DetailsChanged):
        return replace(record, **event.changes, **stamp)
    if isinstance(event, Incident.UpdateAdded):
        update = UpdateRecord(
            number=event.number,
            status=event.status,
            previous_status=event.previous_status,
            message=event.message,
            public_message=event.public_message,
            update_type=event.update_type,
            author=event.author,
            created_at=event.timestamp,
        )
        # Reopening (an update back to an active state) clears the resolution time.
        resolved_at = None if event.status.is_active else record.resolved_at
        return replace(
            record,
            status=event.status,
            resolved_at=resolved_at,
            updates=(*record.updates, update),
            **stamp,
        )
    if isinstance(event, Incident.Resolved):
        return replace(record, status=Status.RESOLVED, resolved_at=event.resolved_at, **stamp)
    if isinstance(event, Incident.Deleted):
        return replace(record, deleted=True, **stamp)
    raise TypeError(f"unknown incident event {type(event).__name__}")
