"""Faults under load in the fleet (tests/fleet.py). Figures are printed (pytest -s)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.bootstrap import bootstrap
from infra.settings import load_settings
from tests.e2e.test_integrations_delivery import anonymous_documents
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
from tests.receivers import HttpReceiver

COMMANDS = 1000
KILLS = 5  # of each active follower process: projector, relay, deliverer
ADMIN = {"Authorization": "Bearer fleet-admin"}
PACE = 0.1  # seconds a load thread waits between two commands


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Fleet]:
    # One writer token makes every command here: far more than the default 600 a minute.
    # The webhook receivers listen on loopback; a failed delivery is tried again soon.
    with fleet(tmp_path, RATE_LIMIT_WRITES_PER_MINUTE="1000000",
               INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
               DELIVERY_RETRY_INITIAL_SECONDS="0.2", DELIVERY_RETRY_MAX_SECONDS="1") as started:
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


@dataclass
class Load:
    """What a load of COMMANDS commands with kills during it did."""

    elapsed: float
    kills: list[str]
    ended_at: float


def _load_while_killing(running: Fleet,
                        targets: Callable[[int], list[tuple[str, str]]]) -> Load:
    """COMMANDS paced commands through both API processes by 4 threads while, KILLS rounds
    long, the process of each `(command, follower)` of `targets(round)` holding that
    follower's lease is SIGKILLed (and replaced)."""
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
            for command, follower in targets(round_):
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
    assert len(statuses) == COMMANDS
    assert set(statuses) <= {200, 201}, REFUSALS[:3]
    return Load(elapsed, kills, time.monotonic())


def _assert_jetstream_and_read_tables(running: Fleet) -> str:
    """JetStream holds each stored event once and the read tables equal a rebuild; the
    figures."""
    apis = [api.url for api in running.apis]
    head = store_head(apis[0])
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
    return (f"{len(stored)} events stored, {len(published)} in JetStream "
            f"(replicas {replicas}), 0 repeated (head {head})")


def test_followers_killed_under_load_lose_and_repeat_nothing(running: Fleet) -> None:
    load = _load_while_killing(
        running, lambda _: [("project", "incident_list"), ("publish", "nats_relay")])
    kills = load.kills
    assert kills.count("active project") == kills.count("active publish") == KILLS, kills
    figures = _assert_jetstream_and_read_tables(running)
    print(f"\n{COMMANDS} commands through 2 API processes in {load.elapsed:.1f} s "
          f"({COMMANDS / load.elapsed:.0f}/s) with {len(kills)} SIGKILLs ({', '.join(kills)}); "
          f"{figures}; read tables and JetStream caught up "
          f"{time.monotonic() - load.ended_at:.1f} s after the last command")


def _anonymous_documents(api: str, incidents: set[str]) -> dict[str, bytes]:
    """Event id -> what an anonymous reader gets from the timelines, all events read."""
    head = {"Min-Position": str(store_head(api))}
    with httpx.Client(base_url=api, timeout=30, headers=head) as client:
        return anonymous_documents(client, sorted(incidents))


def test_the_active_deliverer_killed_under_load_delivers_each_event_once_in_order(
        running: Fleet) -> None:
    apis = [api.url for api in running.apis]
    internal, public = HttpReceiver().start(), HttpReceiver().start()
    try:
        integrations = []
        for receiver, include_internal in ((internal, True), (public, False)):
            created = httpx.post(f"{apis[0]}/api/v1/integrations", headers=ADMIN, json={
                "kind": "webhook", "url": receiver.url, "include_internal": include_internal},
                timeout=30)
            assert created.status_code == 201, created.text
            receiver.secret = created.json()["secret"]
            integrations.append(created.json()["id"])
        start = store_head(apis[0])
        # Each round kills the process delivering one of the two integrations (in turn).
        load = _load_while_killing(
            running, lambda round_: [("deliver", integrations[round_ % 2])])
        assert load.kills.count("active deliver") == KILLS, load.kills

        stored = stored_events(apis[0], after=start)
        assert len(stored) > COMMANDS // 2  # (a change to the same severity stores nothing)
        internal.wait_for(len(stored), timeout=180)
        anonymous = _anonymous_documents(apis[1], {event["subject"] for event in stored})
        expected_public = [anonymous[e["id"]] for e in stored if e["id"] in anonymous]
        assert len(expected_public) < len(stored)  # private incidents, internal changes
        public.wait_for(len(expected_public), timeout=180)
        delivered_at = time.monotonic()
        time.sleep(1)  # anything more (a repeat) would show now
    finally:
        internal.stop()
        public.stop()

    repeats = 0
    firsts = []
    for receiver in (internal, public):
        first: dict[str, bytes] = {}
        for item in receiver.delivered():
            body = first.setdefault(item.headers["webhook-id"], item.body)
            assert item.body == body  # a repeat is the same message, with the same id
        repeats += len(receiver.delivered()) - len(first)
        assert all(item.verified for item in receiver.received)
        firsts.append(first)
    # Every event once, none lost, in store order: as stored, and as an anonymous reader
    # sees it.
    assert [json.loads(body) for body in firsts[0].values()] == stored
    assert list(firsts[0]) == [event["id"] for event in stored]
    assert list(firsts[1].values()) == expected_public
    figures = _assert_jetstream_and_read_tables(running)
    print(f"\n{COMMANDS} commands through 2 API processes in {load.elapsed:.1f} s "
          f"({COMMANDS / load.elapsed:.0f}/s) with {KILLS} SIGKILLs of the active deliverer; "
          f"{len(stored)} events to the internal webhook, {len(expected_public)} to the "
          f"public one, each once in store order ({repeats} repeats, same webhook-id), "
          f"delivered {delivered_at - load.ended_at:.1f} s after the last command; {figures}")


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
