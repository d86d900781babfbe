"""The Incident aggregate's rules, decided without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from domain.errors import (
    IncidentDeleted,
    InitialStatusRefused,
    TransitionRefused,
    UpdateLimitReached,
)
from domain.incident import Incident
from domain.values import ACTIVE_STATUSES, IncidentType, Status, may_move

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ACTIVE = sorted(ACTIVE_STATUSES)
ALLOWED = (
    {(a, b) for a, b in product(ACTIVE, ACTIVE)}
    | {(a, Status.RESOLVED) for a in ACTIVE}
    | {(Status.RESOLVED, b) for b in [*ACTIVE, Status.POST_INCIDENT, Status.RESOLVED]}
    | {(Status.POST_INCIDENT, Status.POST_INCIDENT)}
    | {(Status.SCHEDULED, b) for b in [*ACTIVE, Status.RESOLVED, Status.SCHEDULED]}
)


def an_incident(status: Status = Status.INVESTIGATING) -> Incident:
    """An incident brought to `status` through the lifecycle, its events collected."""
    if status is Status.SCHEDULED:
        incident = Incident.declare(
            incident_id="incident-test", at=T0, title="Database upgrade",
            incident_type=IncidentType.MAINTENANCE, scheduled_start=T0 + timedelta(hours=1),
            scheduled_end=T0 + timedelta(hours=2))
    else:
        incident = Incident.declare(incident_id="incident-test", at=T0, title="Database down")
    path = {
        Status.SCHEDULED: [],
        Status.INVESTIGATING: [],
        Status.IDENTIFIED: [Status.IDENTIFIED],
        Status.MONITORING: [Status.MONITORING],
        Status.RESOLVED: [Status.RESOLVED],
        Status.POST_INCIDENT: [Status.RESOLVED, Status.POST_INCIDENT],
    }[status]
    for step in path:
        incident.add_update(at=T0, max_updates=100, status=step)
    incident.collect_events()
    assert incident.status is status
    return incident


def test_a_new_incident_is_investigating_with_no_updates() -> None:
    incident = Incident.declare(incident_id="incident-1", at=T0, title="API slow")
    events = incident.collect_events()
    assert [type(e) for e in events] == [Incident.Created]
    assert events[0].timestamp == T0
    created = events[0]
    assert isinstance(created, Incident.Created)
    assert created.start_time == T0  # defaults to when it was declared
    assert incident.status is Status.INVESTIGATING
    assert incident.version == 1


@pytest.mark.parametrize("status", [Status.RESOLVED, Status.POST_INCIDENT])
def test_a_new_incident_cannot_start_closed(status: Status) -> None:
    with pytest.raises(InitialStatusRefused):
        Incident.declare(incident_id="incident-1", at=T0, title="x", status=status)


@pytest.mark.parametrize(("current", "requested"), sorted(product(Status, Status)))
def test_every_transition_is_allowed_or_refused_by_the_lifecycle(
    current: Status, requested: Status
) -> None:
    incident = an_incident(current)
    allowed = (current, requested) in ALLOWED
    assert may_move(current, requested) is allowed
    if allowed:
        incident.add_update(at=T0, max_updates=100, status=requested)
        assert incident.status is requested
    else:
        with pytest.raises(TransitionRefused):
            incident.add_update(at=T0, max_updates=100, status=requested)
        assert incident.pending_events == []
        assert incident.status is current


@pytest.mark.parametrize("active", ACTIVE)
def test_resolving_records_the_update_and_the_resolution_together(active: Status) -> None:
    incident = an_incident(active)
    at = T0 + timedelta(hours=1)
    incident.add_update(at=at, max_updates=100, status=Status.RESOLVED, message="fixed")
    events = incident.collect_events()
    assert [type(e) for e in events] == [Incident.UpdateAdded, Incident.Resolved]
    resolution = events[1]
    assert isinstance(resolution, Incident.Resolved)
    assert resolution.resolved_at == at


def test_reopening_and_staying_resolved_record_no_resolution() -> None:
    incident = an_incident(Status.RESOLVED)
    incident.add_update(at=T0, max_updates=100, message="postmortem soon")
    incident.add_update(at=T0, max_updates=100, status=Status.IDENTIFIED)
    assert [type(e) for e in incident.collect_events()] == [Incident.UpdateAdded] * 2
    assert incident.status is Status.IDENTIFIED


def test_post_incident_is_final_but_takes_notes() -> None:
    incident = an_incident(Status.POST_INCIDENT)
    incident.add_update(at=T0, max_updates=100, public_message="report published")
    assert incident.status is Status.POST_INCIDENT
    for status in [*ACTIVE, Status.RESOLVED]:
        with pytest.raises(TransitionRefused):
            incident.add_update(at=T0, max_updates=100, status=status)


def test_the_number_of_updates_is_bounded() -> None:
    incident = an_incident()
    for _ in range(3):
        incident.add_update(at=T0, max_updates=3, message="still looking")
    with pytest.raises(UpdateLimitReached):
        incident.add_update(at=T0, max_updates=3, message="one too many")
    assert incident.update_count == 3


@pytest.mark.parametrize("active", ACTIVE)
def test_an_incident_at_the_limit_can_still_be_resolved(active: Status) -> None:
    incident = an_incident(active)
    while incident.update_count < 3:
        incident.add_update(at=T0, max_updates=3, status=active, message="still looking")
    incident.collect_events()
    incident.add_update(at=T0, max_updates=3, status=Status.RESOLVED, message="fixed")
    assert [type(e) for e in incident.collect_events()] == [Incident.UpdateAdded,
                                                            Incident.Resolved]
    incident.add_update(at=T0, max_updates=3, status=Status.POST_INCIDENT)
    assert incident.status is Status.POST_INCIDENT
    assert incident.update_count == 5


def test_past_the_limit_only_closing_updates_are_taken() -> None:
    incident = an_incident()
    for _ in range(2):
        incident.add_update(at=T0, max_updates=2, message="still looking")
    for refused in [Status.INVESTIGATING, Status.MONITORING]:  # a note, a move
        with pytest.raises(UpdateLimitReached):
            incident.add_update(at=T0, max_updates=2, status=refused)
    incident.add_update(at=T0, max_updates=2, status=Status.RESOLVED)
    for refused in [Status.RESOLVED, Status.IDENTIFIED]:  # a note, a reopening
        with pytest.raises(UpdateLimitReached):
            incident.add_update(at=T0, max_updates=2, status=refused)
    incident.add_update(at=T0, max_updates=2, status=Status.POST_INCIDENT)
    with pytest.raises(UpdateLimitReached):
        incident.add_update(at=T0, max_updates=2, message="report published")
    with pytest.raises(TransitionRefused):  # the lifecycle is decided first
        incident.add_update(at=T0, max_updates=2, status=Status.RESOLVED)
    assert incident.update_count == 4


def test_a_deleted_incident_takes_no_more_commands() -> None:
    incident = an_incident()
    incident.delete(at=T0)
    assert incident.deleted
    with pytest.raises(IncidentDeleted):
        incident.add_update(at=T0, max_updates=100, message="x")
    with pytest.raises(IncidentDeleted):
        incident.change_details(at=T0, changes={"title": "y"})
    with pytest.raises(IncidentDeleted):
        incident.delete(at=T0)


def test_changing_details_records_only_what_is_given() -> None:
    incident = an_incident()
    incident.change_details(at=T0, changes={"title": "Database degraded"})
    incident.change_details(at=T0, changes={})
    events = incident.collect_events()
    assert len(events) == 1
    change = events[0]
    assert isinstance(change, Incident.DetailsChanged)
    assert change.changes == {"title": "Database degraded"}


def test_status_is_not_a_detail() -> None:
    incident = an_incident()
    with pytest.raises(ValueError, match="status"):
        incident.change_details(at=T0, changes={"status": Status.RESOLVED})


def test_an_update_remembers_its_request_key() -> None:
    incident = an_incident()
    incident.add_update(at=T0, max_updates=100, message="x", request_key="key-1")
    assert incident.version_of_update("key-1") == 2
    assert incident.version_of_update("key-2") is None


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    incident = Incident.declare(incident_id="incident-r", at=T0, title="x")
    incident.add_update(at=T0, max_updates=100, status=Status.RESOLVED, request_key="k")
    incident.add_update(at=T0, max_updates=100, status=Status.MONITORING)
    events = incident.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed == incident


def test_a_maintenance_declared_before_its_window_is_scheduled_and_may_be_cancelled() -> None:
    incident = an_incident(Status.SCHEDULED)
    incident.add_update(at=T0, max_updates=100, status=Status.RESOLVED,
                        public_message="Cancelled")
    assert [type(e) for e in incident.collect_events()] == [Incident.UpdateAdded,
                                                           Incident.Resolved]


def test_a_maintenance_declared_within_its_window_is_not_scheduled() -> None:
    incident = Incident.declare(
        incident_id="incident-1", at=T0, title="Database upgrade",
        incident_type=IncidentType.MAINTENANCE, scheduled_start=T0 - timedelta(minutes=1),
        scheduled_end=T0 + timedelta(hours=1))
    assert incident.status is Status.INVESTIGATING
