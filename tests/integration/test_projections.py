"""Projections on a real store (SQLite and PostgreSQL): exactly once, resumable,
rebuildable, and never applied by two processes at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from commands.application import IncidentCommands, NewIncident, NewUpdate
from domain.values import IncidentType, Severity, Status
from infra.bootstrap import Services, bootstrap
from infra.projector import PositionRefused, Projector, apply_batch
from infra.rebuild import rebuild
from infra.settings import Settings
from tests.processes import start_follower_process

T0 = datetime(2099, 1, 1, tzinfo=UTC)
CLI = str(Path(sys.executable).parent / "product-status")
SEVERITIES = list(Severity)
TYPES = list(IncidentType)


def write_history(commands: IncidentCommands, count: int, start: int = 0) -> None:
    """Incidents that go through every kind of event."""
    for i in range(start, start + count):
        written = commands.create(NewIncident(
            title=f"incident {i}", severity=SEVERITIES[i % 5], incident_type=TYPES[i % 6],
            affected_services=(f"svc-{i % 4}",), affected_regions=(f"r-{i % 3}",),
            is_public=i % 7 != 0, public_message=f"public {i}", internal_notes=f"note {i}",
            given=frozenset({"title"})))
        incident = written.incident_id
        if i % 2:
            commands.add_update(incident, NewUpdate(status=Status.IDENTIFIED, message="m",
                                                    public_message=f"found {i}"))
        if i % 3 == 0:
            commands.add_update(incident, NewUpdate(status=Status.RESOLVED))
            # A draft postmortem; published for some, then withdrawn for some of those.
            commands.write_postmortem(incident, f"# Postmortem {i}\n\n<b>draft</b>", False)
            if i % 2 == 0:
                commands.write_postmortem(incident, f"# Postmortem {i}", True)
            if i % 4 == 0:
                commands.write_postmortem(incident, f"# Postmortem {i}", False)
        if i % 5 == 0:
            commands.change_details(incident, {"severity": Severity.CRITICAL,
                                               "affected_services": ("svc-x", "svc-y")})
        if i % 11 == 0:
            commands.delete(incident)
        if i % 8 == 0:  # a maintenance: scheduled, moved, started (or cancelled)
            planned = commands.create(NewIncident(
                title=f"maintenance {i}", incident_type=IncidentType.MAINTENANCE,
                scheduled_start=T0 + timedelta(days=i + 1),
                scheduled_end=T0 + timedelta(days=i + 2))).incident_id
            commands.change_details(planned, {"scheduled_end": T0 + timedelta(days=i + 3)})
            commands.add_update(planned, NewUpdate(
                status=Status.MONITORING if i % 16 else Status.RESOLVED))


def snapshot(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read table, in a stable order."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with services.database.transaction() as cursor:
        for projection in services.projector.projections:
            for table in projection.tables:
                rows = cursor.execute(f"SELECT * FROM {table}").fetchall()
                tables[table] = sorted(tuple(row) for row in rows)
    return tables


def unstarted(settings: Settings) -> Services:
    """Services whose projections are driven by the test, not a background thread."""
    return bootstrap(settings)


@pytest.fixture
def quiet(settings: Settings) -> Any:
    services = unstarted(settings)
    yield services
    services.close()


def test_a_batch_applied_twice_is_refused_and_rolled_back(quiet: Services) -> None:
    write_history(quiet.commands, 3)
    projector: Projector = quiet.projector
    projector.catch_up()
    before = snapshot(quiet)
    updates = next(p for p in projector.projections if p.name == "incident_updates")
    events = projector.read_events(0, 100)
    for start in (0, events[0].position):
        with pytest.raises(PositionRefused), quiet.database.transaction(write=True) as cursor:
            apply_batch(cursor, updates, start, [e for e in events if e.position > start])
    assert snapshot(quiet) == before


def test_live_read_models_equal_a_rebuild(quiet: Services) -> None:
    write_history(quiet.commands, 40)
    quiet.projector.catch_up()
    live = snapshot(quiet)
    assert live["incident_postmortems"]  # drafts and published ones
    assert live["feed_postmortems"]  # published ones only
    assert len(live["feed_postmortems"]) < len(live["incident_postmortems"])
    positions = quiet.projector.positions()
    rebuild(quiet.projector, quiet.projector.projections)
    assert snapshot(quiet) == live
    assert quiet.projector.positions() == positions
    write_history(quiet.commands, 5, start=40)  # the swapped-in tables keep following
    quiet.projector.catch_up()
    after = snapshot(quiet)
    rebuild(quiet.projector, quiet.projector.projections)
    assert snapshot(quiet) == after


def test_rebuild_from_the_command_line(quiet: Services, settings: Settings) -> None:
    write_history(quiet.commands, 10)
    quiet.projector.catch_up()
    live = snapshot(quiet)
    env = {**os.environ, "DATABASE_URL": str(settings.database_url)}
    result = subprocess.run([CLI, "projections", "rebuild"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stderr
    assert snapshot(quiet) == live
    refused = subprocess.run([CLI, "projections", "rebuild", "nope"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "nope" in refused.stderr


def _start_projector(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_follower_process("project", str(settings.database_url), log)


def _wait_caught_up(services: Services, timeout: float = 60) -> None:
    head = services.event_log.last_position()
    deadline = time.monotonic() + timeout
    while min(services.projector.positions().values()) < head:
        assert time.monotonic() < deadline, services.projector.positions()
        time.sleep(0.05)


def test_a_rebuild_while_the_projector_runs_and_commands_arrive_loses_nothing(
    services: Services,
) -> None:
    write_history(services.commands, 30)
    _wait_caught_up(services)
    stop = threading.Event()

    def keep_writing() -> None:
        number = 1000
        while not stop.is_set():
            write_history(services.commands, 1, start=number)
            number += 1

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        before = services.projector.positions()
        rebuild(services.projector, services.projector.projections)
        after = services.projector.positions()
        # Never back in time: a read that saw position N still sees it after the swap.
        assert all(after[name] >= before[name] for name in before), (before, after)
    finally:
        stop.set()
        writer.join(timeout=30)
    _wait_caught_up(services)
    live = snapshot(services)
    rebuild(services.projector, services.projector.projections)
    assert snapshot(services) == live


def test_a_killed_projector_resumes_where_it_stopped(
    quiet: Services, settings: Settings, tmp_path: Path
) -> None:
    write_history(quiet.commands, 300)
    head = quiet.event_log.last_position()
    first = _start_projector(settings, tmp_path / "project.log")
    deadline = time.monotonic() + 60
    while min(quiet.projector.positions().values()) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert min(quiet.projector.positions().values()) < head, "killed too late to prove much"
    second = _start_projector(settings, tmp_path / "project.log")
    try:
        _wait_caught_up(quiet)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    live = snapshot(quiet)
    rebuild(quiet.projector, quiet.projector.projections)
    assert snapshot(quiet) == live


@pytest.mark.postgres
def test_two_projector_processes_never_both_apply_an_event(
    postgres_url: str, tmp_path: Path
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(postgres_url)
    services = unstarted(settings)
    try:
        write_history(services.commands, 100)
        processes = [_start_projector(settings, tmp_path / f"project-{i}.log") for i in (1, 2)]
        try:
            write_history(services.commands, 100, start=100)  # while both run
            _wait_caught_up(services)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=30) for p in processes]
        logs = "".join((tmp_path / f"project-{i}.log").read_text() for i in (1, 2))
        assert codes == [0, 0], logs
        assert "Traceback" not in logs
        assert "failed" not in logs
        live = snapshot(services)
        rebuild(services.projector, services.projector.projections)
        assert snapshot(services) == live
    finally:
        services.close()


@pytest.mark.postgres
def test_processes_starting_together_on_a_fresh_database(postgres_url: str) -> None:
    """Six processes creating the store and read tables at once all start."""
    code = ("from infra.settings import load_settings; from infra.bootstrap import bootstrap; "
            f"bootstrap(load_settings({{'DATABASE_URL': {postgres_url!r}}})).close()")
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
