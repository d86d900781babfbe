"""One incident as it stood after a run of its events: the audit fold.

Used to answer a command with the incident it produced, and to show an incident as of
an instant (`as_of`). Pure: it only reads the events it is given.

The fold gives a record: the incident's stored fields (`domain.fields.STORED_FIELDS`) by
name, plus `deleted`, `public_update_at` (when the public last heard of it),
`public_changed_at` and `public_version` (the time and version of its last public change),
`updates` (each a record of `UPDATE_FIELDS`) and `postmortem` (a record of
`POSTMORTEM_FIELDS`, None before one is written), the same form the `incident_list` read
model's rows are read into, so that one serialiser answers both (once the derived fields
are added: `projections.incident_view.with_response`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from domain.fields import DECLARED_FIELDS, INCIDENT, UPDATE_FIELDS
from domain.incident import Incident, IncidentEvent
from domain.response import is_response
from domain.values import Status
from domain.visibility import POSTMORTEM_VISIBLE, Audience, is_team_note, shows

Record = dict[str, Any]
# When the public last heard of the incident: its declaration, or its last status update
# with a public message (what `update_overdue` is judged from).
PUBLIC_UPDATE_AT = "public_update_at"


# What the public is shown as an incident's `updated_at` and `version`: the time and the
# version of its last public change. A change only readers see moves neither, so the
# public's answer (its body and ETag) does not tell that something happened internally.
PUBLIC_CHANGED_AT, PUBLIC_VERSION = "public_changed_at", "public_version"
PUBLIC_STAMPS = {"updated_at": PUBLIC_CHANGED_AT, "version": PUBLIC_VERSION}


def is_public_update(event: Incident.UpdateAdded) -> bool:
    return bool(event.public_message.strip())


def is_public_change(event: IncidentEvent, postmortem_shown: bool) -> bool:
    """Whether the event changes what the public sees of an incident (were it shown):
    anything but a change of internal fields alone, a note for the team, and a change of
    a postmortem the public neither saw (`postmortem_shown`) nor sees after it (a draft)."""
    if isinstance(event, Incident.DetailsChanged):
        return not all(INCIDENT[name].internal for name in event.changes)
    if isinstance(event, Incident.UpdateAdded):
        return not is_team_note(event.public_message, event.status, event.previous_status)
    if isinstance(event, Incident.PostmortemUpdated):
        return postmortem_shown or shows(POSTMORTEM_VISIBLE[Audience.PUBLIC],
                                         {"published": event.published})
    return True


def fold(events: Iterable[IncidentEvent], as_of: datetime | None = None) -> Record | None:
    """The incident after the given events (only those at or before `as_of`, if given);
    None when no event qualifies."""
    record: Record | None = None
    for event in events:
        if as_of is not None and event.timestamp > as_of:
            break
        record = evolve(record, event)
    return record


def evolve(record: Record | None, event: IncidentEvent) -> Record:
    after = _evolve(record, event)
    shown = record is not None and record["postmortem"] is not None and shows(
        POSTMORTEM_VISIBLE[Audience.PUBLIC], record["postmortem"])
    if record is not None and is_public_change(event, shown):
        after = {**after, PUBLIC_CHANGED_AT: event.timestamp,
                 PUBLIC_VERSION: event.originator_version}
    return after


def _evolve(record: Record | None, event: IncidentEvent) -> Record:
    if isinstance(event, Incident.Created):
        return {
            "id": event.originator_id,
            **{f.name: getattr(event, f.name) for f in DECLARED_FIELDS},
            "resolved_at": None,
            "acknowledged_at": None,
            PUBLIC_UPDATE_AT: event.timestamp,
            "created_at": event.timestamp,
            "updated_at": event.timestamp,
            "version": event.originator_version,
            PUBLIC_CHANGED_AT: event.timestamp,
            PUBLIC_VERSION: event.originator_version,
            "deleted": False,
            "updates": (),
            "postmortem": None,
        }
    assert record is not None, "an incident's first event is its creation"
    stamp: Record = {"updated_at": event.timestamp, "version": event.originator_version}
    if isinstance(event, Incident.DetailsChanged):
        return {**record, **event.changes, **stamp}
    if isinstance(event, Incident.UpdateAdded):
        update = {f.name: getattr(event, f.name) for f in UPDATE_FIELDS
                  if f.name != "created_at"}
        update["created_at"] = event.timestamp
        # Reopening (an update back to an active state) clears the resolution time.
        resolved_at = None if event.status.is_active else record["resolved_at"]
        # The first update after the declaration posted by someone is the response.
        acknowledged_at = record["acknowledged_at"] or (
            event.timestamp if is_response(event.request_key) else None)
        told = event.timestamp if is_public_update(event) else record[PUBLIC_UPDATE_AT]
        return {**record, "status": event.status, "resolved_at": resolved_at,
                "acknowledged_at": acknowledged_at, PUBLIC_UPDATE_AT: told,
                "updates": (*record["updates"], update), **stamp}
    if isinstance(event, Incident.Resolved):
        return {**record, "status": Status.RESOLVED, "resolved_at": event.resolved_at,
                **stamp}
    if isinstance(event, Incident.Deleted):
        return {**record, "deleted": True, **stamp}
    if isinstance(event, Incident.PostmortemUpdated):
        return {**record, "postmortem": {"body": event.body, "published": event.published,
                                         "updated_at": event.timestamp}, **stamp}
    raise TypeError(f"unknown incident event {type(event).__name__}")
