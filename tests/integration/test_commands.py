"""The command application on a real store: the same bodies on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from cloudevents.core.formats.json import JSONFormat

from commands.application import (
    IdempotencyKeyReused,
    IncidentCommands,
    IncidentNotFound,
    NewIncident,
    NewUpdate,
    VersionMismatch,
)
from domain.errors import IncidentDeleted, TransitionRefused
from domain.values import Severity, Status
from infra.bootstrap import Services, bootstrap
from infra.settings import Settings


def new_incident(title: str = "Payments failing", **fields: object) -> NewIncident:
    return NewIncident(title=title, given=frozenset({"title", *fields}), **fields)


def test_an_incident_is_created_evolved_and_read_back(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident(severity=Severity.CRITICAL))
    assert created.version == 1
    assert created.position is not None
    commands.change_details(created.incident_id, {"title": "Payments slow"})
    resolved = commands.add_update(created.incident_id, NewUpdate(status=Status.RESOLVED))
    assert resolved.version == 4  # created, updated, update_added, resolved
    history = commands.history(created.incident_id)
    assert [type(e).__name__ for e in history] == [
        "Created", "DetailsChanged", "UpdateAdded", "Resolved"
    ]


def test_every_stored_document_passes_cloudevents_validation(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    commands.add_update(created.incident_id, NewUpdate(status=Status.RESOLVED, message="ok"))
    commands.delete(created.incident_id)
    stored = services.event_log.read(0, 100)
    assert len(stored) == 4
    assert [e.position for e in stored] == sorted(e.position for e in stored)
    for event in stored:
        document = JSONFormat().read(None, event.document)
        assert document.get_type() == event.type
        assert document.get_subject() == created.incident_id
        assert json.loads(event.document)["data"]["incident_id"] == created.incident_id


def test_a_resolving_update_stores_both_events_atomically(services: Services) -> None:
    created = services.commands.create(new_incident())
    written = services.commands.add_update(created.incident_id, NewUpdate(status=Status.RESOLVED))
    types = [e.type for e in services.event_log.read(created.position or 0, 10)]
    assert types == ["com.example.incident.update_added", "com.example.incident.resolved"]
    assert written.position == services.event_log.last_position()


def test_rules_and_lookups_refuse_without_storing(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    before = services.event_log.last_position()
    with pytest.raises(TransitionRefused):
        commands.add_update(created.incident_id, NewUpdate(status=Status.POST_INCIDENT))
    with pytest.raises(IncidentNotFound):
        commands.add_update("incident-missing", NewUpdate(message="x"))
    with pytest.raises(VersionMismatch):
        commands.change_details(created.incident_id, {"title": "x"}, expected_version=7)
    assert services.event_log.last_position() == before
    commands.delete(created.incident_id)
    with pytest.raises(IncidentDeleted):
        commands.add_update(created.incident_id, NewUpdate(message="x"))
    with pytest.raises(IncidentNotFound):
        commands.delete(created.incident_id)


def test_a_change_that_changes_nothing_records_nothing(services: Services) -> None:
    created = services.commands.create(new_incident("Same"))
    written = services.commands.change_details(created.incident_id, {"title": "Same"})
    assert not written.recorded
    assert written.version == 1


def test_idempotent_create_and_update_survive_a_restart(settings: Settings) -> None:
    first = bootstrap(settings)
    try:
        created = first.commands.create(new_incident(), request_key="create-1")
        update = NewUpdate(status=Status.IDENTIFIED, message="cause found")
        updated = first.commands.add_update(created.incident_id, update, request_key="update-1")
    finally:
        first.close()
    again = bootstrap(settings)  # a new process on the same store
    try:
        position = again.event_log.last_position()
        retried = again.commands.create(new_incident(), request_key="create-1")
        assert retried.incident_id == created.incident_id
        assert not retried.recorded
        assert retried.version == 1  # the first answer, not the current state
        replayed = again.commands.add_update(created.incident_id, update, request_key="update-1")
        assert not replayed.recorded
        assert replayed.version == updated.version
        assert again.event_log.last_position() == position
        with pytest.raises(IdempotencyKeyReused):
            again.commands.create(new_incident("Another title"), request_key="create-1")
        with pytest.raises(IdempotencyKeyReused):
            again.commands.add_update(
                created.incident_id, NewUpdate(message="different"), request_key="update-1"
            )
    finally:
        again.close()


def _race(count: int, action: object) -> list[object]:
    barrier = Barrier(count)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return action(i)  # type: ignore[operator]
        except Exception as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_updates_without_expected_version_all_land(services: Services) -> None:
    commands: IncidentCommands = services.commands
    created = commands.create(new_incident())
    results = _race(30, lambda i: commands.add_update(
        created.incident_id, NewUpdate(message=f"update {i}")))
    assert all(not isinstance(r, Exception) for r in results), results
    history = commands.history(created.incident_id)
    assert [e.originator_version for e in history] == list(range(1, 32))
    assert sorted(e.number for e in history[1:]) == list(range(1, 31))  # type: ignore[attr-defined]


def test_concurrent_changes_with_one_expected_version_one_wins(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    results = _race(10, lambda i: commands.change_details(
        created.incident_id, {"title": f"title {i}"}, expected_version=1))
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, VersionMismatch) for r in results) == 9
    assert len(commands.history(created.incident_id)) == 2


def test_concurrent_creates_with_one_key_make_one_incident(services: Services) -> None:
    commands = services.commands
    results = _race(10, lambda _: commands.create(new_incident(), request_key="same-key"))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.incident_id for r in results}) == 1  # type: ignore[attr-defined]
    assert sum(r.recorded for r in results) == 1  # type: ignore[attr-defined]
    assert len(services.event_log.read(0, 100)) == 1


def test_concurrent_updates_with_one_key_record_one_update(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    update = NewUpdate(message="one")
    results = _race(10, lambda _: commands.add_update(
        created.incident_id, update, request_key="upd"))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len(commands.history(created.incident_id)) == 2
