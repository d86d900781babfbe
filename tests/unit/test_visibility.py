"""The visibility rule and the incident's shape, applied the same way everywhere."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sqlite3
import typing
from datetime import UTC, datetime, timedelta

from eventsourcing.persistence import JSONTranscoder

from api import schemas
from commands.cloudevents import CloudEventMapper
from domain.fields import DECLARED_FIELDS, UPDATE_FIELDS
from domain.incident import Incident
from domain.response import ResponsePolicy
from domain.values import Status
from domain.visibility import (
    AUDITABLE,
    IN_FEEDS,
    VISIBLE,
    Audience,
    event_for,
    shows,
    where,
)
from projections.feed_items import COLUMNS as FEED_COLUMNS
from projections.incident_history import fold
from projections.incident_view import RECORDS, incident_body

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def test_the_sql_predicate_and_the_check_in_memory_agree() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE incidents (id TEXT, is_public BOOLEAN, deleted BOOLEAN, "
               "rss_enabled BOOLEAN)")
    states = [dict(zip(("is_public", "deleted", "rss_enabled"), flags, strict=True))
              for flags in itertools.product((True, False), repeat=3)]
    for n, state in enumerate(states):
        db.execute("INSERT INTO incidents VALUES (?, ?, ?, ?)", (str(n), *state.values()))
    rules = [*VISIBLE.values(), *AUDITABLE.values(), IN_FEEDS]
    for conditions in rules:
        predicate, params = where(conditions, "i")
        found = {r[0] for r in db.execute(
            f"SELECT id FROM incidents i WHERE {predicate}", params)}
        assert found == {str(n) for n, s in enumerate(states) if shows(conditions, s)}
    public = VISIBLE[Audience.PUBLIC]
    assert shows(public, {"is_public": True, "deleted": False})
    assert not shows(public, {"is_public": False, "deleted": False})
    assert not shows(public, {"is_public": True, "deleted": True})
    assert not shows(VISIBLE[Audience.READER], {"is_public": True, "deleted": True})


def stored_documents() -> list[bytes]:
    incident = Incident.declare(incident_id="incident-v", at=T0, title="Login fails",
                                public_message="Looking", internal_notes="SECRET notes")
    incident.change_details(at=T0 + timedelta(minutes=1),
                            changes={"internal_notes": "SECRET changed"})
    incident.change_details(at=T0 + timedelta(minutes=2),
                            changes={"title": "Login slow", "internal_notes": "SECRET both"})
    # A note for the team: no public message, the status kept.
    incident.add_update(at=T0 + timedelta(minutes=2, seconds=30), max_updates=10,
                        status=incident.status, message="SECRET team note",
                        public_message="", request_key=None)
    incident.add_update(at=T0 + timedelta(minutes=3), max_updates=10, status=Status.RESOLVED,
                        message="SECRET cause", public_message="Fixed", request_key="key-1")
    incident.delete(at=T0 + timedelta(minutes=4))
    mapper = CloudEventMapper(JSONTranscoder())
    return [mapper.to_stored_event(e).state for e in incident.collect_events()]


def test_readers_get_the_stored_event_and_the_public_its_public_form() -> None:
    documents = stored_documents()
    assert [event_for(Audience.READER, d) for d in documents] == documents
    public = [event_for(Audience.PUBLIC, d) for d in documents]
    assert public[1] is None  # a change of internal notes alone: nothing public left
    assert public[3] is None  # a note for the team: not even that it was written
    shown = [json.loads(d) for d in public if d is not None]
    assert [e["type"].rsplit(".", 1)[1] for e in shown] == [
        "created", "updated", "update_added", "resolved", "deleted"]
    for event in shown:
        assert "SECRET" not in json.dumps(event)
        assert "idempotencykey" not in event
    assert shown[0]["data"]["public_message"] == "Looking"
    assert shown[1]["data"] == {"incident_id": "incident-v", "title": "Login slow"}
    assert shown[2]["data"]["public_message"] == "Fixed"
    assert "message" not in shown[2]["data"]
    # Everything else of the stored document is kept as it was.
    stored = json.loads(documents[0])
    assert {k: v for k, v in stored.items() if k != "data"} == {
        k: v for k, v in shown[0].items() if k != "data"}


def test_the_public_form_keeps_no_attribute_it_does_not_know() -> None:
    document = json.loads(stored_documents()[0])
    document["actor"] = "alice"
    document["commandid"] = "c0ffee"
    document["data"]["pager"] = "SECRET"
    public = event_for(Audience.PUBLIC, json.dumps(document).encode())
    assert public is not None
    assert not {"actor", "commandid"} & set(json.loads(public))
    assert "SECRET" not in public.decode()


def test_the_events_carry_the_declared_fields() -> None:
    hints = typing.get_type_hints(Incident.Created)
    carried = {f.name for f in dataclasses.fields(Incident.Created)} - _ENVELOPE
    assert carried == {f.name for f in DECLARED_FIELDS} | {"request_key"}
    for field in DECLARED_FIELDS:
        kind = field.kind | None if field.nullable else field.kind
        assert hints[field.name] == kind, field.name
    hints = typing.get_type_hints(Incident.UpdateAdded)
    carried = {f.name for f in dataclasses.fields(Incident.UpdateAdded)} - _ENVELOPE
    assert carried == {f.name for f in UPDATE_FIELDS} - {"created_at"} | {"request_key"}
    for field in UPDATE_FIELDS:
        if field.name != "created_at":
            assert hints[field.name] in (field.kind, field.kind | None), field.name


def test_feeds_hold_no_internal_field() -> None:
    internal = {f.name for f in (*DECLARED_FIELDS, *UPDATE_FIELDS) if f.internal}
    assert internal == {"internal_notes", "message"}
    assert not internal & set(FEED_COLUMNS)


def test_the_answer_an_audience_gets_is_the_model_documented_for_it() -> None:
    incident = Incident.declare(incident_id="incident-w", at=T0, title="x",
                                internal_notes="SECRET")
    incident.add_update(at=T0, max_updates=10, message="SECRET", public_message="p")
    record = fold(list(incident.collect_events()))  # type: ignore[arg-type]
    assert record is not None
    public = incident_body(record, Audience.PUBLIC, ResponsePolicy(), T0)
    reader = incident_body(record, Audience.READER, ResponsePolicy(), T0)
    assert "SECRET" not in json.dumps(public)
    # How the team performs against its own targets is for readers only.
    assert not {"acknowledged_at", "response_due_at", "response_breached",
                "update_overdue"} & set(public)
    assert reader["acknowledged_at"] is not None
    assert reader["response_breached"] is False
    assert reader["internal_notes"] == "SECRET"
    assert reader["updates"][0]["message"] == "SECRET"
    assert schemas.PublicIncident.model_validate(public)
    assert schemas.Incident.model_validate(reader)
    assert set(public) == set(schemas.PublicIncident.model_fields)
    assert set(reader) == set(schemas.Incident.model_fields)
    item = RECORDS.incident(record, Audience.PUBLIC)
    assert set(item) == set(schemas.PublicIncidentItem.model_fields)
