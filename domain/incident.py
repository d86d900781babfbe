"""The Incident aggregate: the write state that commands decide on, and its events.

The state is slim: only what decisions need (status, deletion, how many updates, which
request keys were used). Display fields travel in the events and live in projections.
Time and ids come in from the caller, so every decision is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate

from domain.errors import (
    IncidentDeleted,
    InitialStatusRefused,
    PostmortemTooEarly,
    TransitionRefused,
    UpdateLimitReached,
    WindowRefused,
)
from domain.fields import DETAIL_FIELDS, INCIDENT_FIELDS, WINDOW_FIELDS, given_values
from domain.values import (
    IncidentType,
    Severity,
    Status,
    UpdateType,
    closes,
    may_move,
    resolves,
)

EVENT_TYPE_PREFIX = "com.example.incident."


@dataclass(frozen=True)
class IncidentEvent(CanMutateAggregate[str]):
    """Base of every incident event; `timestamp` is when it happened."""

    originator_id: str
    originator_version: int
    timestamp: datetime


class Incident(BaseAggregate[str]):
    TOPIC = "com.example.incident"

    def __init__(self) -> None:
        # Filled in by Created.apply(); declared here for readers and type checkers.
        self.status: Status = Status.INVESTIGATING
        self.deleted = False
        self.update_count = 0
        self.update_keys: dict[str, int] = {}
        # What the rules of a maintenance window need.
        self.incident_type: IncidentType = IncidentType.OTHER
        self.window: dict[str, datetime | None] = dict.fromkeys(WINDOW_FIELDS)

    @dataclass(frozen=True)
    class Event(IncidentEvent):
        """The aggregate's base event class (never recorded itself)."""

    @dataclass(frozen=True)
    class Created(Event, CanInitAggregate[str]):
        """Carries every declared field of `domain.fields` (a test holds them equal): the
        stored document's `data` is this event's fields."""

        TOPIC = EVENT_TYPE_PREFIX + "created"
        originator_topic: str
        title: str
        description: str
        status: Status
        severity: Severity
        incident_type: IncidentType
        affected_services: tuple[str, ...]
        affected_regions: tuple[str, ...]
        start_time: datetime
        public_message: str
        internal_notes: str
        is_public: bool
        rss_enabled: bool
        # The key the incident was declared with (a client's Idempotency-Key, an alert
        # group's state): kept beside `data`, as an update's is.
        request_key: str | None = None
        # Last, with defaults: events stored before maintenance windows existed have none.
        scheduled_start: datetime | None = None
        scheduled_end: datetime | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.status = Status(self.status)
            aggregate.incident_type = IncidentType(self.incident_type)
            aggregate.window = {name: getattr(self, name) for name in WINDOW_FIELDS}

    @dataclass(frozen=True)
    class DetailsChanged(Event):
        """Only the changed details are carried, in `changes`."""

        TOPIC = EVENT_TYPE_PREFIX + "updated"
        changes: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            if "incident_type" in self.changes:
                aggregate.incident_type = IncidentType(self.changes["incident_type"])
            for name in WINDOW_FIELDS:
                if name in self.changes:
                    aggregate.window[name] = self.changes[name]

    @dataclass(frozen=True)
    class UpdateAdded(Event):
        TOPIC = EVENT_TYPE_PREFIX + "update_added"
        number: int
        status: Status
        previous_status: Status
        message: str
        public_message: str
        update_type: UpdateType
        author: str | None
        request_key: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.status = Status(self.status)
            aggregate.update_count = self.number
            if self.request_key is not None:
                aggregate.update_keys[self.request_key] = self.originator_version

    @dataclass(frozen=True)
    class Resolved(Event):
        TOPIC = EVENT_TYPE_PREFIX + "resolved"
        resolved_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.status = Status.RESOLVED

    @dataclass(frozen=True)
    class PostmortemUpdated(Event):
        """The postmortem as written now, whole (`domain.fields.POSTMORTEM_FIELDS`)."""

        TOPIC = EVENT_TYPE_PREFIX + "postmortem_updated"
        body: str
        published: bool

    @dataclass(frozen=True)
    class Deleted(Event):
        TOPIC = EVENT_TYPE_PREFIX + "deleted"

        def apply(self, aggregate: Any) -> None:
            aggregate.deleted = True

    # Commands. Each checks the rules, then records events; the events' apply() methods
    # only evolve state, because they run again on every replay.

    @classmethod
    def declare(cls, *, incident_id: str, at: datetime, request_key: str | None = None,
                **details: Any) -> Incident:
        """A new incident with the given details (`domain.fields.DECLARED_FIELDS`; the
        others take their defaults, the start time defaults to `at`), remembering the key
        it was declared with, if any."""
        values = given_values(INCIDENT_FIELDS, details)
        status = Status(values["status"])
        start = _check_window(IncidentType(values["incident_type"]),
                              values["scheduled_start"], values["scheduled_end"])
        if start is not None and start > at:
            status = Status.SCHEDULED  # declared before its window: it waits for it
        elif status is Status.SCHEDULED:
            raise WindowRefused("only maintenance declared before its scheduled_start is "
                                "scheduled", "status")
        if not status.is_active and status is not Status.SCHEDULED:
            raise InitialStatusRefused(status)
        values["status"] = status
        if values["start_time"] is None:
            values["start_time"] = at
        return cls._create(cls.Created, id=incident_id, timestamp=at, request_key=request_key,
                           **values)

    def change_details(self, *, at: datetime, changes: dict[str, Any]) -> None:
        """Records the given detail changes; the caller passes only what differs."""
        self._check_not_deleted()
        unknown = set(changes) - set(DETAIL_FIELDS)
        if unknown:
            raise ValueError(f"not a detail of an incident: {', '.join(sorted(unknown))}")
        moved = [name for name in WINDOW_FIELDS if name in changes]
        if moved and self.status is not Status.SCHEDULED:
            raise WindowRefused("the maintenance window can be moved only while it is "
                                "scheduled", moved[0])
        if moved or "incident_type" in changes:
            window = {**self.window, **{name: changes[name] for name in moved}}
            _check_window(IncidentType(changes.get("incident_type", self.incident_type)),
                          window["scheduled_start"], window["scheduled_end"])
        if changes:
            self.trigger_event(self.DetailsChanged, timestamp=at, changes=dict(changes))

    def add_update(
        self,
        *,
        at: datetime,
        max_updates: int,
        message: str = "",
        public_message: str = "",
        status: Status | None = None,
        update_type: UpdateType = UpdateType.STATUS_UPDATE,
        author: str | None = None,
        request_key: str | None = None,
    ) -> None:
        """Records a status update. At `max_updates` only an update that closes the
        incident is still taken (resolving it, or moving it from resolved to post-incident
        review): an incident can always be resolved. Reopening stays refused, so past the
        limit an incident takes at most two more updates."""
        self._check_not_deleted()
        new_status = self.status if status is None else status
        if not may_move(self.status, new_status):
            raise TransitionRefused(self.status, new_status)
        resolving = resolves(self.status, new_status)
        if self.update_count >= max_updates and not closes(self.status, new_status):
            raise UpdateLimitReached(max_updates)
        self.trigger_event(
            self.UpdateAdded,
            timestamp=at,
            number=self.update_count + 1,
            status=new_status,
            previous_status=self.status,
            message=message,
            public_message=public_message,
            update_type=update_type,
            author=author,
            request_key=request_key,
        )
        if resolving:
            self.trigger_event(self.Resolved, timestamp=at, resolved_at=at)

    def write_postmortem(self, *, at: datetime, body: str, published: bool) -> None:
        """Records the postmortem; only an incident that is resolved or in post-incident
        review has one. The caller passes only a change (a repeat records nothing)."""
        self._check_not_deleted()
        if self.status.is_active:
            raise PostmortemTooEarly(self.status)
        self.trigger_event(self.PostmortemUpdated, timestamp=at, body=body,
                           published=published)

    def delete(self, *, at: datetime) -> None:
        self._check_not_deleted()
        self.trigger_event(self.Deleted, timestamp=at)

    def version_of_update(self, request_key: str) -> int | None:
        """The version at which an update with this request key was recorded, if any."""
        return self.update_keys.get(request_key)

    def _check_not_deleted(self) -> None:
        if self.deleted:
            raise IncidentDeleted(self.id)


def _check_window(incident_type: IncidentType, start: datetime | None,
                  end: datetime | None) -> datetime | None:
    """Refuses a window that cannot be; gives its start (None: no window)."""
    if start is None and end is None:
        return None
    if incident_type is not IncidentType.MAINTENANCE:
        raise WindowRefused("only incidents of type maintenance have a scheduled window",
                            "scheduled_start" if start is not None else "scheduled_end")
    if start is None or end is None:
        raise WindowRefused("scheduled_start and scheduled_end go together",
                            "scheduled_end" if end is None else "scheduled_start")
    if end <= start:
        raise WindowRefused("scheduled_end must be after scheduled_start", "scheduled_end")
    return start


EVENT_TYPES: tuple[str, ...] = tuple(
    cls.TOPIC
    for cls in (
        Incident.Created,
        Incident.DetailsChanged,
        Incident.UpdateAdded,
        Incident.Resolved,
        Incident.Deleted,
        Incident.PostmortemUpdated,
    )
)


def event_type_named(name: str) -> str:
    """The full CloudEvents type for a full or short name (`created`)."""
    full = name if name.startswith(EVENT_TYPE_PREFIX) else EVENT_TYPE_PREFIX + name
    if full not in EVENT_TYPES:
        raise ValueError(f"unknown event type {name!r}; known: {', '.join(EVENT_TYPES)}")
    return full
