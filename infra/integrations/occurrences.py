"""What an integration needs to know about a stored event: the event, the incident just
before and just after it, and whether (and in which form) the integration may see it.

The incident's state comes from folding its events (projections.incident_history), so a
decision never depends on how far a read table has got, and is the same on every retry.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.persistence import Mapper, StoredEvent

from domain.incident import IncidentEvent
from domain.values import IncidentType, Severity, Status
from domain.visibility import Audience, event_for
from infra.event_log import EventLog, StoredCloudEvent
from infra.integrations.config import Filters
from projections.incident_history import Record, evolve

CACHED_INCIDENTS = 5_000


def public_form(document: bytes) -> bytes | None:
    """The document an anonymous reader gets from the incident's timeline (None: nothing
    public in it). The one visibility rule decides; this only names it for integrations."""
    return event_for(Audience.PUBLIC, document)


@dataclass(frozen=True)
class IncidentRecord:
    """What integrations read of an incident as the fold left it."""

    id: str
    title: str
    status: Status
    severity: Severity
    incident_type: IncidentType
    affected_services: tuple[str, ...]
    affected_regions: tuple[str, ...]
    public_message: str
    internal_notes: str
    is_public: bool
    deleted: bool
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, record: Record) -> IncidentRecord:
        return cls(**{name: record[name] for name in _RECORD_FIELDS})


_RECORD_FIELDS = tuple(IncidentRecord.__dataclass_fields__)


def shown_to_public(record: IncidentRecord | None) -> bool:
    return record is not None and record.is_public and not record.deleted


@dataclass(frozen=True)
class Occurrence:
    """A stored event with the incident around it."""

    stored: StoredCloudEvent
    event: IncidentEvent
    before: IncidentRecord | None
    after: IncidentRecord

    @property
    def event_id(self) -> str:
        event_id: str = json.loads(self.stored.document)["id"]
        return event_id

    @property
    def position(self) -> int:
        return self.stored.position

    @property
    def type(self) -> str:
        return self.stored.type


def visible_document(filters: Filters, occurrence: Occurrence) -> bytes | None:
    """The form of the event this integration receives, or None when its filters leave it
    out. A public integration (`include_internal` false) sees only events after which an
    anonymous reader sees the incident (public and not deleted), without internal fields;
    and nothing that only changed internal fields. So an event that makes an incident
    private or deletes it reaches no public destination: the anonymous reader no longer
    sees the incident at all, and what the event wrote (a new title, a new message) was
    never public."""
    if not filters.takes_type(occurrence.type):
        return None
    after = occurrence.after
    if not filters.takes_incident(after.severity, after.affected_services):
        return None
    if filters.include_internal:
        return occurrence.stored.document
    if not shown_to_public(after):
        return None
    return public_form(occurrence.stored.document)


def withdrawn_from_public(filters: Filters, occurrence: Occurrence) -> bool:
    """Whether the event took an incident the public saw out of its sight (made it private
    or deleted it), for a public integration whose filters take the incident as the
    public last saw it. Such an event has no public form; a destination told of it (only
    PagerDuty, whose alert a deletion resolves) is told the incident's id and nothing
    else."""
    before = occurrence.before
    return (not filters.include_internal and filters.takes_type(occurrence.type)
            and before is not None and shown_to_public(before)
            and not shown_to_public(occurrence.after)
            and filters.takes_incident(before.severity, before.affected_services))


class IncidentStates:
    """Incidents as they stood after the last event seen of each, for one follower that
    sees events in store order. An incident not seen yet is folded from its stored
    events before the one at hand (one read); the least recently seen are forgotten."""

    def __init__(self, event_log: EventLog, mapper: Mapper[str],
                 size: int = CACHED_INCIDENTS) -> None:
        self.event_log = event_log
        self.mapper = mapper
        self.size = size
        self._known: OrderedDict[str, Record] = OrderedDict()

    def decode(self, stored: StoredCloudEvent) -> IncidentEvent:
        event = self.mapper.to_domain_event(StoredEvent(
            originator_id=stored.subject, originator_version=stored.version,
            topic=stored.type, state=stored.document))
        assert isinstance(event, IncidentEvent)
        return event

    def occurrences(self, events: Sequence[StoredCloudEvent]) -> list[Occurrence]:
        return [self.occurrence(stored) for stored in events]

    def occurrence(self, stored: StoredCloudEvent) -> Occurrence:
        event = self.decode(stored)
        before = self._before(stored)
        after = evolve(before, event)
        self._remember(stored.subject, after)
        return Occurrence(stored, event, None if before is None else IncidentRecord.of(before),
                          IncidentRecord.of(after))

    def _before(self, stored: StoredCloudEvent) -> Record | None:
        known = self._known.get(stored.subject)
        if known is not None and known["version"] == stored.version - 1:
            return known
        if stored.version == 1:
            return None
        return self._fold(stored)

    def _fold(self, stored: StoredCloudEvent) -> Record | None:
        record: Record | None = None
        for earlier in self.event_log.read_all(stored.subject):
            if earlier.version >= stored.version:
                break
            record = evolve(record, self.decode(earlier))
        return record

    def _remember(self, incident_id: str, record: Record) -> None:
        self._known[incident_id] = record
        self._known.move_to_end(incident_id)
        while len(self._known) > self.size:
            self._known.popitem(last=False)


