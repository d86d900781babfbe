"""The shape of an incident and of its status updates, declared once.

Each field says its name, the type of its value, its default when a client leaves it out,
its limits, who sets it (a client when declaring, a client later as a detail, or the
service) and whether it is internal (`domain/visibility.py` says who sees those). The HTTP
request and response models, the read table's columns, the write side's inputs and the
audit fold are derived from these tables; adding a field starts here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.values import IncidentType, Severity, Status, UpdateType


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # the default of a field a client must send
Names = tuple[str, ...]


@dataclass(frozen=True, eq=False)  # each field is one object: compared and hashed by identity
class Field:
    name: str
    kind: Any  # the value's type in the domain: str, bool, int, datetime, Names or an enum
    description: str = ""
    # Set by a client when declaring (`given`), and changeable afterwards (`changeable`);
    # neither: set by the service only.
    given: bool = False
    changeable: bool = False
    # What a client that leaves it out gets; None for a given field means "decided by the
    # service" (now, for a start time; unchanged, for the status of an update).
    default: Any = REQUIRED
    nullable: bool = False  # its value may be null (in answers too)
    internal: bool = False  # only readers see it
    # Worked out when an answer is written (from the clock and the settings), never stored.
    derived: bool = False
    # Limits: characters of a text (of each name, for Names), and names in a list.
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    strip: bool = False  # surrounding white space is dropped

    @property
    def server_owned(self) -> bool:
        return not self.given


TEXT = 10_000
_NAME: dict[str, Any] = {"min_length": 1, "max_length": 100, "strip": True}
_NAMES: dict[str, Any] = {**_NAME, "max_items": 50, "default": ()}


def _detail(name: str, kind: Any, description: str, **options: Any) -> Field:
    return Field(name, kind, description, given=True, changeable=True, **options)


INCIDENT_FIELDS: tuple[Field, ...] = (
    Field("id", str, "`incident-` followed by an opaque suffix; the CloudEvents subject"),
    _detail("title", str, "what is wrong, in a few words", min_length=1, max_length=200,
            strip=True),
    _detail("description", str, "more about it", default="", max_length=TEXT),
    Field("status", Status, "where the incident stands; changes only through status "
          "updates", given=True, default=Status.INVESTIGATING),
    _detail("severity", Severity, "how bad it is", default=Severity.MEDIUM),
    _detail("incident_type", IncidentType, "what kind of incident",
            default=IncidentType.OTHER),
    _detail("affected_services", Names, "the services it affects", **_NAMES),
    _detail("affected_regions", Names, "the regions it affects", **_NAMES),
    _detail("start_time", datetime, "when it started (default: when it was declared)",
            default=None),
    _detail("scheduled_start", datetime, "maintenance only: when its window starts (RFC "
            "3339); declared before it, the incident is `scheduled` until then",
            default=None, nullable=True),
    _detail("scheduled_end", datetime, "maintenance only: when its window ends (after "
            "`scheduled_start`); the service resolves it then", default=None, nullable=True),
    Field("resolved_at", datetime, "when it was resolved; null while it is not (a reopened "
          "incident clears it)", nullable=True),
    _detail("public_message", str, "what the public sees", default="", max_length=TEXT),
    _detail("internal_notes", str, "notes for the team", default="", max_length=TEXT,
            internal=True),
    _detail("is_public", bool, "shown without a reader token", default=True),
    _detail("rss_enabled", bool, "shown in the feeds (when public)", default=True),
    Field("created_at", datetime, "when it was declared"),
    Field("updated_at", datetime, "when it last changed (without a token: when it last "
          "changed in what the public sees; internal notes and notes for the team move "
          "nothing)"),
    Field("version", int, "the incident's version, also its ETag (without a token: its "
          "version at its last change the public sees)"),
    # The response (domain/response.py): reader-only, like every figure of how the team
    # performs against its own targets.
    Field("acknowledged_at", datetime, "when the first status update after the declaration "
          "was posted by someone (the response; the service's own updates do not count); "
          "null until then", nullable=True, internal=True),
    Field("response_due_at", datetime, "when the response is due: the declaration plus the "
          "target for the incident's severity (RESPONSE_TARGETS); null for a maintenance, "
          "which has no response target", nullable=True, internal=True, derived=True),
    Field("response_breached", bool, "the response came after it was due, or it is due and "
          "has not come (never for a maintenance)", internal=True, derived=True),
    Field("update_overdue", bool, "an active incident whose public has heard nothing (a "
          "status update with a public message, or the declaration) for "
          "UPDATE_REMINDER_MINUTES", internal=True, derived=True),
)

UPDATE_FIELDS: tuple[Field, ...] = (
    Field("number", int, "1 for the incident's first update, and so on"),
    Field("status", Status, "the status it moves the incident to (default: unchanged)",
          given=True, default=None),
    Field("previous_status", Status, "the status before it"),
    Field("message", str, "for the team", given=True, default="", max_length=TEXT,
          internal=True),
    Field("public_message", str, "what the public sees", given=True, default="",
          max_length=TEXT),
    Field("update_type", UpdateType, "what kind of update", given=True,
          default=UpdateType.STATUS_UPDATE),
    Field("author", str, "who wrote it", given=True, default=None, nullable=True, **_NAME),
    Field("created_at", datetime, "when it was posted"),
)


# A resolved incident's postmortem: Markdown, written and replaced whole by a writer, and
# shown to the public once published (`domain.visibility.POSTMORTEM_VISIBLE`).
POSTMORTEM_TEXT = 50_000
POSTMORTEM_FIELDS: tuple[Field, ...] = (
    Field("body", str, "the postmortem in Markdown (raw HTML is shown as text)", given=True,
          min_length=1, max_length=POSTMORTEM_TEXT),
    Field("published", bool, "shown on the public page and in the feeds", given=True,
          default=False),
    Field("updated_at", datetime, "when it last changed"),
)

INCIDENT = {f.name: f for f in INCIDENT_FIELDS}  # by name
# The fields a read table and the audit fold keep (the derived ones are worked out).
STORED_FIELDS = tuple(f for f in INCIDENT_FIELDS if not f.derived)
# What a client declares an incident with, and what it may change afterwards.
DECLARED_FIELDS = tuple(f for f in INCIDENT_FIELDS if f.given)
DETAIL_FIELDS = tuple(f.name for f in INCIDENT_FIELDS if f.changeable)
# The window of a scheduled maintenance (only incidents of type maintenance have one).
WINDOW_FIELDS = ("scheduled_start", "scheduled_end")


def given_values(fields: tuple[Field, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every field a client may give, of one table: the values given, defaults for the
    rest. Refuses names a client may not give, and a required field left out."""
    allowed = [f for f in fields if f.given]
    unknown = set(given) - {f.name for f in allowed}
    if unknown:
        raise ValueError(f"not a field a client gives: {', '.join(sorted(unknown))}")
    values = {f.name: given.get(f.name, f.default) for f in allowed}
    missing = [name for name, value in values.items() if value is REQUIRED]
    if missing:
        raise ValueError(f"missing: {', '.join(missing)}")
    return values
