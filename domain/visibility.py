"""Who may see what: the one rule every surface asks.

There are two audiences. `READER` (a reader, writer or admin token) sees everything an
incident holds. `PUBLIC` (no token: the status page, the feeds, anonymous API calls and
streams, and every destination that must only get what an anonymous reader may) sees public,
undeleted incidents, and only their public fields.

The rule is data, so each surface applies the same one in its own terms:

- which incidents: `VISIBLE[audience]` (and `IN_FEEDS`, narrower still) are conditions on
  an incident's current state; `where()` turns them into the read models' SQL predicate,
  `shows()` applies them to an incident in memory;
- which fields: `visible_fields()` picks them from the field tables of `domain.fields`
  (the serialisers and the documented response models both use it);
- which status updates: `shows_update()` (the public does not see a note for the team,
  `is_team_note()`);
- which events: `event_for()` gives the form of a stored CloudEvents document an audience
  may receive (the public timeline, the anonymous live stream, and integrations).

It lives in `domain/` because it is a product rule every layer needs (projections for the
SQL, the API for answers, followers for the public form of an event), and the domain is
what all of them may import. It does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from domain.fields import INCIDENT_FIELDS, POSTMORTEM_FIELDS, UPDATE_FIELDS, Field
from domain.incident import Incident


class Audience(StrEnum):
    PUBLIC = "public"
    READER = "reader"


Conditions = Mapping[str, Any]  # a column (or attribute) of an incident -> required value

# Which incidents an audience sees, on every surface but the audit log.
VISIBLE: Mapping[Audience, Conditions] = {
    Audience.READER: {"deleted": False},
    Audience.PUBLIC: {"deleted": False, "is_public": True},
}
# Which incidents the feeds show (feeds are public, whoever asks).
IN_FEEDS: Conditions = {**VISIBLE[Audience.PUBLIC], "rss_enabled": True}
# Which incidents' stored events an audience may read (timeline, live stream): a reader
# reads the whole audit log, deleted incidents included.
AUDITABLE: Mapping[Audience, Conditions] = {
    Audience.READER: {},
    Audience.PUBLIC: VISIBLE[Audience.PUBLIC],
}

# Which postmortems (of an incident the audience sees) it sees: the public only published ones.
POSTMORTEM_VISIBLE: Mapping[Audience, Conditions] = {
    Audience.READER: {},
    Audience.PUBLIC: {"published": True},
}


def is_team_note(public_message: str, status: Any, previous_status: Any) -> bool:
    """A status update that says nothing public and keeps the status: a note for the team.
    Only readers see it; the public sees neither it nor that it was written (it moves no
    public `updated_at`, `version` or ETag)."""
    return not public_message.strip() and status == previous_status


def shows_update(audience: Audience, update: Mapping[str, Any]) -> bool:
    """Whether `audience` sees this status update (by field name) at all."""
    return audience is Audience.READER or not is_team_note(
        update["public_message"], update["status"], update["previous_status"])


def shows(conditions: Conditions, incident: Mapping[str, Any]) -> bool:
    """Whether an incident (its current state by field name) meets the conditions."""
    return all(incident[name] == value for name, value in conditions.items())


def where(conditions: Conditions, alias: str = "") -> tuple[str, list[Any]]:
    """The conditions as an SQL predicate with `?` parameters (`alias.` before each
    column when given)."""
    if not conditions:
        return "1 = 1", []
    prefix = f"{alias}." if alias else ""
    return (" AND ".join(f"{prefix}{name} = ?" for name in conditions),
            list(conditions.values()))


def visible_fields(fields: tuple[Field, ...], audience: Audience) -> tuple[Field, ...]:
    """The fields of a resource (incident or status update) an audience sees."""
    if audience is Audience.READER:
        return fields
    return tuple(f for f in fields if not f.internal)


# The CloudEvents context attributes anyone may see; extensions (the client's
# idempotency key, ...) are not among them.
PUBLIC_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype",
     "dataschema", "data"})
_DATA_FIELDS: Mapping[str, tuple[Field, ...]] = {
    Incident.Created.TOPIC: INCIDENT_FIELDS,
    Incident.DetailsChanged.TOPIC: INCIDENT_FIELDS,
    Incident.UpdateAdded.TOPIC: UPDATE_FIELDS,
    Incident.Resolved.TOPIC: INCIDENT_FIELDS,
    Incident.Deleted.TOPIC: INCIDENT_FIELDS,
    Incident.PostmortemUpdated.TOPIC: POSTMORTEM_FIELDS,
}
# Events the public receives only when their `data` meets these conditions (a draft
# postmortem is not public).
_PUBLIC_WHEN: Mapping[str, Conditions] = {
    Incident.PostmortemUpdated.TOPIC: POSTMORTEM_VISIBLE[Audience.PUBLIC],
}


def public_data_fields(event_type: str) -> frozenset[str]:
    """The `data` fields of an event of this type that anyone may see (an unknown type:
    only the incident's id)."""
    fields = _DATA_FIELDS.get(event_type, ())
    return frozenset({"incident_id"} | {f.name for f in visible_fields(fields, Audience.PUBLIC)})


def event_for(audience: Audience, document: bytes) -> bytes | None:
    """The stored CloudEvents document as this audience may receive it: readers get the
    stored bytes; the public gets it without extensions and internal fields, or None when
    nothing public is left (a change of internal notes alone, a note for the team, an
    unpublished postmortem)."""
    if audience is Audience.READER:
        return document
    event = json.loads(document)
    condition = _PUBLIC_WHEN.get(event["type"])
    stored = event.get("data") or {}
    if condition is not None and not all(
            stored.get(name) == value for name, value in condition.items()):
        return None
    if event["type"] == Incident.UpdateAdded.TOPIC and is_team_note(
            stored.get("public_message") or "", stored.get("status"),
            stored.get("previous_status")):
        return None  # a note for the team: the public does not learn it was written
    shown = public_data_fields(event["type"])
    data = {k: v for k, v in (event.get("data") or {}).items() if k in shown}
    if set(data) <= {"incident_id"} and event["type"] == Incident.DetailsChanged.TOPIC:
        return None
    public = {k: v for k, v in event.items() if k in PUBLIC_ATTRIBUTES}
    if "data" in public:
        public["data"] = data
    return json.dumps(public, separators=(",", ":"), ensure_ascii=False).encode()
