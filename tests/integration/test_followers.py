"""The follower mechanism itself (infra/follower*.py), with handlers of the tests' own, on a
real SQLite file and a real PostgreSQL: every event once and in order across crashes,
one active worker with a standby that takes over, and one wake-up source per process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from commands.application import NewIncident
from infra.bootstrap import Services, bootstrap
from infra.event_log import StoredCloudEvent
from infra.follower import Backoff, Delivering, FollowerOptions, Transactional
from infra.follower_lease import lease_holder
from infra.follower_positions import DELIVERIES, READ_MODELS, Positions
from infra.follower_worker import Follower
from infra.settings import Settings
from infra.store_listener import StoreListener
from infra.store_watch import StoreWatch
from projections.base import Cursor
from tests.conftest import READER, LiveServer, make_settings
from tests.servers import nats_server

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
FAST = FollowerOptions(idle=0.5, standby_poll=0.05, backoff_initial=0.05, backoff_max=0.2)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# Handlers of the tests' own.


class Seen(Transactional):
    """Writes each event's position into `seen`, in the position's transaction; on the
    `crash_on`-th batch the process dies before that transaction commits."""

    name = "test_seen"

    def __init__(self, worker: str = "main", batch_size: int = 10,
                 crash_on: int | None = None) -> None:
        self.worker, self.batch_size, self.crash_on = worker, batch_size, crash_on
        self.batches = 0

    def apply(self, cursor: Cursor, prepared: Sequence[StoredCloudEvent]) -> None:
        self.batches += 1
        cursor.executemany("INSERT INTO seen (position, worker) VALUES (?, ?)",
                           [(event.position, self.worker) for event in prepared])
        if self.batches == self.crash_on:
            os._exit(17)


class Delivered(Delivering):
    """Appends each event's position to a file (the "destination"); on the `crash_on`-th
    batch the process dies once the batch is delivered, before its position is saved."""

    name = "test_delivered"

    def __init__(self, path: Path, batch_size: int = 10, crash_on: int | None = None) -> None:
        self.path, self.batch_size, self.crash_on = path, batch_size, crash_on
        self.batches = 0

    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        self.batches += 1
        with self.path.open("a") as out:
            out.write("".join(f"{event.position}\n" for event in events))
            out.flush()
            os.fsync(out.fileno())
        if self.batches == self.crash_on:
            os._exit(17)


def create_seen_table(services: Services) -> None:
    serial = ("INTEGER PRIMARY KEY AUTOINCREMENT" if services.database.dialect == "sqlite"
              else "BIGSERIAL PRIMARY KEY")
    with services.database.transaction(write=True) as cursor:
        cursor.execute(f"CREATE TABLE seen (seq {serial}, position BIGINT NOT NULL, "
                       "worker TEXT NOT NULL)")


def seen(services: Services) -> list[tuple[int, str]]:
    """(position, worker) in the order the rows were written."""
    with services.database.transaction() as cursor:
        rows = cursor.execute("SELECT position, worker FROM seen ORDER BY seq").fetchall()
    return [(int(position), str(worker)) for position, worker in rows]


def write(services: Services, count: int) -> None:
    for number in range(count):
        services.commands.create(NewIncident(title=f"Incident {number}"))


def positions(services: Services) -> list[int]:
    return [event.position for event in services.event_log.read(0, 100_000)]


@pytest.fixture
def quiet(settings: Settings) -> Iterator[Services]:
    """Services whose followers are driven by the test."""
    services = bootstrap(settings)
    yield services
    services.close()


@contextlib.contextmanager
def running(follower: Follower) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), f"{follower.name} did not stop"


def child(settings: Settings, code: str, *args: str) -> subprocess.Popen[str]:
    """A process of the product (its own bootstrap) running `code`."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from infra.bootstrap import bootstrap\n"
        "from infra.settings import load_settings\n"
        "from tests.integration.test_followers import Delivered, Seen, FAST\n"
        "services = bootstrap(load_settings({'DATABASE_URL': sys.argv[1]}))\n"
        + code
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, str(settings.database_url), *args], cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Every event, once, in order.


@pytest.mark.parametrize("crash", ["before commit", "after commit"])
def test_a_transactional_follower_applies_every_event_once_in_order_across_a_crash(
    quiet: Services, settings: Settings, crash: str
) -> None:
    create_seen_table(quiet)
    write(quiet, 45)
    if crash == "before commit":  # dies inside its second batch's transaction
        code = "services.followers.add(Seen(crash_on=2)).run_once()\n"
    else:  # dies once its second batch committed, before anything else
        code = ("import os\n"
                "done = []\n"
                "services.followers.listener.on_progress(\n"
                "    lambda name, end: done.append(end) or (len(done) == 2 and os._exit(17)))\n"
                "services.followers.add(Seen()).run_once()\n")
    died = child(settings, code)
    _, errors = died.communicate(timeout=120)
    assert died.returncode == 17, errors
    committed = 10 if crash == "before commit" else 20
    assert [position for position, _ in seen(quiet)] == positions(quiet)[:committed]
    assert Positions(quiet.database, READ_MODELS).load(Seen.name) == committed
    wait_until(lambda: lease_holder(quiet.database, Seen.name) is None, "the lease was freed")

    follower = quiet.followers.add(Seen(worker="after"))
    assert follower.run_once() == 45 - committed
    write(quiet, 5)
    assert follower.run_once() == 5
    assert [position for position, _ in seen(quiet)] == positions(quiet)  # once, in order
    assert Positions(quiet.database, READ_MODELS).load(Seen.name) == positions(quiet)[-1]


def test_a_delivering_follower_delivers_every_event_in_order_and_repeats_only_the_batch_in_flight(
    quiet: Services, settings: Settings, tmp_path: Path
) -> None:
    write(quiet, 45)
    destination = tmp_path / "delivered.txt"
    died = child(settings, "services.followers.add(Delivered(Path(sys.argv[2]), crash_on=3))"
                           ".run_once()\n", str(destination))
    _, errors = died.communicate(timeout=120)
    assert died.returncode == 17, errors
    stored = positions(quiet)
    assert Positions(quiet.database, DELIVERIES).load(Delivered.name) == stored[19]
    wait_until(lambda: lease_holder(quiet.database, Delivered.name) is None,
               "the lease was freed")

    follower = quiet.followers.add(Delivered(destination))
    assert follower.run_once() == 25
    delivered = [int(line) for line in destination.read_text().split()]
    # The batch delivered but not saved comes again, right after itself; nothing else.
    assert delivered == stored[:30] + stored[20:]
    assert Positions(quiet.database, DELIVERIES).load(Delivered.name) == stored[-1]


# One active worker, a standby that takes over.


def test_one_worker_is_active_and_the_standby_takes_over_when_it_stops(
    quiet: Services, settings: Settings
) -> None:
    create_seen_table(quiet)
    other = bootstrap(settings)  # a second process, as far as the store can tell
    try:
        first = quiet.followers.add(Seen(worker="first"), FAST)
        second = other.followers.add(Seen(worker="second"), FAST)
        with running(first) as stop_first:
            wait_until(lambda: first.state().state == "active", "the first is active")
            with running(second):
                wait_until(lambda: second.state().state == "standby", "the second stands by")
                write(quiet, 30)
                wait_until(lambda: len(seen(quiet)) == 30, "the first applied everything")
                assert second.state().state == "standby"
                stop_first.set()
                wait_until(lambda: second.state().state == "active", "the second took over")
                write(quiet, 20)
                wait_until(lambda: len(seen(quiet)) == 50, "the second applied the rest")
        rows = seen(quiet)
        assert [position for position, _ in rows] == positions(quiet)
        assert [worker for _, worker in rows] == ["first"] * 30 + ["second"] * 20
    finally:
        other.close()


def test_a_standby_takes_over_from_a_killed_process(
    quiet: Services, settings: Settings
) -> None:
    create_seen_table(quiet)
    write(quiet, 20)
    holder = child(settings,
                   "import threading\n"
                   "services.followers.add(Seen(worker='killed'), FAST)"
                   ".run(threading.Event())\n")
    try:
        wait_until(lambda: len(seen(quiet)) == 20, "the other process applied the backlog")
        standby = quiet.followers.add(Seen(worker="standby"), FAST)
        with running(standby):
            wait_until(lambda: standby.state().state == "standby", "standing by")
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            wait_until(lambda: standby.state().state == "active", "it took over")
            write(quiet, 10)
            wait_until(lambda: len(seen(quiet)) == 30, "it applied the new events")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=30)
    rows = seen(quiet)
    assert [position for position, _ in rows] == positions(quiet)
    assert [worker for _, worker in rows] == ["killed"] * 20 + ["standby"] * 10


# One wake-up source per process.


@pytest.mark.postgres
@pytest.mark.nats
def test_a_process_listens_to_the_store_on_one_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    with nats_server() as nats_url:
        settings = make_settings(postgres_url, CLOUDEVENT_BROKER_URL=nats_url,
                                 CLOUDEVENT_TOPIC="t" + os.urandom(6).hex())
        services = bootstrap(settings)
        try:
            services.start_projections()
            services.start_relay()
            server = LiveServer(services)
            server.start()
            try:
                with httpx.Client(base_url=server.url, timeout=10) as http, \
                        contextlib.ExitStack() as streams:
                    readers = []  # kept: a reader that is collected closes its response
                    for _ in range(3):
                        response = streams.enter_context(
                            http.stream("GET", "/api/v1/events/stream", headers=READER))
                        readers.append(response.iter_raw())
                        assert next(readers[-1]).startswith(b"retry:")
                    wait_until(lambda: services.store_watch.waiting == 3, "streams wait")
                    written = services.commands.create(NewIncident(title="Wakes them all"))
                    assert written.position is not None
                    wait_until(lambda: services.barrier.has_reached(written.position or 0),
                               "the read models followed")
                    wait_until(lambda: services.relay is not None
                               and services.relay.status().lag == 0, "the relay followed")
                    with psycopg.connect(postgres_url, autocommit=True) as connection:
                        listening = connection.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND query ILIKE 'LISTEN%%'").fetchone()
                    assert listening == (1,)
            finally:
                server.stop()
        finally:
            services.close()
            asyncio.run(_delete_stream(nats_url, settings.cloudevent_topic))


async def _delete_stream(url: str, topic: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from infra.relay_config import stream_name

    client = await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=1)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream(timeout=5).delete_stream(stream_name(topic))
    finally:
        await client.close()


def test_a_commit_wakes_each_event_loop_once_however_many_streams_wait(
    quiet: Services,
) -> None:
    listener = StoreListener(quiet.event_log)
    watch = StoreWatch(listener)

    async def streams() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        calls = 0
        original = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        with contextlib.ExitStack() as stack:
            wakes = [stack.enter_context(watch.subscribe()) for _ in range(200)]
            listener.close()  # nothing but the commit below moves the head
            for wake in wakes:
                wake.clear()
            waiting = [asyncio.ensure_future(wake.wait(timeout=3600)) for wake in wakes]
            await asyncio.sleep(0)
            loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
            commit = threading.Thread(target=listener.written, args=(head + 7,))
            commit.start()  # a commit, in another thread
            commit.join()
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            _, asleep = await asyncio.wait(waiting, timeout=DEADLINE)
            assert not asleep, f"{len(asleep)} streams were not woken"
        return calls, watch.waiting

    head = quiet.event_log.last_position()
    try:
        calls, waiting = asyncio.run(streams())
    finally:
        listener.close()
    assert (calls, waiting) == (1, 0)
    assert watch.head == head + 7


def test_back_off_doubles_up_to_its_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next() for _ in range(6)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert len({round(delay, 9) for delay in delays}) > 1
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5
