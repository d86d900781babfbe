"""Each incident event is stored as one valid CloudEvents 1.0 JSON document."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cloudevents.core.formats.json import JSONFormat
from eventsourcing.persistence import JSONTranscoder

from commands.cloudevents import CloudEventMapper, command_id_of, event_id, recording_command
from domain.incident import Incident
from domain.values import IncidentType, Severity, Status

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def every_kind_of_event() -> list[Incident.Event]:
    incident = Incident.declare(
        incident_id="incident-abc123",
        at=T0,
        title="Database Connection Issues",
        severity=Severity.HIGH,
        incident_type=IncidentType.OUTAGE,
        affected_services=("database", "api"),
        affected_regions=("eu-west-1",),
        internal_notes="pool exhausted",
    )
    incident.change_details(at=T0, changes={"title": "DB issues", "affected_services": ("db",)})
    incident.add_update(at=T0, max_updates=10, status=Status.RESOLVED, request_key="k-1")
    incident.delete(at=T0)
    return list(incident.collect_events())  # type: ignore[arg-type]


def test_the_stored_document_is_a_valid_cloudevent_with_the_product_schema() -> None:
    mapper = CloudEventMapper(JSONTranscoder())
    events = every_kind_of_event()
    stored = [mapper.to_stored_event(e) for e in events]
    read = [JSONFormat().read(None, s.state) for s in stored]  # validates strictly
    assert [e.get_type() for e in read] == [
        "com.example.incident.created",
        "com.example.incident.updated",
        "com.example.incident.update_added",
        "com.example.incident.resolved",
        "com.example.incident.deleted",
    ]
    for event, document in zip(events, read, strict=True):
        assert document.get_source() == "/incident-management"
        assert document.get_subject() == "incident-abc123"
        assert document.get_time() == T0
        assert document.get_id() == event_id("incident-abc123", event.originator_version)
        assert document.get_attributes()["datacontenttype"] == "application/json"
    created = read[0].get_data()
    assert created == {
        "incident_id": "incident-abc123",
        "title": "Database Connection Issues",
        "description": "",
        "status": "investigating",
        "severity": "high",
        "incident_type": "outage",
        "affected_services": ["database", "api"],
        "affected_regions": ["eu-west-1"],
        "start_time": "2024-01-01T12:00:00Z",
        "scheduled_start": None,
        "scheduled_end": None,
        "public_message": "",
        "internal_notes": "pool exhausted",
        "is_public": True,
        "rss_enabled": True,
    }
    assert read[1].get_data() == {
        "incident_id": "incident-abc123", "title": "DB issues", "affected_services": ["db"]
    }
    assert read[2].get_attributes()["idempotencykey"] == "k-1"
    assert read[3].get_data() == {"incident_id": "incident-abc123",
                                  "resolved_at": "2024-01-01T12:00:00Z"}


def test_documents_read_back_as_the_same_domain_events() -> None:
    mapper = CloudEventMapper(JSONTranscoder())
    for event in every_kind_of_event():
        assert mapper.to_domain_event(mapper.to_stored_event(event)) == event


def test_event_ids_are_unique_and_stable() -> None:
    ids = {event_id("incident-a", v) for v in range(1, 100)}
    ids |= {event_id("incident-b", v) for v in range(1, 100)}
    assert len(ids) == 198
    assert event_id("incident-a", 1) == event_id("incident-a", 1)


def test_the_stored_bytes_are_json_with_the_type_in_the_topic() -> None:
    mapper = CloudEventMapper(JSONTranscoder())
    stored = mapper.to_stored_event(every_kind_of_event()[0])
    assert stored.topic == "com.example.incident.created"
    assert json.loads(stored.state)["type"] == stored.topic


def test_events_mapped_for_a_command_carry_its_id() -> None:
    mapper = CloudEventMapper(JSONTranscoder())
    events = every_kind_of_event()
    with recording_command("c0ffee"):
        stored = [mapper.to_stored_event(e) for e in events]
    for document in stored:
        read = JSONFormat().read(None, document.state)  # a valid extension attribute
        assert read.get_attributes()["commandid"] == "c0ffee"
        assert command_id_of(document.state) == "c0ffee"
    assert [mapper.to_domain_event(s) for s in stored] == events
    outside = mapper.to_stored_event(events[0])
    assert command_id_of(outside.state) is None
    assert "commandid" not in json.loads(outside.state)


def test_the_key_an_incident_was_declared_with_is_an_attribute_not_data() -> None:
    mapper = CloudEventMapper(JSONTranscoder())
    incident = Incident.declare(incident_id="incident-k", at=T0, title="t", request_key="c-1")
    (created,) = incident.collect_events()
    stored = mapper.to_stored_event(created)
    document = JSONFormat().read(None, stored.state)
    assert document.get_attributes()["idempotencykey"] == "c-1"
    assert "request_key" not in (document.get_data() or {})
    assert mapper.to_domain_event(stored) == created
    unkeyed = every_kind_of_event()[0]
    assert "idempotencykey" not in json.loads(mapper.to_stored_event(unkeyed).state)
