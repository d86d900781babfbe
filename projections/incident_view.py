"""An incident as every answer shows it: the one serialiser of incidents and status
updates.

It takes a record (the incident's fields by name, from the audit fold or from a read
table's row) and gives the JSON body an audience may see: the fields of
`domain.visibility.visible_fields`, in the order of `domain.fields`, moments in RFC 3339
(UTC, `Z`), lists as lists, enums as their value. The command answers, `GET` of one
incident (also `as_of`), the list, and the pages all go through it, and the response models
of `api/schemas.py` are derived from the same field sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from domain.fields import INCIDENT_FIELDS, UPDATE_FIELDS, Field, Names
from domain.visibility import Audience, visible_fields

Body = dict[str, Any]
_Encode = Callable[[Any], Any]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _keep(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _encoder(field: Field) -> _Encode:
    kind = field.kind
    if kind is datetime:
        encode: _Encode = rfc3339
    elif kind == Names:
        encode = list
    elif isinstance(kind, type) and issubclass(kind, Enum):
        encode = _enum_value
    else:
        encode = _keep
    if field.nullable:
        return lambda value: None if value is None else encode(value)
    return encode


def _plans(fields: tuple[Field, ...]) -> dict[Audience, tuple[tuple[str, _Encode], ...]]:
    """Per audience, the fields it sees and how each is written (worked out once)."""
    return {audience: tuple((f.name, _encoder(f)) for f in visible_fields(fields, audience))
            for audience in Audience}


_INCIDENT = _plans(INCIDENT_FIELDS)
_UPDATE = _plans(UPDATE_FIELDS)


def update_body(update: Mapping[str, Any], audience: Audience) -> Body:
    """One status update as `audience` may see it."""
    return {name: encode(update[name]) for name, encode in _UPDATE[audience]}


def incident_body(record: Mapping[str, Any], audience: Audience, *,
                  with_updates: bool = True) -> Body:
    """One incident as `audience` may see it; with its status updates (oldest first) unless
    it is an item of a list, which carries none."""
    body = {name: encode(record[name]) for name, encode in _INCIDENT[audience]}
    if with_updates:
        body["updates"] = [update_body(u, audience) for u in record["updates"]]
    return body
