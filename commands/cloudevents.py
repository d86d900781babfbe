"""Stores each incident event as one CloudEvents 1.0 JSON document.

The document written here is the stored form: `/api/v1/events`, the NATS relay and every
other follower hand out exactly these bytes. The event id is derived from the incident id
and version, so republishing an event downstream is idempotent. The id of the command that
recorded an event travels as an extension attribute: ids alone cannot tell a retry of our
own commit from a rival's event at the same version.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from domain.incident import Incident

SOURCE = "/incident-management"
CONTENT_TYPE = "application/json"
# Extension attribute carrying the client's Idempotency-Key of a status update.
IDEMPOTENCY_EXTENSION = "idempotencykey"
# Extension attribute carrying the id of the command that recorded the event.
COMMAND_EXTENSION = "commandid"
# Extension attribute naming who issued the command: a token's name, or SYSTEM_ACTOR.
ACTOR_EXTENSION = "actor"
SYSTEM_ACTOR = "system"  # the service's own commands
# Event attributes that become CloudEvents attributes rather than `data` fields.
_ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp", "originator_topic")

_json_format = JSONFormat()
# The command whose events are being mapped: the mapper only ever sees domain events, and
# the command id belongs to the save, not to the incident's state.
_recording: ContextVar[tuple[str, str] | None] = ContextVar("recording_command", default=None)


@contextmanager
def recording_command(command_id: str, actor: str = SYSTEM_ACTOR) -> Iterator[None]:
    """Events mapped to stored documents inside this block carry `command_id` and the
    command's `actor`."""
    token = _recording.set((command_id, actor))
    try:
        yield
    finally:
        _recording.reset(token)


def command_id_of(document: bytes) -> str | None:
    """The id of the command that recorded this stored document (None if it has none)."""
    value = json.loads(document).get(COMMAND_EXTENSION)
    return value if isinstance(value, str) else None


def event_id(incident_id: str, version: int) -> str:
    return str(uuid5(NAMESPACE_URL, f"/incident-management/{incident_id}/{version}"))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    return value


Decode = Callable[[Any], Any]


def _keep(value: Any) -> Any:
    return value


def _decoder(kind: Any) -> Decode:
    """How to turn a JSON value back into a field of this type (None stays None)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        inner = _decoder(options[0])
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        return tuple
    if kind is datetime:
        return datetime.fromisoformat
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind
    return _keep


@cache
def _field_decoders(cls: type[Any]) -> dict[str, Decode]:
    hints = typing.get_type_hints(cls)
    return {f.name: _decoder(hints[f.name]) for f in dataclasses.fields(cls)}


class CloudEventMapper(Mapper[str]):
    """Maps incident events to and from their stored CloudEvents documents."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = dict(vars(domain_event))
        incident_id: str = state["originator_id"]
        version: int = state["originator_version"]
        request_key = state.pop("request_key", None)
        data: dict[str, Any] = {"incident_id": incident_id}
        changes = state.pop("changes", None)
        if changes is not None:
            data.update(_to_json_value(changes))
        for name, value in state.items():
            if name not in _ENVELOPE_FIELDS:
                data[name] = _to_json_value(value)
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": event_id(incident_id, version),
            "source": SOURCE,
            "type": get_topic(type(domain_event)),
            "subject": incident_id,
            "time": state["timestamp"],
            "datacontenttype": CONTENT_TYPE,
        }
        if request_key is not None:
            attributes[IDEMPOTENCY_EXTENSION] = request_key
        recording = _recording.get()
        if recording is not None:
            attributes[COMMAND_EXTENSION], attributes[ACTOR_EXTENSION] = recording
        document = _json_format.write(CloudEvent(attributes=attributes, data=data))
        return StoredEvent(
            originator_id=incident_id,
            originator_version=version,
            topic=attributes["type"],
            state=document,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls: Any = resolve_topic(stored_event.topic)
        document = json.loads(stored_event.state)
        data: dict[str, Any] = document.get("data") or {}
        decoders = _field_decoders(cls)
        kwargs: dict[str, Any] = {
            "originator_id": stored_event.originator_id,
            "originator_version": stored_event.originator_version,
            "timestamp": datetime.fromisoformat(document["time"]),
        }
        if "originator_topic" in decoders:
            kwargs["originator_topic"] = get_topic(Incident)
        if "request_key" in decoders:
            kwargs["request_key"] = document.get(IDEMPOTENCY_EXTENSION)
        if "changes" in decoders:
            details = _field_decoders(Incident.Created)
            kwargs["changes"] = {
                name: details[name](value) for name, value in data.items() if name != "incident_id"
            }
        for name, decode in decoders.items():
            if name not in kwargs and name in data:
                kwargs[name] = decode(data[name])
        return cls(**kwargs)
