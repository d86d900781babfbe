"""What an integration is: a destination (by kind), the filters that choose which events
it receives, and its delivery state. Plain values; the store keeps them, the API shows
them (never the secret, a masked routing key), the engine acts on them."""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from domain.incident import event_type_named
from domain.values import Severity

Kind = Literal["webhook", "slack", "pagerduty", "email"]
KINDS: tuple[Kind, ...] = ("webhook", "slack", "pagerduty", "email")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# Which settings each kind takes, and which of them it needs.
KIND_FIELDS: dict[Kind, tuple[str, ...]] = {
    "webhook": ("url",), "slack": ("url",), "pagerduty": ("routing_key", "url"),
    "email": ("to",),
}
REQUIRED_FIELDS: dict[Kind, tuple[str, ...]] = {
    "webhook": ("url",), "slack": ("url",), "pagerduty": ("routing_key",), "email": ("to",),
}
SEVERITY_RANK = {Severity.MINOR: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3,
                 Severity.CRITICAL: 4}
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret


def new_integration_id() -> str:
    return "integration-" + uuid.uuid4().hex


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def mask(text: str | None) -> str | None:
    """A credential as lists show it: its last four characters only."""
    if text is None:
        return None
    return "****" + text[-4:] if len(text) > 8 else "****"


def event_types_named(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Full CloudEvents types for full or short names, each once (ValueError: unknown)."""
    return tuple(dict.fromkeys(event_type_named(name) for name in names))


@dataclass(frozen=True)
class Filters:
    """Which events an integration receives. Empty `event_types` / `services`: all."""

    event_types: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    min_severity: Severity = Severity.MINOR
    include_internal: bool = False

    def takes_type(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def takes_incident(self, severity: Severity, services: tuple[str, ...]) -> bool:
        if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
            return False
        return not self.services or any(s in self.services for s in services)


@dataclass(frozen=True)
class DeliveryState:
    """How delivery stands: when it last succeeded, since when it fails, how many
    attempts in a row failed and when the next one is due; why it was disabled."""

    last_delivered_at: datetime | None = None
    failing_since: datetime | None = None
    next_attempt_at: datetime | None = None
    failures: int = 0
    disabled_reason: str | None = None


@dataclass(frozen=True)
class Integration:
    id: str
    kind: Kind
    name: str
    enabled: bool
    filters: Filters
    created_at: datetime
    updated_at: datetime
    url: str | None = None
    to: tuple[str, ...] = ()
    routing_key: str | None = None
    secret: str | None = field(default=None, repr=False)
    revision: int = 1
    state: DeliveryState = DeliveryState()

    @property
    def follower_name(self) -> str:
        """The name of its position and lease."""
        return self.id

    def settings(self) -> dict[str, Any]:
        """What the store keeps as the integration's settings (JSON)."""
        return {
            "url": self.url, "to": list(self.to), "routing_key": self.routing_key,
            "event_types": list(self.filters.event_types),
            "services": list(self.filters.services),
            "min_severity": self.filters.min_severity.value,
            "include_internal": self.filters.include_internal,
        }

    def with_settings(self, values: dict[str, Any]) -> Integration:
        """A copy with these settings changed (names as the API has them)."""
        filters = self.filters
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name in ("event_types", "services", "min_severity", "include_internal"):
                filters = replace(filters, **{name: _filter_value(name, value)})
            elif name == "to":
                changes["to"] = tuple(value)
            else:
                changes[name] = value
        return replace(self, filters=filters, **changes)

    def public_view(self) -> dict[str, Any]:
        """The integration as the API shows it: no secret, the routing key masked."""
        shown: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "name": self.name, "enabled": self.enabled,
            "event_types": list(self.filters.event_types),
            "services": list(self.filters.services),
            "min_severity": self.filters.min_severity.value,
            "include_internal": self.filters.include_internal,
        }
        if self.kind in ("webhook", "slack", "pagerduty"):
            shown["url"] = self.url
        if self.kind == "pagerduty":
            shown["routing_key"] = mask(self.routing_key)
        if self.kind == "email":
            shown["to"] = list(self.to)
        shown["created_at"] = self.created_at
        shown["updated_at"] = self.updated_at
        return shown


def _filter_value(name: str, value: Any) -> Any:
    if name == "event_types":
        return event_types_named(list(value))
    if name == "services":
        return tuple(value)
    if name == "min_severity":
        return Severity(value)
    return bool(value)


def from_settings(id: str, kind: Kind, name: str, enabled: bool,  # noqa: A002
                  settings: dict[str, Any], **rest: Any) -> Integration:
    """An integration from its stored settings."""
    filters = Filters(
        event_types=tuple(settings.get("event_types") or ()),
        services=tuple(settings.get("services") or ()),
        min_severity=Severity(settings.get("min_severity") or Severity.MINOR),
        include_internal=bool(settings.get("include_internal")),
    )
    return Integration(id=id, kind=kind, name=name, enabled=enabled, filters=filters,
                       url=settings.get("url"), to=tuple(settings.get("to") or ()),
                       routing_key=settings.get("routing_key"), **rest)
