"""The NATS relay against a real NATS server (never mocked), on SQLite and PostgreSQL.

Each test publishes to a topic of its own (`t<hex>`, stream `T<HEX>`) and deletes its
stream afterwards, so tests sharing the machine's NATS do not meet. Tests that stop and
start NATS run a throwaway server of their own, whatever TEST_NATS_URL says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from commands.application import NewIncident, NewUpdate
from domain.values import Status
from infra.bootstrap import Services, bootstrap
from infra.database import PostgresDatabase
from infra.event_log import StoredCloudEvent
from infra.relay import (
    BrokerUnavailable,
    Relay,
    RelayConfig,
    cloudevent_id,
    create_table,
    read_status,
    stored_position,
    stream_name,
    subject_for,
)
from infra.settings import Settings
from tests.conftest import make_settings
from tests.integration.test_followers import running
from tests.servers import NatsProcess, nats_server

pytestmark = pytest.mark.nats

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


# Helpers.


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with nats_server() as url:
        yield url


@pytest.fixture
def topic(nats_url: str) -> Iterator[str]:
    """A topic (and stream) of this test's own on the shared NATS, deleted afterwards."""
    name = "t" + uuid.uuid4().hex[:12]
    yield name
    asyncio.run(_delete_stream(nats_url, stream_name(name)))


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsProcess]:
    """A throwaway NATS of this test's own, which it may stop and start."""
    server = NatsProcess.managed_in(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


def config(url: str, topic: str, **overrides: Any) -> RelayConfig:
    fast: dict[str, Any] = {
        "connect_timeout": 0.5, "publish_timeout": 2.0, "backoff_initial": 0.05,
        "backoff_max": 0.5, "standby_poll": 0.05, "idle_poll": 0.05,
    }
    return RelayConfig(broker_url=url, topic=topic, **{**fast, **overrides})


def relay_for(services: Services, url: str, topic: str, **overrides: Any) -> Relay:
    """A relay woken by every commit of these services (as bootstrap wires it)."""
    return Relay(services.database, services.event_log, config(url, topic, **overrides),
                 services.followers)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def run_commands(services: Services, count: int) -> list[float]:
    """`count` commands: per incident a create, two updates and a resolving update (which
    stores two events). Returns how long each command took."""
    commands, took = services.commands, []
    incident_id = ""
    for number in range(count):
        started = time.monotonic()
        step = number % 4
        if step == 0:
            incident_id = commands.create(NewIncident(
                title=f"Outage {number}", given=frozenset({"title"}))).incident_id
        else:
            status = (Status.IDENTIFIED, Status.MONITORING, Status.RESOLVED)[step - 1]
            commands.add_update(incident_id, NewUpdate(status=status, message=f"step {step}"))
        took.append(time.monotonic() - started)
    return took


def stored(services: Services) -> list[StoredCloudEvent]:
    return services.event_log.read(0, 100_000)


async def _connect(url: str) -> Any:
    return await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                              max_reconnect_attempts=1, reconnect_time_wait=0)


async def _delete_stream(url: str, stream: str) -> None:
    client = await _connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream(timeout=5).delete_stream(stream)
    finally:
        await client.close()


async def _stream_messages(url: str, stream: str) -> list[RawStreamMsg]:
    client = await _connect(url)
    try:
        js = client.jetstream(timeout=5)
        state = (await js.stream_info(stream)).state
        return [await js.get_msg(stream, seq)
                for seq in range(state.first_seq, state.last_seq + 1)] if state.messages else []
    finally:
        await client.close()


async def _stream_count(url: str, stream: str) -> int:
    try:
        client = await _connect(url)
    except Exception:
        return -1
    try:
        return int((await client.jetstream(timeout=5).stream_info(stream)).state.messages)
    except NotFoundError:
        return 0
    finally:
        await client.close()


def stream_messages(url: str, topic: str) -> list[RawStreamMsg]:
    return asyncio.run(_stream_messages(url, stream_name(topic)))


def stream_count(url: str, topic: str) -> int:
    return asyncio.run(_stream_count(url, stream_name(topic)))


def assert_published_once(messages: list[RawStreamMsg], events: list[StoredCloudEvent],
                          topic: str) -> None:
    """Each stored event is in the stream exactly once, byte for byte, with its subject and
    headers, and each incident's events are in store order."""
    ids = [message.headers["Nats-Msg-Id"] if message.headers else None for message in messages]
    assert len(ids) == len(set(ids)) == len(events)
    by_id = {json.loads(event.document)["id"]: event for event in events}
    assert set(ids) == set(by_id)
    per_incident: dict[str, list[int]] = defaultdict(list)
    for message, event_id in zip(messages, ids, strict=True):
        event = by_id[str(event_id)]
        assert message.data == event.document
        assert message.subject == subject_for(topic, event.type)
        assert message.headers is not None
        assert message.headers["Content-Type"] == "application/cloudevents+json"
        per_incident[event.subject].append(event.position)
    for positions in per_incident.values():
        assert positions == sorted(positions)


# Tests.


def test_every_event_arrives_once_in_store_order_byte_for_byte(
    services: Services, nats_url: str, topic: str
) -> None:
    run_commands(services, 20)
    before = read_status(services.database, services.event_log)
    assert (before.state, before.position, before.lag) == ("not running", 0, before.head)
    assert before.head == len(stored(services)) == 25

    relay = relay_for(services, nats_url, topic)
    assert relay.run_once() == 25
    events = stored(services)
    messages = stream_messages(nats_url, topic)
    assert [m.data for m in messages] == [e.document for e in events]  # store order
    assert [m.subject for m in messages] == [
        f"{topic}.{e.type.removeprefix('com.example.incident.')}" for e in events
    ]
    assert {m.subject for m in messages} == {
        f"{topic}.{t}" for t in ("created", "update_added", "resolved")
    }
    assert_published_once(messages, events, topic)

    assert relay.run_once() == 0
    run_commands(services, 4)
    assert relay.run_once() == 5
    events = stored(services)
    messages = stream_messages(nats_url, topic)
    assert [m.data for m in messages] == [e.document for e in events]
    assert_published_once(messages, events, topic)
    after = read_status(services.database, services.event_log)
    assert (after.position, after.lag) == (events[-1].position, 0)
    assert relay.status().duplicates == 0


def test_a_running_relay_publishes_each_commit_at_once(
    services: Services, nats_url: str, topic: str
) -> None:
    relay = relay_for(services, nats_url, topic, idle_poll=5.0)  # woken, not polling
    with running(relay):
        wait_until(lambda: relay.status().broker == "connected", "the relay connected")
        for _ in range(3):
            run_commands(services, 4)
            wait_until(lambda: relay.status().lag == 0, "published", timeout=3)
        status = relay.status()
        assert (status.state, status.lag, status.last_error) == ("active", 0, None)
        assert status.last_publish_at is not None
    assert_published_once(stream_messages(nats_url, topic), stored(services), topic)


def test_the_stream_is_brought_up_to_date(sqlite_url: str, nats_url: str, topic: str) -> None:
    async def create_narrow_stream() -> None:
        client = await _connect(nats_url)
        try:
            await client.jetstream(timeout=5).add_stream(
                name=stream_name(topic), subjects=[f"{topic}.created", f"{topic}-audit.>"],
                duplicate_window=120)
        finally:
            await client.close()

    async def stream_config() -> Any:
        client = await _connect(nats_url)
        try:
            return (await client.jetstream(timeout=5).stream_info(stream_name(topic))).config
        finally:
            await client.close()

    asyncio.run(create_narrow_stream())
    services = bootstrap(make_settings(sqlite_url))
    try:
        run_commands(services, 4)
        relay = relay_for(services, nats_url, topic, duplicate_window=6 * 3600)
        assert relay.run_once() == 5
    finally:
        services.close()
    updated = asyncio.run(stream_config())
    assert sorted(updated.subjects) == sorted([f"{topic}-audit.>", f"{topic}.>"])
    assert updated.duplicate_window == 6 * 3600


def test_an_outage_of_nats_loses_and_duplicates_nothing(
    services: Services, own_nats: NatsProcess
) -> None:
    url, topic = own_nats.url, "t" + uuid.uuid4().hex[:12]
    relay = relay_for(services, url, topic, batch_size=32)  # several batches per catch-up
    with running(relay):
        run_commands(services, 8)
        wait_until(lambda: relay.status().lag == 0, "the first events were published")
        own_nats.stop()
        took = run_commands(services, 200)
        assert max(took) < 1.0, "a command waited for NATS"
        wait_until(lambda: relay.status().broker == "unreachable", "the outage was noticed",
                   timeout=5)
        status = relay.status()
        assert status.lag == 250
        assert status.last_error
        own_nats.start()
        assert own_nats.url == url
        wait_until(lambda: stream_count(url, topic) >= 260, "the relay caught up")
        wait_until(lambda: relay.status().lag == 0, "the position was saved")
    assert_published_once(stream_messages(url, topic), stored(services), topic)


def test_a_frozen_nats_times_out_and_nothing_is_published_twice(
    services: Services, own_nats: NatsProcess
) -> None:
    """Publishes that time out are unknown: some were stored. They are published again
    with the same ids and JetStream keeps each once."""
    url, topic = own_nats.url, "t" + uuid.uuid4().hex[:12]
    relay = relay_for(services, url, topic, batch_size=64, publish_timeout=0.5)
    assert own_nats.pid is not None
    with running(relay):
        wait_until(lambda: relay.status().broker == "connected", "the relay connected")
        os.kill(own_nats.pid, signal.SIGSTOP)
        try:
            took = run_commands(services, 100)
            assert max(took) < 1.0, "a command waited for NATS"
            wait_until(lambda: relay.status().broker == "unreachable", "the timeout", 10)
        finally:
            os.kill(own_nats.pid, signal.SIGCONT)
        wait_until(lambda: relay.status().lag == 0, "the relay caught up")
        # What the frozen server took in before the timeout was stored when it woke up.
        assert relay.status().duplicates >= 1
    assert_published_once(stream_messages(url, topic), stored(services), topic)


def test_a_relay_killed_between_publish_and_save_publishes_nothing_twice(
    services: Services, settings: Settings, nats_url: str, topic: str
) -> None:
    run_commands(services, 40)  # 50 events
    # A relay process that dies (os._exit) once JetStream acknowledged its first batch,
    # before it saves the position.
    script = (
        "import os, sys\n"
        "from infra.bootstrap import bootstrap\n"
        "from infra.relay import Relay, RelayConfig\n"
        "from infra.settings import load_settings\n"
        "class DiesBeforeSaving(Relay):\n"
        "    def save_position(self, start, end):\n"
        "        os._exit(17)\n"
        "services = bootstrap(load_settings({'DATABASE_URL': sys.argv[1]}))\n"
        "config = RelayConfig(broker_url=sys.argv[2], topic=sys.argv[3], batch_size=20)\n"
        "DiesBeforeSaving(services.database, services.event_log, config).run_once()\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(settings.database_url), nats_url, topic],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert child.returncode == 17, child.stderr
    assert stream_count(nats_url, topic) == 20
    wait_until(lambda: read_status(services.database, services.event_log).state
               == "not running", "the dead relay's lease was freed", timeout=10)
    assert read_status(services.database, services.event_log).position == 0

    relay = relay_for(services, nats_url, topic, batch_size=20)
    assert relay.run_once() == 50
    assert relay.status().duplicates == 20  # dropped by JetStream, by Nats-Msg-Id
    events = stored(services)
    messages = stream_messages(nats_url, topic)
    assert [m.data for m in messages] == [e.document for e in events]
    assert_published_once(messages, events, topic)


def test_nats_absent_at_start(services: Services, tmp_path: Path) -> None:
    server = NatsProcess.managed_in(tmp_path / "nats")  # not started yet
    topic = "t" + uuid.uuid4().hex[:12]
    relay = relay_for(services, server.url, topic)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        relay.run_once()
    assert time.monotonic() - started < 3
    try:
        with running(relay):
            wait_until(lambda: relay.status().broker == "unreachable", "reported unreachable",
                       timeout=3)
            took = run_commands(services, 20)
            assert max(took) < 1.0
            assert relay.status().lag == 25
            server.start()
            wait_until(lambda: stream_count(server.url, topic) == 25, "the relay caught up")
            wait_until(lambda: relay.status().lag == 0, "the position was saved")
            assert relay.status().broker == "connected"
        assert_published_once(stream_messages(server.url, topic), stored(services), topic)
    finally:
        server.stop()


def test_one_relay_publishes_while_another_waits_and_takes_over(
    services: Services, nats_url: str, topic: str
) -> None:
    first = relay_for(services, nats_url, topic)
    second = relay_for(services, nats_url, topic)
    with running(first) as stop_first:
        wait_until(lambda: first.status().state == "active", "the first relay is active")
        with running(second):
            wait_until(lambda: second.status().state == "standby", "the second stands by")
            assert read_status(services.database, services.event_log).state == "running"
            run_commands(services, 20)
            wait_until(lambda: stream_count(nats_url, topic) == 25, "published")
            wait_until(lambda: first.status().lag == 0, "the position was saved")
            assert (second.status().state, second.status().published) == ("standby", 0)
            assert first.status().published == 25

            stop_first.set()  # the first stops; the second takes over from its position
            wait_until(lambda: second.status().state == "active", "the second took over")
            run_commands(services, 20)
            wait_until(lambda: stream_count(nats_url, topic) == 50, "published")
            wait_until(lambda: second.status().lag == 0, "the position was saved")
            assert (second.status().published, second.status().duplicates) == (25, 0)
    assert_published_once(stream_messages(nats_url, topic), stored(services), topic)


@pytest.mark.postgres
def test_processes_starting_together_create_the_positions_table(postgres_url: str) -> None:
    databases = [PostgresDatabase(postgres_url) for _ in range(6)]
    start = threading.Barrier(len(databases))
    failures: list[BaseException] = []

    def starting(database: PostgresDatabase) -> None:
        start.wait()
        try:
            create_table(database)
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=starting, args=(d,)) for d in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert failures == []
        assert stored_position(databases[0]) == 0
    finally:
        for database in databases:
            database.close()


def test_the_event_id_is_read_from_the_document() -> None:
    leading = b'{"specversion": "1.0", "id": "abc-1", "data": {"id": "other"}}'
    reordered = b'{"data": {"id": "other"}, "id": "abc-2", "specversion": "1.0"}'
    escaped = b'{"specversion": "1.0", "id": "a\\u0062c", "type": "x"}'
    assert [cloudevent_id(d) for d in (leading, reordered, escaped)] == [
        "abc-1", "abc-2", "abc"]
