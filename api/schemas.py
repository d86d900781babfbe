"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from domain.values import IncidentType, Severity, Status, UpdateType
from projections.incident_history import IncidentRecord, UpdateRecord

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Names = Annotated[list[Name], Field(max_length=50)]
Author = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]

# Fields the server owns: a body that sets them is refused, naming them.
SERVER_OWNED = frozenset(
    {"id", "version", "created_at", "updated_at", "resolved_at", "updates", "deleted"}
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class IncidentCreate(_Body):
    title: Title
    description: Text = ""
    status: Status = Status.INVESTIGATING
    severity: Severity = Severity.MEDIUM
    incident_type: IncidentType = IncidentType.OTHER
    affected_services: Names = Field(default_factory=list)
    affected_regions: Names = Field(default_factory=list)
    start_time: AwareDatetime | None = None
    public_message: Text = ""
    internal_notes: Text = ""
    is_public: bool = True
    rss_enabled: bool = True


class IncidentChange(_Body):
    """A partial change of details: only the fields sent are changed."""

    title: Title | None = None
    description: Text | None = None
    severity: Severity | None = None
    incident_type: IncidentType | None = None
    affected_services: Names | None = None
    affected_regions: Names | None = None
    start_time: AwareDatetime | None = None
    public_message: Text | None = None
    internal_notes: Text | None = None
    is_public: bool | None = None
    rss_enabled: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"may not be null: {', '.join(sorted(nulls))}")
        return self

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
