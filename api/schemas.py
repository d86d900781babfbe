"""Request and response bodies of the HTTP API, derived from the field tables of
`domain.fields` (names, types, defaults, limits) and, for answers, from the field sets of
`domain.visibility`: each resource has one model per audience, so `/openapi.json`
describes exactly what is sent (a public answer is documented without internal fields).
The answers themselves are built by `projections.incident_view` from the same field sets.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    create_model,
    model_validator,
)

from domain import fields
from domain.fields import INCIDENT_FIELDS, POSTMORTEM_FIELDS, REQUIRED, UPDATE_FIELDS, Names
from domain.values import Severity, Status
from domain.visibility import Audience, visible_fields

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
    {*(f.name for f in INCIDENT_FIELDS if f.server_owned), "updates", "deleted"})


def _text(field: fields.Field) -> Any:
    return Annotated[str, StringConstraints(
        strip_whitespace=True if field.strip else None, min_length=field.min_length,
        max_length=field.max_length), Storable]


def _input_type(field: fields.Field) -> Any:
    """What a client may send for the field."""
    kind = field.kind
    if kind is str:
        return _text(field)
    if kind == Names:
        return Annotated[list[_text(field)], Field(max_length=field.max_items)]  # type: ignore[misc]
    if kind is datetime:
        return Moment
    if kind is bool:
        return Flag
    return kind


def _given(field: fields.Field) -> tuple[Any, Any]:
    """The field of a body that declares a new resource."""
    kind, about = _input_type(field), field.description
    if field.default is REQUIRED:
        return kind, Field(description=about)
    if field.default is None:
        return kind | None, Field(None, description=about)
    if field.kind == Names:
        return kind, Field(default_factory=list, description=about)
    return kind, Field(field.default, description=about)


def _changed(field: fields.Field) -> tuple[Any, Any]:
    """The field of a partial change: left out keeps it; null is refused, naming it."""
    return (Annotated[_input_type(field) | None, AfterValidator(not_null)],
            Field(None, description=field.description))


def to_domain(field: fields.Field, value: Any) -> Any:
    """A value as the write side takes it (lists of names as tuples)."""
    return tuple(value) if field.kind == Names and value is not None else value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_table: ClassVar[dict[str, fields.Field]] = {}

    def given(self) -> dict[str, Any]:
        """The fields the client sent, as the write side takes them."""
        return {name: to_domain(self.field_table[name], getattr(self, name))
                for name in self.model_fields_set}

    def values(self) -> dict[str, Any]:
        """Every field, sent or defaulted, as the write side takes them."""
        return {name: to_domain(self.field_table[name], getattr(self, name))
                for name in type(self).model_fields}


class _UpdateBody(_Body):
    @model_validator(mode="after")
    def _says_something(self) -> Self:
        sent = self.model_dump(include={"status", "message", "public_message"})
        if sent["status"] is None and not sent["message"].strip() \
                and not sent["public_message"].strip():
            raise ValueError("an update needs a status, a message or a public_message")
        return self


def _body(name: str, base: type[_Body], table: tuple[fields.Field, ...],
          field: Any, doc: str) -> type[_Body]:
    chosen = {f.name: f for f in table}
    model = create_model(name, __base__=base, __doc__=doc,
                         **{n: field(f) for n, f in chosen.items()})
    model.field_table = chosen
    return model


# mypy sees the bases; FastAPI and clients see the fields derived from `domain.fields`.
_POSTMORTEM_GIVEN = tuple(f for f in POSTMORTEM_FIELDS if f.given)
if TYPE_CHECKING:
    IncidentCreate = _Body
    IncidentChange = _Body
    UpdateCreate = _UpdateBody
    PostmortemWrite = _Body
    PostmortemDraft = _Body
else:
    IncidentCreate = _body(
        "IncidentCreate", _Body, tuple(f for f in INCIDENT_FIELDS if f.given), _given,
        "A new incident: the fields left out take their defaults.")
    IncidentChange = _body(
        "IncidentChange", _Body, tuple(f for f in INCIDENT_FIELDS if f.changeable), _changed,
        "A partial change of details: only the fields sent are changed; null is refused "
        "(naming the field), as every detail has a value.")
    UpdateCreate = _body(
        "UpdateCreate", _UpdateBody, tuple(f for f in UPDATE_FIELDS if f.given), _given,
        "A status update: it needs a status, a message or a public_message.")
    PostmortemWrite = _body(
        "PostmortemWrite", _Body, _POSTMORTEM_GIVEN, _given,
        "The incident's postmortem, whole: it replaces the one written before.")
    PostmortemDraft = _body(
        "PostmortemDraft", _Body, tuple(f for f in _POSTMORTEM_GIVEN if f.name == "body"),
        _given, "Markdown to preview as the public page would show it.")


# Answers.


class _Answer(BaseModel):
    # Documented as `additionalProperties: false`: an answer holds these fields and no others.
    model_config = ConfigDict(extra="forbid")


def _output_type(field: fields.Field) -> Any:
    kind = field.kind
    if kind == Names:
        kind = list[str]
    elif kind is datetime:
        kind = AwareDatetime
    return kind | None if field.nullable else kind


def _answer(name: str, table: tuple[fields.Field, ...], audience: Audience, doc: str,
            **more: Any) -> type[BaseModel]:
    shown: dict[str, Any] = {f.name: (_output_type(f), Field(description=f.description))
                             for f in visible_fields(table, audience)}
    return create_model(name, __base__=_Answer, __doc__=doc, **shown, **more)


_READER, _PUBLIC = Audience.READER, Audience.PUBLIC
StatusUpdate = _answer("StatusUpdate", UPDATE_FIELDS, _READER,
                       "A status update, as a reader token sees it.")
PublicStatusUpdate = _answer("PublicStatusUpdate", UPDATE_FIELDS, _PUBLIC,
                             "A status update without a token: no internal message.")
Postmortem = _answer("Postmortem", POSTMORTEM_FIELDS, _READER,
                     "An incident's postmortem (Markdown).")
_POSTMORTEM_ANSWER = (Postmortem | None, Field(description=(
    "the postmortem; null when there is none, or (without a token) while it is not "
    "published")))
IncidentItem = _answer("IncidentItem", INCIDENT_FIELDS, _READER,
                       "An incident in a list, as a reader token sees it.")
PublicIncidentItem = _answer("PublicIncidentItem", INCIDENT_FIELDS, _PUBLIC,
                             "An incident in a list, without a token: no internal notes.")
Incident = _answer("Incident", INCIDENT_FIELDS, _READER,
                   "An incident with its status updates, as a reader token sees it.",
                   updates=(list[StatusUpdate], Field(description="oldest first")),  # type: ignore[valid-type]
                   postmortem=_POSTMORTEM_ANSWER)
PublicIncident = _answer(
    "PublicIncident", INCIDENT_FIELDS, _PUBLIC,
    "An incident with its status updates, without a token: public incidents only, "
    "without internal notes and internal update messages.",
    updates=(list[PublicStatusUpdate], Field(description="oldest first")),  # type: ignore[valid-type]
    postmortem=_POSTMORTEM_ANSWER)


class RenderedMarkdown(_Answer):
    html: str = Field(description="the Markdown as sanitised HTML, as the public page "
                                  "shows it")


def _page(name: str, item: type[BaseModel], doc: str) -> type[BaseModel]:
    return create_model(
        name, __base__=_Answer, __doc__=doc,
        items=(list[item], Field(description="newest first")),  # type: ignore[valid-type]
        total=(int, Field(description="how many incidents match the filters")),
        next_cursor=(str | None, Field(description="pass as `cursor` for the next page; "
                                                   "null on the last page")))


IncidentPage = _page("IncidentPage", IncidentItem, "A page of incidents (reader token).")
PublicIncidentPage = _page("PublicIncidentPage", PublicIncidentItem,
                           "A page of public incidents (no token).")


class ServiceState(_Answer):
    name: str
    state: str = Field(description="the worst severity among the service's active "
                                   "incidents other than maintenance; else `maintenance` "
                                   "while a maintenance of it is in progress; else "
                                   "`operational`")


class MaintenanceCounts(_Answer):
    scheduled: int = Field(description="maintenance declared before its window, waiting")
    in_progress: int = Field(description="active incidents of type maintenance")


class Summary(_Answer):
    """Counts for the summary cards: of public incidents without a token, of all with a
    reader token (deleted incidents never count)."""

    total: int
    active: int
    resolved: int = Field(description="resolved or post-incident")
    by_status: dict[str, int]
    by_severity: dict[str, int]
    active_by_severity: dict[str, int] = Field(
        description="active incidents by severity, maintenance left out (it counts under "
                    "`maintenance.in_progress`)")
    by_type: dict[str, int]
    maintenance: MaintenanceCounts
    services: list[ServiceState]


class JsonFeedIncident(_Answer):
    """The `_incident` extension of a JSON Feed item."""

    status: str
    severity: str
    incident_type: str
    services: list[str]


class JsonFeedItem(_Answer):
    """One public incident, as the RSS feed's item."""

    id: str = Field(description="the incident's page (the RSS guid)")
    url: str
    title: str
    content_text: str
    content_html: str | None = Field(None, description="a postmortem's HTML")
    date_published: AwareDatetime
    date_modified: AwareDatetime = Field(description="its last public change")
    tags: list[str]
    incident: JsonFeedIncident = Field(alias="_incident")


class JsonFeedAuthor(_Answer):
    name: str


class JsonFeed(_Answer):
    """A JSON Feed 1.1 document (https://www.jsonfeed.org/version/1.1/)."""

    version: str = Field(description="`https://jsonfeed.org/version/1.1`")
    title: str
    home_page_url: str
    feed_url: str
    description: str
    language: str
    authors: list[JsonFeedAuthor]
    items: list[JsonFeedItem]


class CloudEventDocument(BaseModel):
    """A stored CloudEvents 1.0 document. Without a reader token it carries no extension
    attributes and `data` holds no internal fields (`internal_notes`, an update's
    `message`)."""

    model_config = ConfigDict(extra="allow")
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: AwareDatetime
    datacontenttype: str
    data: dict[str, Any]


class Timeline(_Answer):
    incident_id: str
    items: list[CloudEventDocument] = Field(description="the incident's events, oldest first")


class EventPage(_Answer):
    items: list[CloudEventDocument] = Field(description="the stored documents, byte for byte")
    next_after: int | None = Field(description="pass as `after` for the next page; null at "
                                               "the end")
    last_position: int


class Spread(_Answer):
    median: float = Field(description="seconds")
    p90: float = Field(description="seconds; the 90th percentile, interpolated linearly "
                                   "between the closest ranks")


class LifecycleFigures(_Answer):
    """The figures of a set of incidents; durations are measured from the declaration."""

    count: int = Field(description="incidents that started in the window")
    resolved: int = Field(description="of them, resolved or in post-incident review")
    mtta_seconds: Spread | None = Field(
        description="time to acknowledge (the first status update); null when none was")
    mttr_seconds: Spread | None = Field(
        description="time to resolve (its last resolution); null when none is resolved")
    response_target_met_ratio: float | None = Field(
        description="of the responses that can be judged (given, or overdue), the share "
                    "given by their target (RESPONSE_TARGETS); null when none can")
    time_in_status_seconds: dict[str, float | None] = Field(
        description=f"per status an incident works through "
                    f"({', '.join(s.value for s in Status if s.is_active)}): the median "
                    "time incidents spent in it (the current stay counted up to now); "
                    "null when none was in it")


if TYPE_CHECKING:
    BySeverity = _Answer
else:
    BySeverity = create_model(
        "BySeverity", __base__=_Answer, __doc__="The figures per severity.",
        **{s.value: (LifecycleFigures, ...) for s in Severity})


class LifecycleReport(_Answer):
    """How fast incidents were acknowledged and resolved (reader token)."""

    overall: LifecycleFigures
    by_severity: BySeverity
