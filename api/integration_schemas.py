"""Request and response bodies of the integrations API."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from api.schemas import Flag, Storable, not_null
from domain.incident import event_type_named
from domain.values import Severity
from infra.integrations.config import Kind
from infra.mail_settings import is_mail_address

_ROUTING_KEY = re.compile(r"^[\x21-\x29\x2b-\x7e]{1,128}$")  # visible ASCII but '*'


def http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return text


def mail_address(text: str) -> str:
    if not is_mail_address(text):
        raise ValueError(f"not a mail address: {text!r}")
    return text


def routing_key(text: str) -> str:
    if not _ROUTING_KEY.match(text):
        raise ValueError("must be the integration key PagerDuty shows (1-128 visible "
                         "characters; a masked key cannot be sent back)")
    return text


def event_type(text: str) -> str:
    return event_type_named(text)


Url = Annotated[str, StringConstraints(max_length=2048), AfterValidator(http_url)]
MailAddress = Annotated[str, StringConstraints(max_length=254), AfterValidator(mail_address)]
Recipients = Annotated[list[MailAddress], Field(min_length=1, max_length=50)]
RoutingKey = Annotated[str, AfterValidator(routing_key)]
EventType = Annotated[str, StringConstraints(max_length=100), AfterValidator(event_type)]
EventTypes = Annotated[list[EventType], Field(max_length=20)]
ServiceName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Storable]
Names = Annotated[list[ServiceName], Field(max_length=50)]
IntegrationName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Storable]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntegrationCreate(_Body):
    kind: Kind
    name: IntegrationName | None = None
    enabled: Flag = True
    event_types: EventTypes = Field(default_factory=list,
                                    description="full or short names; empty: all")
    services: Names = Field(default_factory=list, description="empty: all")
    min_severity: Severity = Severity.MINOR
    include_internal: Flag = Field(
        default=False, description="false: only what an anonymous reader may see")
    url: Url | None = Field(default=None, description="webhook, slack; pagerduty (optional)")
    to: Recipients | None = Field(default=None, description="email: the recipients")
    routing_key: RoutingKey | None = Field(default=None, description="pagerduty")


class IntegrationChange(_Body):
    """Only the fields sent change; null is refused."""

    kind: Annotated[Kind | None, AfterValidator(not_null)] = None
    name: Annotated[IntegrationName | None, AfterValidator(not_null)] = None
    enabled: Annotated[Flag | None, AfterValidator(not_null)] = None
    event_types: Annotated[EventTypes | None, AfterValidator(not_null)] = None
    services: Annotated[Names | None, AfterValidator(not_null)] = None
    min_severity: Annotated[Severity | None, AfterValidator(not_null)] = None
    include_internal: Annotated[Flag | None, AfterValidator(not_null)] = None
    url: Annotated[Url | None, AfterValidator(not_null)] = None
    to: Annotated[Recipients | None, AfterValidator(not_null)] = None
    routing_key: Annotated[RoutingKey | None, AfterValidator(not_null)] = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class Replay(_Body):
    after: StrictInt = Field(ge=0, le=2**62, description="deliver again what is stored after this")


class IntegrationOut(BaseModel):
    id: str
    kind: Kind
    name: str
    enabled: bool
    event_types: list[str]
    services: list[str]
    min_severity: Severity
    include_internal: bool
    url: str | None = None
    to: list[str] | None = None
    routing_key: str | None = Field(default=None, description="masked")
    created_at: str
    updated_at: str
    position: int = Field(description="the store position delivered up to")
    lag: int = Field(description="matching events not delivered yet")
    last_delivered_at: str | None
    failing_since: str | None
    next_attempt_at: str | None
    disabled_reason: str | None


class IntegrationCreated(IntegrationOut):
    secret: str | None = Field(default=None, description="webhook: shown only now and by "
                                                         "rotate-secret")


class IntegrationList(BaseModel):
    items: list[IntegrationOut]


class AttemptOut(BaseModel):
    event_id: str
    position: int | None
    type: str
    attempt: int
    at: str
    outcome: Literal["delivered", "failed"]
    status_code: int | None
    error: str | None
    duration_ms: float


class AttemptList(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None


class ReplayAccepted(BaseModel):
    id: str
    after: int
    head: int
