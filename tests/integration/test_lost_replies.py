"""A save whose reply is lost after its COMMIT landed is recognised as ours, on a real store.

The store's recorder is wrapped so that a real insert commits and then the caller sees
what a dropped connection shows: an OperationalError, or (PostgreSQL) the library's own
retry of the insert colliding with the rows it just committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError, StoredEvent

from commands.application import IncidentCommands, NewIncident, NewUpdate
from commands.cloudevents import COMMAND_EXTENSION, command_id_of
from commands.exactly_once import StoreUnavailable
from domain.values import Status
from infra.bootstrap import Services, bootstrap
from tests.conftest import make_settings

Insert = Callable[..., Sequence[int] | None]


def new_incident(title: str = "Payments failing") -> NewIncident:
    return NewIncident(title=title, given=frozenset({"title"}))


def fail_next_insert(
    monkeypatch: pytest.MonkeyPatch, commands: IncidentCommands, fault: Callable[[Insert], Insert]
) -> None:
    """The next insert of the store goes through `fault`; later ones are untouched."""
    recorder: Any = commands.recorder
    real: Insert = recorder.insert_events
    faulty = fault(real)

    def once(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        monkeypatch.setattr(recorder, "insert_events", real)
        return faulty(stored_events, **kwargs)

    monkeypatch.setattr(recorder, "insert_events", once)


def reply_lost(insert: Insert) -> Insert:
    """Commits, then the caller sees a connection error (its retries exhausted)."""
    def run(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        insert(stored_events, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")
    return run


def reply_lost_and_retried(insert: Insert) -> Insert:
    """Commits, the reply is lost, and the insert is retried: it meets its own rows."""
    def run(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        insert(stored_events, **kwargs)
        return insert(stored_events, **kwargs)
    return run


def never_sent(_: Insert) -> Insert:
    """The connection dropped before the insert reached the database."""
    def run(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        raise OperationalError("server closed the connection unexpectedly")
    return run


def positions_of(services: Services, incident_id: str) -> list[int]:
    return [e.position for e in services.event_log.read_all(incident_id)]


@pytest.mark.parametrize("fault", [reply_lost, reply_lost_and_retried])
def test_a_landed_update_is_answered_as_recorded_and_stored_once(
    services: Services, monkeypatch: pytest.MonkeyPatch, fault: Callable[[Insert], Insert]
) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    heard: list[int] = []
    commands.listeners.append(heard.append)
    fail_next_insert(monkeypatch, commands, fault)
    written = commands.add_update(created.incident_id, NewUpdate(message="cause found"))
    assert written.recorded
    assert written.version == 2
    stored = services.event_log.read_all(created.incident_id)
    assert [e.version for e in stored] == [1, 2]  # decided once, stored once
    assert written.position == stored[-1].position  # Store-Position: where it landed
    assert heard == [written.position]  # read-your-writes and wake-ups are told


@pytest.mark.parametrize("fault", [reply_lost, reply_lost_and_retried])
def test_a_landed_create_is_answered_as_recorded(
    services: Services, monkeypatch: pytest.MonkeyPatch, fault: Callable[[Insert], Insert]
) -> None:
    commands = services.commands
    fail_next_insert(monkeypatch, commands, fault)
    written = commands.create(new_incident())
    assert written.recorded
    assert written.position == positions_of(services, written.incident_id)[0]


def test_a_landed_resolving_update_reports_the_position_of_its_last_event(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    fail_next_insert(monkeypatch, commands, reply_lost_and_retried)
    written = commands.add_update(created.incident_id, NewUpdate(status=Status.RESOLVED))
    assert written.recorded
    assert written.version == 3
    assert written.position == max(positions_of(services, created.incident_id))
    assert written.position == services.event_log.last_position()


def test_an_update_that_never_reached_the_store_is_unavailable_not_recorded(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    fail_next_insert(monkeypatch, commands, never_sent)
    with pytest.raises(StoreUnavailable):
        commands.add_update(created.incident_id, NewUpdate(message="lost"))
    assert len(positions_of(services, created.incident_id)) == 1
    # The client's retry is a new command, and it lands.
    assert commands.add_update(created.incident_id, NewUpdate(message="lost")).version == 2


def test_a_rival_at_the_same_version_is_still_a_race(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-back tells our rows from a rival's: the command is decided again."""
    commands = services.commands
    created = commands.create(new_incident())

    def rival_first(insert: Insert) -> Insert:
        def run(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
            commands.add_update(created.incident_id, NewUpdate(message="rival"))
            return insert(stored_events, **kwargs)
        return run

    fail_next_insert(monkeypatch, commands, rival_first)
    written = commands.add_update(created.incident_id, NewUpdate(message="ours"))
    assert written.version == 3
    history = commands.history(created.incident_id)
    assert [getattr(e, "message", None) for e in history] == [None, "rival", "ours"]


def test_every_stored_event_carries_the_id_of_its_command(services: Services) -> None:
    commands = services.commands
    created = commands.create(new_incident())
    commands.add_update(created.incident_id, NewUpdate(status=Status.RESOLVED))
    ids = [command_id_of(e.document) for e in services.event_log.read_all(created.incident_id)]
    assert all(ids)
    assert ids[1] == ids[2] != ids[0]  # one id per command, not per event
    assert all(COMMAND_EXTENSION.encode() in e.document
               for e in services.event_log.read_all(created.incident_id))


@pytest.mark.postgres
def test_postgres_retry_of_a_committed_insert_is_recognised(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection fails after the COMMIT of the first insert: eventsourcing's own
    retry (insert_events retries on OperationalError) meets the committed rows."""
    services = bootstrap(make_settings(postgres_url))
    try:
        commands = services.commands
        created = commands.create(new_incident())
        recorder: Any = commands.recorder
        datastore = recorder.datastore
        real_connection = datastore.get_connection
        real_insert = recorder._insert_stored_events
        inserted: list[bool] = []

        def insert(*args: Any, **kwargs: Any) -> None:
            real_insert(*args, **kwargs)
            inserted.append(True)

        @contextmanager
        def connection() -> Iterator[psycopg.Connection[Any]]:
            with real_connection() as conn:
                yield conn
                if len(inserted) == 1:  # the first insert's COMMIT has just landed
                    inserted.append(True)
                    raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(recorder, "_insert_stored_events", insert)
        monkeypatch.setattr(datastore, "get_connection", connection)
        written = commands.add_update(created.incident_id, NewUpdate(message="once"))
        assert len(inserted) == 3  # committed, failed, retried into our own rows
        assert written.recorded
        assert written.version == 2
        assert positions_of(services, created.incident_id)[-1] == written.position
        assert len(positions_of(services, created.incident_id)) == 2
    finally:
        services.close()

