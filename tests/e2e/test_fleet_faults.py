"""Faults under load in the fleet (tests/fleet.py). Figures are printed (pytest -s)."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.bootstrap import bootstrap
from infra.settings import load_settings
from tests.fleet import (
    API_ARGS,
    READER,
    WRITER,
    Fleet,
    fleet,
    store_head,
    stored_events,
    wait_published,
)
from tests.processes import ServeProcess, run_cli

COMMANDS = 1000
KILLS = 5  # of the active projector and of the active relay, each
PACE = 0.1  # seconds a load thread waits between two commands


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Fleet]:
    # One writer token makes every command here: far more than the default 600 a minute.
    with fleet(tmp_path, RATE_LIMIT_WRITES_PER_MINUTE="1000000") as started:
        yield started


REFUSALS: list[str] = []  # the bodies of refused commands, to show when a test fails


def _command(client: httpx.Client, n: int, incidents: list[str]) -> int:
    """Command `n` of the load: creates, status updates and detail changes."""
    if n % 4 == 0 or not incidents:
        answer = client.post("/api/v1/incidents", headers=WRITER, json={
            "title": f"load {n}", "affected_services": [f"svc-{n % 7}"],
            "is_public": n % 5 != 0})
        if answer.status_code == 201:
            incidents.append(answer.json()["id"])
        return answer.status_code
    incident = incidents[n % len(incidents)]
    if n % 4 == 1:
        body: dict[str, Any] = {"message": f"update {n}", "public_message": f"public {n}"}
        answer = client.post(f"/api/v1/incidents/{incident}/updates", headers=WRITER, json=body)
        if answer.status_code >= 400:
            REFUSALS.append(answer.text)
        return answer.status_code
    answer = client.put(f"/api/v1/incidents/{incident}", headers=WRITER,
                        json={"severity": ("low", "high", "critical")[n % 3]})
    if answer.status_code >= 400:
        REFUSALS.append(answer.text)
    return answer.status_code


def _read_tables(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    services = bootstrap(load_settings({"DATABASE_URL": database_url}))
    try:
        dumped = {}
        for projection in services.projector.projections:
            for table in projection.tables:
                with services.database.transaction() as cursor:
                    rows = cursor.execute(f"SELECT * FROM {table}").fetchall()
                dumped[table] = sorted(rows, key=repr)
        return dumped
    finally:
        services.close()


def test_followers_killed_under_load_lose_and_repeat_nothing(running: Fleet) -> None:
    apis = [api.url for api in running.apis]
    incidents: list[str] = []
    statuses: list[int] = []
    counter = itertools.count()
    started = time.monotonic()

    def load(worker: int) -> None:
        with httpx.Client(base_url=apis[worker % 2], timeout=30) as client:
            while (n := next(counter)) < COMMANDS:
                statuses.append(_command(client, n, incidents))
                time.sleep(PACE)  # the commands span the kills

    kills: list[str] = []
    killing_ended_at: list[float] = []

    def killer() -> None:
        for round_ in range(KILLS):
            for command, follower in (("project", "incident_list"), ("publish", "nats_relay")):
                # Once a standby took over (or the replacement started), kill the worker.
                deadline = time.monotonic() + 15
                while running.active_pid(follower) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                active = running.kill_active(command, follower, otherwise=round_ % 2)
                kills.append(f"{'active ' if active else ''}{command}")
        killing_ended_at.append(time.monotonic())

    killing = threading.Thread(target=killer)
    killing.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(load, range(4)))
    elapsed = time.monotonic() - started
    killing.join()
    assert killing_ended_at[0] <= started + elapsed, "the kills did not all fall in the load"
    assert kills.count("active project") == kills.count("active publish") == KILLS, kills
    assert len(statuses) == COMMANDS
    assert set(statuses) <= {200, 201}, REFUSALS[:3]

    head = store_head(apis[0])
    caught_up = time.monotonic()
    listed = httpx.get(f"{apis[1]}/api/v1/incidents", headers={
        **READER, "Min-Position": str(head)}, timeout=30)
    assert listed.status_code == 200, running.logs()
    replicas, published = wait_published(running, running.nats.nodes[0].url, within=120)
    stored = [event["id"] for event in stored_events(apis[0])]
    assert sorted(published) == sorted(stored), running.logs()  # each event once
    assert len(set(published)) == len(published)

    before = _read_tables(running.database_url)
    rebuilt = run_cli("projections", "rebuild", env=running.env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _read_tables(running.database_url) == before  # read tables equal a rebuild
    print(f"\n{COMMANDS} commands through 2 API processes in {elapsed:.1f} s "
          f"({COMMANDS / elapsed:.0f}/s) with {len(kills)} SIGKILLs ({', '.join(kills)}); "
          f"{len(stored)} events stored, {len(published)} in JetStream (replicas {replicas}), "
          f"0 repeated; read tables and JetStream caught up "
          f"{time.monotonic() - caught_up:.1f} s after the last command (head {head})")


def test_an_api_process_killed_during_writes_loses_no_answered_write(running: Fleet) -> None:
    victim = running.apis[0]
    answered: list[tuple[str, int]] = []
    failures: list[str] = []
    counter = itertools.count()

    def write(_: int) -> None:
        with httpx.Client(base_url=victim.url, timeout=10) as client:
            while (n := next(counter)) < 2000:
                try:
                    answer = client.post("/api/v1/incidents", headers=WRITER,
                                         json={"title": f"before the kill {n}"})
                except httpx.TransportError:
                    failures.append("connection")
                    return
                assert answer.status_code < 500 or answer.status_code == 503, answer.text
                if answer.status_code == 201:
                    answered.append((answer.json()["id"], int(answer.headers["Store-Position"])))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(write, n) for n in range(8)]
        while len(answered) < 200:
            time.sleep(0.01)
        os.kill(victim.process.pid, signal.SIGKILL)
        for future in futures:
            future.result()
    other = running.apis[1].url
    stored = {event["subject"] for event in stored_events(other)}
    missing = [incident for incident, _ in answered if incident not in stored]
    assert missing == []  # every 2xx answer's events are in the store
    print(f"\nSIGKILL of an API process under 8 writer threads: {len(answered)} writes "
          f"answered 201, all stored; {len(failures)} threads saw the connection drop")
    replacement = ServeProcess(running.env, running.base / "serve-1b.log", *API_ARGS)
    try:
        assert httpx.get(f"{replacement.url}/readyz").status_code == 200
    finally:
        replacement.stop()
