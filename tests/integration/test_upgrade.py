"""Upgrading onto an existing database (SQLite and PostgreSQL): a read model whose tables
were made in an older shape is rebuilt from the store when the service starts, once across
processes starting together, while running processes keep answering; an unchanged shape
is left alone."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.visibility import Audience
from infra.bootstrap import Services, bootstrap
from infra.follower_positions import READ_MODELS
from infra.projector import PROJECTIONS
from infra.rebuild import rebuild
from infra.settings import Settings
from projections.incident_list import COLUMNS, IncidentList
from projections.queries import ListFilters
from tests.conftest import READER, TOKENS
from tests.integration.test_projections import snapshot, write_history
from tests.processes import ServeProcess

DROPPED = "acknowledged_at"
REBUILT = "read model incident_list: its tables changed shape"


class OlderIncidentList(IncidentList):
    """incident_list as an older release made it: without `acknowledged_at`."""

    def create_statements(self, dialect: str) -> list[str]:
        return [re.sub(rf",\s*{DROPPED} BIGINT", "", statement)
                for statement in super().create_statements(dialect)]


def _execute(services: Services, *statements: str) -> None:
    for statement in statements:
        with services.database.transaction(write=True) as cursor:
            cursor.execute(statement)


def _recorded_shapes(services: Services) -> dict[str, str | None]:
    with services.database.transaction() as cursor:
        rows = cursor.execute(f"SELECT name, shape FROM {READ_MODELS}").fetchall()
    return {str(name): shape for name, shape in rows}


def _listed(services: Services) -> list[dict[str, Any]]:
    page = services.queries.list_incidents(ListFilters(), audience=Audience.READER, limit=500)
    return page.items


def _older_database(settings: Settings, count: int = 40, *, unrecorded: bool = False
                    ) -> dict[str, list[tuple[Any, ...]]]:
    """A database written by the code, then its incident_list tables put in the older
    shape (the column gone, the older shape's digest recorded, or with `unrecorded` no
    shapes at all, as before they were recorded); returns the read tables as they were
    before."""
    services = bootstrap(settings)
    try:
        write_history(services.commands, count)
        services.projector.catch_up()
        before = snapshot(services)
        assert DROPPED in COLUMNS
        older = OlderIncidentList.shape(services.database.dialect)
        assert older != IncidentList.shape(services.database.dialect)
        _execute(services, f"ALTER TABLE incidents DROP COLUMN {DROPPED}",
                 f"UPDATE {READ_MODELS} SET shape = '{older}' WHERE name = 'incident_list'")
        if unrecorded:
            _execute(services, f"ALTER TABLE {READ_MODELS} DROP COLUMN shape")
    finally:
        services.close()
    return before


def test_fresh_read_models_record_their_shape(settings: Settings,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="product_status"):
        services = bootstrap(settings)
    try:
        dialect = services.database.dialect
        assert _recorded_shapes(services) == {cls.name: cls.shape(dialect)
                                              for cls in PROJECTIONS}
        assert "changed shape" not in caplog.text
    finally:
        services.close()


def test_a_start_rebuilds_a_read_model_of_an_older_shape(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    before = _older_database(settings)
    with caplog.at_level(logging.INFO, logger="product_status"):
        services = bootstrap(settings)
    try:
        assert caplog.text.count(REBUILT) == 1, caplog.text
        assert "changed shape" not in caplog.text.replace(REBUILT, "")  # the others kept
        assert snapshot(services) == before
        listed = _listed(services)
        assert len(listed) == _live(40)
        assert any(item[DROPPED] is not None for item in listed)
        assert _recorded_shapes(services)["incident_list"] == IncidentList.shape(
            services.database.dialect)
        rebuild(services.projector, services.projector.projections)  # a fresh rebuild
        assert snapshot(services) == before
        assert _listed(services) == listed
    finally:
        services.close()


def test_a_database_from_before_shapes_were_recorded_is_rebuilt(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    before = _older_database(settings, count=12, unrecorded=True)
    with caplog.at_level(logging.INFO, logger="product_status"):
        services = bootstrap(settings)
    try:
        dialect = services.database.dialect
        for cls in PROJECTIONS:  # no shape known: every read model is rebuilt once
            assert caplog.text.count(f"read model {cls.name}: its tables changed shape") == 1
        assert _recorded_shapes(services) == {cls.name: cls.shape(dialect)
                                              for cls in PROJECTIONS}
        assert snapshot(services) == before
    finally:
        services.close()


def test_an_unchanged_shape_is_not_rebuilt(settings: Settings,
                                           caplog: pytest.LogCaptureFixture) -> None:
    services = bootstrap(settings)
    write_history(services.commands, 10)
    services.projector.catch_up()
    positions = services.projector.positions()
    # A mark a rebuild would wipe: the start must not read the store into the tables.
    _execute(services, "UPDATE incidents SET title = 'left alone'")
    services.close()
    with caplog.at_level(logging.INFO, logger="product_status"):
        services = bootstrap(settings)
    try:
        assert "changed shape" not in caplog.text
        assert {item["title"] for item in _listed(services)} == {"left alone"}
        assert services.projector.positions() == positions
    finally:
        services.close()


def _serve_env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": str(settings.database_url),
            "API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items())}


def _start_together(env: dict[str, str], logs: list[Path]) -> list[ServeProcess]:
    started: list[ServeProcess] = []
    threads = [threading.Thread(target=lambda log=log: started.append(ServeProcess(env, log)))
               for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == len(logs), "\n".join(log.read_text() for log in logs)
    return started


def _live(count: int) -> int:
    """How many incidents `write_history(count)` leaves undeleted: every 11th is deleted,
    and every 8th comes with a maintenance of its own."""
    return sum((i % 11 != 0) + (i % 8 == 0) for i in range(count))


def _read_all(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/api/v1/incidents", params={"limit": 100}, headers=READER,
                       timeout=30)
    assert answer.status_code == 200, answer.text
    listed: dict[str, Any] = answer.json()
    return listed


def test_two_serve_processes_starting_together_rebuild_once(
        settings: Settings, tmp_path: Path) -> None:
    before = _older_database(settings, count=400)  # a rebuild longer than the starts' skew
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = _start_together(_serve_env(settings), logs)
    try:
        outputs = [process.output() for process in processes]
        assert sum(output.count(REBUILT) for output in outputs) == 1, outputs
        first, second = (_read_all(process.url) for process in processes)
        assert first["items"] == second["items"]
        assert first["total"] == _live(400)
        assert any(item[DROPPED] is not None for item in first["items"])
    finally:
        for process in processes:
            process.stop()
    services = bootstrap(settings)
    try:
        assert snapshot(services) == before
    finally:
        services.close()


def test_a_running_process_keeps_answering_while_another_start_rebuilds(
        settings: Settings, tmp_path: Path) -> None:
    services = bootstrap(settings)
    write_history(services.commands, 300)
    services.projector.catch_up()
    services.close()
    env = _serve_env(settings)
    running = ServeProcess(env, tmp_path / "running.log")
    expected = _read_all(running.url)["items"]
    statuses: list[int] = []
    wrong: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(headers=READER, timeout=60) as client:
            while not stop.is_set():
                answer = client.get(f"{running.url}/api/v1/incidents", params={"limit": 100})
                statuses.append(answer.status_code)
                if answer.status_code == 503 and "Retry-After" not in answer.headers:
                    wrong.append(f"503 without Retry-After: {answer.text[:200]}")
                elif answer.status_code == 200 and answer.json()["items"] != expected:
                    wrong.append(answer.text[:200])

    reader = threading.Thread(target=read)
    reader.start()
    starting: ServeProcess | None = None
    try:
        deadline = time.monotonic() + 60
        while len(statuses) < 3:
            assert time.monotonic() < deadline, statuses
            assert reader.is_alive(), statuses
            time.sleep(0.05)
        services = bootstrap(settings)  # the read model's recorded shape: an older one
        _execute(services, f"UPDATE {READ_MODELS} SET shape = 'older' "
                           "WHERE name = 'incident_list'")
        services.close()
        read_before = len(statuses)
        starting = ServeProcess(env, tmp_path / "starting.log")
        assert starting.output().count(REBUILT) == 1, starting.output()
        assert len(statuses) > read_before  # it was read while the other started
        deadline = time.monotonic() + 60
        done = len(statuses)
        while len(statuses) < done + 3:
            assert time.monotonic() < deadline, statuses
            assert reader.is_alive(), statuses
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join()
        running.stop()
        if starting is not None:
            starting.stop()
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses[-1] == 200
    assert not wrong, wrong[:3]



def test_a_projector_does_not_write_tables_of_another_shape(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    """A process of the older release, still running after a newer one rebuilt a read
    model, lets go of it rather than writing rows it does not know the columns of."""
    _execute(services, f"UPDATE {READ_MODELS} SET shape = 'newer' WHERE name = 'incident_list'")
    with caplog.at_level(logging.INFO, logger="product_status"):
        write_history(services.commands, 1, start=1)  # kept, not deleted
        head = services.event_log.last_position()
        deadline = time.monotonic() + 60
        while "its tables are of shape newer" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    deadline = time.monotonic() + 60
    while services.projector.positions()["incident_updates"] < head:  # the others carry on
        assert time.monotonic() < deadline, services.projector.positions()
        time.sleep(0.05)
    assert services.projector.positions()["incident_list"] < head
    assert _listed(services) == []
    shape = IncidentList.shape(services.database.dialect)
    _execute(services, f"UPDATE {READ_MODELS} SET shape = '{shape}' "
                       "WHERE name = 'incident_list'")
    deadline = time.monotonic() + 60
    while services.projector.positions()["incident_list"] < head:
        assert time.monotonic() < deadline, services.projector.positions()
        time.sleep(0.05)
    assert [item["title"] for item in _listed(services)] == ["incident 1"]
