"""An incident as every answer shows it: the one serialiser of incidents and status
updates.

It takes a record (the incident's fields by name) and gives the JSON body an audience may
see: the fields of `domain.visibility.visible_fields`, in the order of `domain.fields`,
moments in RFC 3339 (UTC, `Z`), lists as lists, enums as their value. Records come from the
audit fold (`RECORDS`: command answers, `as_of`) or straight from a read table's row
(`Serialiser(projections.columns.json_writer)`: the list, one incident, the pages), each
value written from the form its source holds it in. The response models of
`api/schemas.py` are derived from the same field sets.

The public is shown an incident's `updated_at` and `version` as they stood at its last
public change (`incident_history.PUBLIC_STAMPS`), and none of its notes for the team
(`domain.visibility.shows_update`): what only readers see changes nothing of the public's
answer, not even when it was last changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from operator import itemgetter
from typing import Any

from domain.fields import INCIDENT_FIELDS, POSTMORTEM_FIELDS, UPDATE_FIELDS, Field, Names
from domain.response import ResponsePolicy
from domain.visibility import POSTMORTEM_VISIBLE, Audience, shows, shows_update, visible_fields
from projections.base import rfc3339
from projections.incident_history import PUBLIC_STAMPS, PUBLIC_UPDATE_AT

Body = dict[str, Any]
Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    """The fields an audience sees, in order, and how those not written as they are are
    written (by position); each read from the record's value of the same name, or of the
    name `sources` gives."""

    names: tuple[str, ...]
    read: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    writes: tuple[tuple[int, Convert], ...]

    @classmethod
    def of(cls, fields: tuple[tuple[str, Convert | None], ...],
           sources: Mapping[str, str] | None = None) -> _Plan:
        names = tuple(name for name, _ in fields)
        return cls(names, itemgetter(*(name if sources is None else sources.get(name, name)
                                       for name in names)),
                   tuple((n, write) for n, (_, write) in enumerate(fields) if write))

    def body(self, record: Mapping[str, Any]) -> Body:
        values = list(self.read(record))
        for n, write in self.writes:
            values[n] = write(values[n])
        return dict(zip(self.names, values, strict=True))


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def encoder(field: Field) -> Convert | None:
    """How the field's value is written in JSON; None when it is written as it is."""
    kind = field.kind
    if kind is datetime:
        encode: Convert = rfc3339
    elif kind == Names:
        encode = list
    elif isinstance(kind, type) and issubclass(kind, Enum):
        encode = _enum_value
    else:
        return None
    if field.nullable:
        return lambda value: None if value is None else encode(value)
    return encode


class Serialiser:
    """Writes records as answers: the fields each audience sees, in order, each written by
    `writer(field)` (None: as it is) from the form the records' source holds it in."""

    def __init__(self, writer: Callable[[Field], Convert | None] = encoder) -> None:
        def plans(fields: tuple[Field, ...], public: Mapping[str, str] | None = None
                  ) -> dict[Audience, _Plan]:
            return {audience: _Plan.of(tuple((f.name, writer(f))
                                             for f in visible_fields(fields, audience)),
                                       public if audience is Audience.PUBLIC else None)
                    for audience in Audience}

        self._incident = plans(INCIDENT_FIELDS, PUBLIC_STAMPS)
        self._update = plans(UPDATE_FIELDS)
        self._postmortem = plans(POSTMORTEM_FIELDS)

    def updates(self, updates: Iterable[Mapping[str, Any]], audience: Audience
                ) -> list[Body]:
        """Status updates (in order) as `audience` may see them, leaving out those it may
        not see at all."""
        plan = self._update[audience]
        return [plan.body(u) for u in updates if shows_update(audience, u)]

    def postmortem(self, postmortem: Mapping[str, Any] | None, audience: Audience
                   ) -> Body | None:
        """The postmortem if `audience` may see it (the public: once published)."""
        if postmortem is None or not shows(POSTMORTEM_VISIBLE[audience], postmortem):
            return None
        return self._postmortem[audience].body(postmortem)

    def incident(self, record: Mapping[str, Any], audience: Audience, *,
                 updates: list[Body] | None = None,
                 postmortem: Mapping[str, Any] | None = None) -> Body:
        """One incident as `audience` may see it, without status updates (an item of a
        list) or with `updates`, already written for the same audience, and its
        `postmortem` (as its source holds it; null when there is none to show)."""
        body = self._incident[audience].body(record)
        if updates is not None:
            body["updates"] = updates
            body["postmortem"] = self.postmortem(postmortem, audience)
        return body


RECORDS = Serialiser()


def _same(value: Any) -> Any:
    return value


def with_response(record: Mapping[str, Any], policy: ResponsePolicy, now: datetime, *,
                  read: Convert = _same, write: Convert = _same) -> dict[str, Any]:
    """The record with the derived fields of the response (`domain.response`) as they
    stand at `now`; `read` and `write` convert moments from and to the form the record's
    source holds them in (the fold: datetimes; a read table: microseconds)."""
    acknowledged = record["acknowledged_at"]
    facts = policy.facts(
        declared_at=read(record["created_at"]), severity=record["severity"],
        status=record["status"], incident_type=record["incident_type"],
        acknowledged_at=None if acknowledged is None else read(acknowledged),
        public_update_at=read(record[PUBLIC_UPDATE_AT]), now=now)
    return {**record,
            "response_due_at": None if facts.due_at is None else write(facts.due_at),
            "response_breached": facts.breached, "update_overdue": facts.update_overdue}


def response_steady_until(record: Mapping[str, Any], policy: ResponsePolicy, now: datetime,
                          *, read: Convert = _same) -> datetime | None:
    """The last moment up to which `with_response` writes the same derived fields for
    the record as at `now` (None: for good, while the record stays as it is)."""
    acknowledged = record["acknowledged_at"]
    return policy.steady_until(
        declared_at=read(record["created_at"]), severity=record["severity"],
        status=record["status"], incident_type=record["incident_type"],
        acknowledged_at=None if acknowledged is None else read(acknowledged),
        public_update_at=read(record[PUBLIC_UPDATE_AT]), now=now)


def incident_body(record: Mapping[str, Any], audience: Audience, policy: ResponsePolicy,
                  now: datetime) -> Body:
    """An incident of the audit fold, with its status updates (oldest first), as
    `audience` may see it at `now`."""
    record = with_response(record, policy, now)
    return RECORDS.incident(record, audience, updates=RECORDS.updates(record["updates"],
                                                                     audience),
                            postmortem=record["postmortem"])
