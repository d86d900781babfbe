"""Folding an incident's events into the incident as it stood."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.incident import Incident
from domain.values import Status
from projections.incident_history import fold

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def events_of_a_resolved_then_reopened_incident() -> list[Incident.Event]:
    incident = Incident.declare(incident_id="incident-h", at=T0, title="Login fails")
    incident.change_details(at=T0 + timedelta(minutes=1), changes={"title": "Login slow"})
    incident.add_update(at=T0 + timedelta(minutes=2), max_updates=10, status=Status.RESOLVED,
                        public_message="fixed")
    incident.add_update(at=T0 + timedelta(minutes=3), max_updates=10,
                        status=Status.INVESTIGATING, public_message="back again")
    return list(incident.collect_events())  # type: ignore[arg-type]


def test_the_fold_follows_every_event() -> None:
    record = fold(events_of_a_resolved_then_reopened_incident())
    assert record is not None
    assert record["title"] == "Login slow"
    assert record["status"] is Status.INVESTIGATING
    assert record["resolved_at"] is None  # reopening clears it
    assert [u["public_message"] for u in record["updates"]] == ["fixed", "back again"]
    assert record["version"] == 5
    assert record["created_at"] == T0
    assert record["updated_at"] == T0 + timedelta(minutes=3)


def test_as_of_shows_the_incident_as_it_stood_then() -> None:
    events = events_of_a_resolved_then_reopened_incident()
    resolved = fold(events, as_of=T0 + timedelta(minutes=2, seconds=30))
    assert resolved is not None
    assert resolved["status"] is Status.RESOLVED
    assert resolved["resolved_at"] == T0 + timedelta(minutes=2)
    assert resolved["version"] == 4
    assert fold(events, as_of=T0 - timedelta(seconds=1)) is None
    first = fold(events, as_of=T0)
    assert first is not None
    assert first["title"] == "Login fails"
