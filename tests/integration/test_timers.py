"""The service's own commands at deadlines, with a clock the tests move: auto-resolve and
scheduled maintenance, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commands.application import NewIncident, NewUpdate
from domain.errors import WindowRefused
from domain.incident import Incident
from domain.values import IncidentType, Status, UpdateType
from infra.bootstrap import Services, bootstrap
from infra.settings import SettingsError, load_settings
from infra.timers import MAINTENANCE_COMPLETED, MAINTENANCE_STARTED, Timers
from tests.conftest import make_settings

T0 = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # the night Europe moves its clocks


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def move_to(self, **since_t0: float) -> None:
        self.at = T0 + timedelta(**since_t0)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def _services(database_url: str, clock: Clock, hours: str) -> Iterator[Services]:
    built = bootstrap(make_settings(database_url, INCIDENT_AUTO_RESOLVE_HOURS=hours),
                      clock=clock)
    yield built
    built.close()


@pytest.fixture
def services(database_url: str, clock: Clock) -> Iterator[Services]:
    """Auto-resolve after one hour; nothing runs in the background: each test projects and
    acts when it says so."""
    yield from _services(database_url, clock, "1")


def tick(services: Services, timers: Timers | None = None) -> int:
    """The read models catch up, then the timers act on what is due now."""
    services.projector.catch_up()
    return (timers or services.timers).apply_due()


def declare(services: Services, **details: Any) -> str:
    return services.commands.create(NewIncident(title="Checkout fails", **details),
                                    actor="alice").incident_id


def status(services: Services, incident_id: str) -> Status:
    return Status(services.commands._load(incident_id)[0].status)


def system_updates(services: Services, incident_id: str) -> list[Incident.UpdateAdded]:
    return [e for e in services.commands.history(incident_id)
            if isinstance(e, Incident.UpdateAdded) and e.author == "system"]


def actors(services: Services, incident_id: str) -> list[tuple[str, str]]:
    return [(e.type.rsplit(".", 1)[1], json.loads(e.document)["actor"])
            for e in services.event_log.read_all(subject=incident_id)]


def test_auto_resolve_fires_once_at_the_deadline_and_not_before(
        services: Services, clock: Clock) -> None:
    incident = declare(services)
    clock.move_to(minutes=59, seconds=59)
    assert tick(services) == 0
    assert status(services, incident) is Status.INVESTIGATING
    clock.move_to(hours=1)
    assert tick(services) == 1
    assert status(services, incident) is Status.RESOLVED
    [update] = system_updates(services, incident)
    assert update.update_type is UpdateType.RESOLUTION
    assert "automatically" in update.public_message
    assert actors(services, incident)[-2:] == [("update_added", "system"),
                                               ("resolved", "system")]
    clock.move_to(hours=5)
    assert tick(services) == 0
    assert [kind for kind, _ in actors(services, incident)].count("resolved") == 1


def test_a_deadline_is_acted_on_once_even_by_two_before_the_read_model_moves(
        services: Services, clock: Clock) -> None:
    incident = declare(services)
    services.projector.catch_up()
    clock.move_to(hours=2)
    other = Timers(services.commands, services.database, clock, 1.0)  # another process
    assert services.timers.apply_due() == 1
    assert other.apply_due() == 0  # the read model still shows the deadline
    assert services.timers.apply_due() == 0
    assert [kind for kind, _ in actors(services, incident)].count("resolved") == 1


def test_an_update_before_the_deadline_pushes_it_back(services: Services, clock: Clock) -> None:
    incident = declare(services)
    clock.move_to(minutes=30)
    services.commands.add_update(incident, NewUpdate(message="still looking"), actor="alice")
    clock.move_to(hours=1, minutes=29)
    assert tick(services) == 0
    assert status(services, incident) is Status.INVESTIGATING
    clock.move_to(hours=1, minutes=30)
    assert tick(services) == 1
    assert status(services, incident) is Status.RESOLVED


def test_a_change_between_reading_and_acting_wins(services: Services, clock: Clock) -> None:
    incident = declare(services)
    clock.move_to(hours=1)
    services.projector.catch_up()  # the deadline is due...
    services.commands.add_update(incident, NewUpdate(status=Status.IDENTIFIED), actor="alice")
    assert services.timers.apply_due() == 0  # ...but someone moved first
    assert status(services, incident) is Status.IDENTIFIED
    clock.move_to(hours=2)
    assert tick(services) == 1


def test_resolved_and_deleted_incidents_are_left_alone(services: Services, clock: Clock) -> None:
    resolved, deleted = declare(services), declare(services)
    services.commands.add_update(resolved, NewUpdate(status=Status.RESOLVED), actor="alice")
    services.commands.delete(deleted, actor="alice")
    clock.move_to(hours=10)
    assert tick(services) == 0
    assert system_updates(services, resolved) == system_updates(services, deleted) == []


def test_auto_resolve_off_with_zero(database_url: str, clock: Clock) -> None:
    for services in _services(database_url, clock, "0"):
        incident = declare(services)
        clock.move_to(days=400)
        assert tick(services) == 0
        assert status(services, incident) is Status.INVESTIGATING


def test_deadlines_missed_meanwhile_are_applied_oldest_first(
        services: Services, clock: Clock) -> None:
    first = declare(services)
    clock.move_to(minutes=10)
    second = declare(services)
    clock.move_to(minutes=20)
    third = declare(services, incident_type=IncidentType.MAINTENANCE,
                    scheduled_start=T0 + timedelta(minutes=40),
                    scheduled_end=T0 + timedelta(minutes=50))
    clock.move_to(hours=3)
    assert tick(services) == 3
    order = [(e.subject, e.type.rsplit(".", 1)[1])
             for e in services.event_log.read(0, 100) if e.type.endswith("update_added")]
    # the maintenance started at 0:40; the first resolved at 1:00, the second at 1:10;
    # the maintenance completed at 0:50 only once started (its end was read after it).
    assert [subject for subject, _ in order][:3] == [third, first, second]
    assert tick(services) == 1
    assert status(services, third) is Status.RESOLVED


# Scheduled maintenance (auto-resolve after 72 hours: out of the way).


@pytest.fixture
def maintenance(database_url: str, clock: Clock) -> Iterator[Services]:
    yield from _services(database_url, clock, "72")


def schedule(services: Services, start_h: float = 1, end_h: float = 3) -> str:
    return declare(services, incident_type=IncidentType.MAINTENANCE,
                   scheduled_start=T0 + timedelta(hours=start_h),
                   scheduled_end=T0 + timedelta(hours=end_h))


def test_maintenance_starts_and_completes(maintenance: Services, clock: Clock) -> None:
    incident = schedule(maintenance)
    assert status(maintenance, incident) is Status.SCHEDULED
    clock.move_to(minutes=59)
    assert tick(maintenance) == 0
    clock.move_to(hours=1)
    assert tick(maintenance) == 1
    assert status(maintenance, incident) is Status.MONITORING
    clock.move_to(hours=2, minutes=59)
    assert tick(maintenance) == 0
    clock.move_to(hours=3)
    assert tick(maintenance) == 1
    assert status(maintenance, incident) is Status.RESOLVED
    started, completed = system_updates(maintenance, incident)
    assert (started.update_type, started.public_message, started.previous_status) == (
        UpdateType.MAINTENANCE, MAINTENANCE_STARTED, Status.SCHEDULED)
    assert (completed.update_type, completed.public_message) == (
        UpdateType.MAINTENANCE, MAINTENANCE_COMPLETED)
    clock.move_to(days=10)
    assert tick(maintenance) == 0


def test_a_long_maintenance_is_not_auto_resolved(database_url: str, clock: Clock) -> None:
    for services in _services(database_url, clock, "1"):
        incident = schedule(services, 1, 30)
        clock.move_to(hours=1)
        assert tick(services) == 1
        clock.move_to(hours=29)
        assert tick(services) == 0
        assert status(services, incident) is Status.MONITORING
        clock.move_to(hours=30)
        assert tick(services) == 1
        assert system_updates(services, incident)[-1].public_message == MAINTENANCE_COMPLETED


def test_cancelled_and_deleted_maintenance_is_left_alone(maintenance: Services,
                                                         clock: Clock) -> None:
    incident, deleted = schedule(maintenance), schedule(maintenance)
    maintenance.commands.delete(deleted, actor="alice")
    maintenance.commands.add_update(incident, NewUpdate(status=Status.RESOLVED,
                                                        public_message="Cancelled"),
                                    actor="alice")
    assert status(maintenance, incident) is Status.RESOLVED
    clock.move_to(hours=5)
    assert tick(maintenance) == 0
    assert system_updates(maintenance, incident) == system_updates(maintenance, deleted) == []


def test_a_moved_window_moves_the_deadlines(maintenance: Services, clock: Clock) -> None:
    incident = schedule(maintenance)
    services = maintenance
    services.projector.catch_up()
    services.commands.change_details(incident, {
        "scheduled_start": T0 + timedelta(hours=2), "scheduled_end": T0 + timedelta(hours=4)},
        actor="alice")
    clock.move_to(hours=1, minutes=30)
    assert tick(services) == 0
    assert status(services, incident) is Status.SCHEDULED
    clock.move_to(hours=2)
    assert tick(services) == 1
    with pytest.raises(WindowRefused):  # once started, the window stays
        services.commands.change_details(
            incident, {"scheduled_end": T0 + timedelta(hours=9)}, actor="alice")
    clock.move_to(hours=3)
    assert tick(services) == 0
    clock.move_to(hours=4)
    assert tick(services) == 1
    assert status(services, incident) is Status.RESOLVED


def test_a_humans_move_first_wins(maintenance: Services, clock: Clock) -> None:
    early, troubled = schedule(maintenance), schedule(maintenance)
    services = maintenance
    clock.move_to(minutes=30)
    # Started early by hand: it still completes at the end of its window.
    services.commands.add_update(early, NewUpdate(status=Status.MONITORING), actor="alice")
    assert tick(services) == 0
    clock.move_to(hours=1)
    services.projector.catch_up()  # the start of `troubled` is due...
    services.commands.add_update(troubled, NewUpdate(status=Status.INVESTIGATING),
                                 actor="alice")  # ...but someone moved it first
    assert services.timers.apply_due() == 0
    assert system_updates(services, early) == system_updates(services, troubled) == []
    clock.move_to(hours=3)
    assert tick(services) == 1
    assert status(services, early) is Status.RESOLVED
    # Moved by hand during its window: the people in charge resolve it.
    assert status(services, troubled) is Status.INVESTIGATING
    assert system_updates(services, troubled) == []


@pytest.mark.parametrize("details", [
    {"scheduled_start": T0 + timedelta(hours=1), "scheduled_end": T0 + timedelta(hours=2)},
    {"incident_type": IncidentType.MAINTENANCE, "scheduled_start": T0 + timedelta(hours=2),
     "scheduled_end": T0 + timedelta(hours=1)},
    {"incident_type": IncidentType.MAINTENANCE, "scheduled_start": T0 + timedelta(hours=2)},
    {"incident_type": IncidentType.MAINTENANCE, "status": Status.SCHEDULED},
])
def test_windows_that_cannot_be_are_refused(maintenance: Services, details: Any) -> None:
    with pytest.raises(WindowRefused):
        declare(maintenance, **details)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_bad_auto_resolve_setting_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="INCIDENT_AUTO_RESOLVE_HOURS"):
        load_settings({"INCIDENT_AUTO_RESOLVE_HOURS": value})


def test_the_auto_resolve_setting_takes_decimals() -> None:
    assert load_settings({"INCIDENT_AUTO_RESOLVE_HOURS": "0.001"}) \
        .incident_auto_resolve_hours == 0.001
