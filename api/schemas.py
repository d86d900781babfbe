"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from domain.values import IncidentType, Severity, Status, UpdateType
from projections.incident_history import IncidentRecord, UpdateRecord

# NUL cannot be stored in PostgreSQL text, and an unpaired surrogate cannot be encoded:
# text carrying either is refused rather than left to fail later in a read model.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
T = TypeVar("T")


def storable(text: str) -> str:
    if _UNSTORABLE.search(text):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
    return text


def utc_moment(moment: datetime) -> datetime:
    """An instant normalised to UTC; refused if it cannot be (beyond year 1-9999)."""
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("must be an instant between the years 1 and 9999 in UTC") from None


def not_null(value: T | None) -> T:
    if value is None:
        raise ValueError("may not be null; leave the field out to keep it")
    return value


Storable = AfterValidator(storable)
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable
]
Text = Annotated[str, StringConstraints(max_length=10_000), Storable]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Storable
]
Names = Annotated[list[Name], Field(max_length=50)]
Author = Name
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time string, e.g. 2024-01-01T12:00:00Z")


# Strict where JSON is: "yes" is not a boolean, and 1714557600 is not an RFC 3339 time.
Moment = Annotated[AwareDatetime, BeforeValidator(rfc3339_text), AfterValidator(utc_moment)]
Flag = StrictBool

# Fields the server owns: a body that sets them is refused, naming them.
SERVER_OWNED = frozenset(
    {"id", "version", "created_at", "updated_at", "resolved_at", "updates", "deleted"}
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(_Body):
    title: Title
    description: Text = ""
    status: Status = Status.INVESTIGATING
    severity: Severity = Severity.MEDIUM
    incident_type: IncidentType = IncidentType.OTHER
    affected_services: Names = Field(default_factory=list)
    affected_regions: Names = Field(default_factory=list)
    start_time: Moment | None = None
    public_message: Text = ""
    internal_notes: Text = ""
    is_public: Flag = True
    rss_enabled: Flag = True


class IncidentChange(_Body):
    """A partial change of details: only the fields sent are changed; null is refused
    (naming the field), as every detail has a value."""

    title: Annotated[Title | None, AfterValidator(not_null)] = None
    description: Annotated[Text | None, AfterValidator(not_null)] = None
    severity: Annotated[Severity | None, AfterValidator(not_null)] = None
    incident_type: Annotated[IncidentType | None, AfterValidator(not_null)] = None
    affected_services: Annotated[Names | None, AfterValidator(not_null)] = None
    affected_regions: Annotated[Names | None, AfterValidator(not_null)] = None
    start_time: Annotated[Moment | None, AfterValidator(not_null)] = None
    public_message: Annotated[Text | None, AfterValidator(not_null)] = None
    internal_notes: Annotated[Text | None, AfterValidator(not_null)] = None
    is_public: Annotated[Flag | None, AfterValidator(not_null)] = None
    rss_enabled: Annotated[Flag | None, AfterValidator(not_null)] = None

    def changes(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.model_fields_set}
        for name in ("affected_services", "affected_regions"):
            if name in values:
                values[name] = tuple(values[name])
        return values


class UpdateCreate(_Body):
    status: Status | None = None
    message: Text = ""
    public_message: Text = ""
    update_type: UpdateType = UpdateType.STATUS_UPDATE
    author: Author | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if self.status is None and not self.message.strip() and not self.public_message.strip():
            raise ValueError("an update needs a status, a message or a public_message")
        return self


class UpdateOut(BaseModel):
    number: int
    status: Status
    previous_status: Status
    message: str | None = Field(description="internal; only shown to reader tokens")
    public_message: str
    update_type: UpdateType
    author: str | None
    created_at: AwareDatetime

    @classmethod
    def of(cls, update: UpdateRecord, *, internal: bool) -> UpdateOut:
        return cls(
            number=update.number,
            status=update.status,
            previous_status=update.previous_status,
            message=update.message if internal else None,
            public_message=update.public_message,
            update_type=update.update_type,
            author=update.author,
            created_at=update.created_at,
        )


class IncidentOut(BaseModel):
    id: str
    title: str
    description: str
    status: Status
    severity: Severity
    incident_type: IncidentType
    affected_services: list[str]
    affected_regions: list[str]
    start_time: AwareDatetime
    resolved_at: AwareDatetime | None
    public_message: str
    internal_notes: str | None = Field(description="only shown to reader tokens")
    is_public: bool
    rss_enabled: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int
    updates: list[UpdateOut]

    @classmethod
    def of(cls, record: IncidentRecord, *, internal: bool) -> IncidentOut:
        return cls(
            id=record.id,
            title=record.title,
            description=record.description,
            status=record.status,
            severity=record.severity,
            incident_type=record.incident_type,
            affected_services=list(record.affected_services),
            affected_regions=list(record.affected_regions),
            start_time=record.start_time,
            resolved_at=record.resolved_at,
            public_message=record.public_message,
            internal_notes=record.internal_notes if internal else None,
            is_public=record.is_public,
            rss_enabled=record.rss_enabled,
            created_at=record.created_at,
            updated_at=record.updated_at,
            version=record.version,
            updates=[UpdateOut.of(u, internal=internal) for u in record.updates],
        )
