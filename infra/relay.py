"""Publishes every stored CloudEvent to NATS JetStream, in store order: the event store is
the outbox.

The relay follows the store from its own tracked position (a row of `relay_positions`),
publishes each stored document byte for byte to `<topic>.<short type>` in structured mode
(`Content-Type: application/cloudevents+json`) with `Nats-Msg-Id` = the CloudEvent id,
and moves its position only after JetStream acknowledged every message of the batch. A
relay that dies between publishing and saving publishes the batch again, and JetStream
drops the repeats by `Nats-Msg-Id`: the stream's duplicate window must outlast the
outages the relay should ride out (24 h by default).

At most one relay per store is active. It holds a lease that the server or the operating
system frees when its process dies: a PostgreSQL advisory lock held by the relay's own
session, or an exclusive `flock` on a file beside the SQLite database. Other relays stand
by, try again every `standby_poll` seconds and take over from the saved position.

`run(stop)` runs in its own thread with its own asyncio loop, so a slow or absent NATS
never blocks or fails a command: connecting and publishing have short timeouts, and a
failure is retried with capped back-off while commands go on being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import nats
import psycopg
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from commands.cloudevents import rfc3339
from domain.incident import EVENT_TYPE_PREFIX
from infra.database import SCHEMA_LOCK, Database, PostgresDatabase, SQLiteDatabase
from infra.event_log import EventLog, StoredCloudEvent
from infra.settings import Settings
from infra.store_listener import StoreListener

log = logging.getLogger("product_status.relay")

# Not `projection_positions`: the read barrier takes the minimum of that table as "every read
# model reached N", and a relay held back by a NATS outage must not hold back reads.
POSITIONS = "relay_positions"
CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_NAME = "nats_relay"
# How often an idle active relay makes sure its lease (database session) is still there.
LEASE_CHECK_SECONDS = 5.0

T = TypeVar("T")


# Configuration.


def stream_name(topic: str) -> str:
    """The JetStream stream of a topic: `incidents` -> `INCIDENTS`, `a.b` -> `A_B`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic).upper()


@dataclass(frozen=True)
class RelayConfig:
    broker_url: str
    topic: str = "incidents"
    stream: str = ""  # default: derived from the topic
    duplicate_window: float = 24 * 3600.0  # seconds; at least the longest outage to ride out
    name: str = DEFAULT_NAME  # the tracked position's row and the lease's name
    batch_size: int = 1000
    concurrency: int = 256  # messages in flight, unacknowledged
    connect_timeout: float = 2.0
    publish_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    idle_poll: float | None = None  # default: 1 s on PostgreSQL (notified), 0.1 s on SQLite
    standby_poll: float = 1.0
    log_interval: float = 30.0

    def __post_init__(self) -> None:
        if not self.stream:
            object.__setattr__(self, "stream", stream_name(self.topic))
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        if self.duplicate_window < 1:
            raise ValueError("duplicate_window must be at least 1 second")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RelayConfig:
        """The relay of CLOUDEVENT_BROKER_URL, CLOUDEVENT_TOPIC and (when the settings have
        it) CLOUDEVENT_DUPLICATE_WINDOW_SECONDS; `overrides` replace any field."""
        if not settings.cloudevent_broker_url:
            raise ValueError("CLOUDEVENT_BROKER_URL is not set: there is no NATS to publish to")
        values: dict[str, Any] = {
            "broker_url": settings.cloudevent_broker_url,
            "topic": settings.cloudevent_topic,
        }
        window = getattr(settings, "cloudevent_duplicate_window_seconds", None)
        if window is not None:
            values["duplicate_window"] = float(window)
        values.update(overrides)
        return cls(**values)


def subject_for(topic: str, event_type: str) -> str:
    """`incidents` + `com.example.incident.update_added` -> `incidents.update_added`."""
    return f"{topic}.{event_type.removeprefix(EVENT_TYPE_PREFIX)}"


# The mapper writes `{"specversion": "1.0", "id": "...", ...}`: read the id from there
# without parsing the whole document, and parse it when it is written otherwise.
_LEADING_ID = re.compile(rb'\{\s*"specversion"\s*:\s*"[^"\\]*"\s*,\s*"id"\s*:\s*"([^"\\]+)"')


def cloudevent_id(document: bytes) -> str:
    found = _LEADING_ID.match(document)
    if found is not None:
        return found.group(1).decode()
    return str(json.loads(document)["id"])


# Status.


@dataclass(frozen=True)
class RelayStatus:
    """What a relay is doing. `state`: `active` (publishing), `standby` (another relay holds
    the lease), `starting`, `stopped`; from `read_status`: `running` (some relay holds the
    lease) or `not running`. `broker`: `connected`, `unreachable` (see `last_error`),
    `not connected` (standby or stopped) or `unknown` (read from the database)."""

    name: str
    state: str
    position: int
    head: int
    broker: str
    last_error: str | None = None
    last_publish_at: datetime | None = None
    published: int = 0  # messages acknowledged since this relay started
    duplicates: int = 0  # of those, repeats JetStream dropped by Nats-Msg-Id
    holder: str | None = None  # who holds the lease (read_status only)

    @property
    def lag(self) -> int:
        """Stored events not yet published (store positions; a gap left by a failed save
        counts as one)."""
        return max(0, self.head - self.position)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "broker": self.broker,
            "last_error": self.last_error,
            "last_publish_at": rfc3339(self.last_publish_at) if self.last_publish_at else None,
            "published": self.published,
            "duplicates": self.duplicates,
            "holder": self.holder,
        }

    def describe(self) -> str:
        parts = [
            f"{self.name} {self.state}",
            f"position {self.position}",
            f"head {self.head}",
            f"lag {self.lag}",
            f"broker {self.broker}" + (f" ({self.last_error})" if self.last_error else ""),
        ]
        if self.last_publish_at is not None:
            parts.append(f"last publish {rfc3339(self.last_publish_at)}")
        if self.published:
            parts.append(f"published {self.published} ({self.duplicates} duplicates dropped)")
        if self.holder is not None:
            parts.append(f"held by {self.holder}")
        return ", ".join(parts)


# The tracked position and the lease.


class LeaseLost(Exception):
    """The relay no longer holds its lease (its database session ended, or another relay
    moved the position): it stops publishing and stands by."""


class RelayBusy(Exception):
    """Another relay of this store is active."""


class BrokerUnavailable(Exception):
    """NATS could not be reached, or did not acknowledge in time (the cause is chained)."""


def create_table(database: Database, name: str = DEFAULT_NAME) -> None:
    """Creates the positions table and the relay's row if missing, one statement a
    transaction (as the projector does)."""
    create = (f"CREATE TABLE IF NOT EXISTS {POSITIONS} "
              "(name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
    with database.transaction(write=True) as cursor:
        if database.dialect == "postgres":
            cursor.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
        cursor.execute(create)
    with database.transaction(write=True) as cursor:
        cursor.execute(
            f"INSERT INTO {POSITIONS} (name, position) VALUES (?, 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )


def stored_position(database: Database, name: str = DEFAULT_NAME) -> int:
    with database.transaction() as cursor:
        row = cursor.execute(f"SELECT position FROM {POSITIONS} WHERE name = ?",
                             (name,)).fetchone()
    return int(row[0]) if row else 0


def _holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (0 <= key < 2**63) named after the relay."""
    digest = hashlib.sha256(f"product-status relay {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def lock_path(database: SQLiteDatabase, name: str) -> Path:
    return Path(f"{database.path}.{name}.lock")


class _Lease(ABC):
    """The right to publish, and the tracked position that goes with it."""

    @abstractmethod
    def acquire(self) -> bool:
        """True when this relay holds the lease now (also when it held it already)."""

    @abstractmethod
    def check(self) -> None:
        """Raises LeaseLost when the lease is gone."""

    @abstractmethod
    def position(self) -> int: ...

    @abstractmethod
    def save(self, start: int, end: int) -> None:
        """Moves the position from `start` to `end`; LeaseLost if it is not at `start`."""

    @abstractmethod
    def release(self) -> None: ...


class _AdvisoryLease(_Lease):
    """A PostgreSQL advisory lock held by a session of its own, which also saves the
    position: a save that succeeds proves the session, hence the lock, was still there."""

    def __init__(self, database: PostgresDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.key = advisory_key(name)
        self._connection: psycopg.Connection[Any] | None = None
        self._held = False

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._held = False
            self._connection = psycopg.connect(
                self.database.conninfo, autocommit=True, connect_timeout=5,
                application_name=f"product-status {self.name} {_holder_text()}"[:63],
                # Notice a vanished peer within ~25 s on both ends, so a standby takes over.
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                options="-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                        "-c tcp_keepalives_count=3",
            )
        return self._connection

    def _drop(self) -> None:
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def acquire(self) -> bool:
        if not self._held:
            try:
                row = self._connect().execute(
                    "SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error:
                self._drop()
                raise
            self._held = bool(row and row[0])
        return self._held

    def _in_session(self, sql: str, params: Sequence[Any]) -> Any:
        """Runs `sql` in the session holding the lock, never in a new one."""
        connection = self._connection
        if not self._held or connection is None or connection.closed:
            raise LeaseLost("the lease is not held")
        try:
            return connection.execute(sql, params).fetchone()
        except psycopg.Error as error:
            self._drop()
            raise LeaseLost(f"the lease's database session ended: {error}") from error

    def check(self) -> None:
        self._in_session("SELECT 1", ())

    def position(self) -> int:
        row = self._in_session(f"SELECT position FROM {POSITIONS} WHERE name = %s", (self.name,))
        return int(row[0]) if row else 0

    def save(self, start: int, end: int) -> None:
        row = self._in_session(
            f"UPDATE {POSITIONS} SET position = %s WHERE name = %s AND position = %s "
            "RETURNING position",
            (end, self.name, start),
        )
        if row is None:
            self._drop()
            raise LeaseLost(f"position {start} was moved by another relay")

    def release(self) -> None:
        if self._held:
            self._drop()  # ending the session frees the lock


class _FileLease(_Lease):
    """An exclusive `flock` on a file beside the SQLite database (freed when the process
    dies); the position is saved in a short write transaction."""

    def __init__(self, database: SQLiteDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.path = lock_path(database, name)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, _holder_text().encode())
            self._fd = fd
        return True

    def check(self) -> None:
        if self._fd is None:
            raise LeaseLost("the lease was released")

    def position(self) -> int:
        return stored_position(self.database, self.name)

    def save(self, start: int, end: int) -> None:
        with self.database.transaction(write=True) as cursor:
            row = cursor.execute(
                f"UPDATE {POSITIONS} SET position = ? WHERE name = ? AND position = ? "
                "RETURNING position",
                (end, self.name, start),
            ).fetchone()
        if row is None:
            raise LeaseLost(f"position {start} was moved by another relay")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees the lock


def _lease_for(database: Database, name: str) -> _Lease:
    if isinstance(database, PostgresDatabase):
        return _AdvisoryLease(database, name)
    if isinstance(database, SQLiteDatabase):
        return _FileLease(database, name)
    raise TypeError(f"no relay lease for {type(database).__name__}")


def lease_holder(database: Database, name: str = DEFAULT_NAME) -> str | None:
    """Who holds the relay's lease (None: no relay is active)."""
    if isinstance(database, SQLiteDatabase):
        try:
            fd = os.open(lock_path(database, name), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 200, 0).decode(errors="replace") or "another process"
            return None
        finally:
            os.close(fd)
    key = advisory_key(name)
    with database.transaction() as cursor:
        row = cursor.execute(
            "SELECT a.application_name, l.pid FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = ? AND l.objid::bigint = ?",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    if row is None:
        return None
    return str(row[0] or f"PostgreSQL backend {row[1]}")


def read_status(database: Database, event_log: EventLog, name: str = DEFAULT_NAME) -> RelayStatus:
    """The relay's position, the store's head and lag, and whether some relay (in any
    process) holds the lease, read from the database without running a relay."""
    create_table(database, name)
    holder = lease_holder(database, name)
    return RelayStatus(
        name=name,
        state="running" if holder else "not running",
        position=stored_position(database, name),
        head=event_log.last_position(),
        broker="unknown",
        holder=holder,
    )


# The relay.


@dataclass
class _Broker:
    js: JetStreamContext
    closed: asyncio.Event  # set when the connection is lost
    # The batch after a position, read from the store while the one before is published.
    read_ahead: tuple[int, asyncio.Future[list[StoredCloudEvent]]] | None = None

    def discard_read_ahead(self) -> None:
        if self.read_ahead is not None:
            self.read_ahead[1].add_done_callback(_settle)
            self.read_ahead = None


def _settle(future: asyncio.Future[Any]) -> None:
    """Marks a future nobody awaits as seen, so its exception is not logged as lost."""
    if not future.cancelled():
        future.exception()


def _describe(error: BaseException) -> str:
    if isinstance(error, BrokerUnavailable):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Relay:
    """Publishes the stored CloudEvents to JetStream; see the module's docstring."""

    def __init__(self, database: Database, event_log: EventLog, config: RelayConfig) -> None:
        self.database = database
        self.event_log = event_log
        self.config = config
        # Set it to look at the store at once (after each local commit); on PostgreSQL the
        # relay also listens to the store's notifications for commits of other processes.
        self.wake = threading.Event()
        self._lease = _lease_for(database, config.name)
        self._idle = config.idle_poll or (1.0 if isinstance(database, PostgresDatabase) else 0.1)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._state = "stopped"
        self._broker = "not connected"
        self._last_error: str | None = None
        self._last_publish_at: datetime | None = None
        self._published = 0
        self._duplicates = 0
        self._position = 0
        self._next_log = 0.0
        create_table(database, config.name)

    # Status.

    def status(self) -> RelayStatus:
        """The relay's status now (for /readyz and the log); asks the store for its head."""
        head = self.event_log.last_position()
        with self._lock:
            state, position = self._state, self._position
            status = RelayStatus(
                name=self.config.name, state=state, position=position, head=head,
                broker=self._broker, last_error=self._last_error,
                last_publish_at=self._last_publish_at, published=self._published,
                duplicates=self._duplicates,
            )
        if state != "active":  # another relay may be publishing
            status = replace(status, position=stored_position(self.database, self.config.name))
        return status

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state
            if state != "active":
                self._broker = "not connected"

    # Running.

    def run(self, stop: threading.Event) -> None:
        """Relays until `stop` is set; never raises. Stands by while another relay of the
        store is active, and retries failures of the store or of NATS with back-off."""
        listener: threading.Thread | None = None
        if isinstance(self.database, PostgresDatabase):
            listener = threading.Thread(
                target=StoreListener(self.database, self.wake).run, args=(stop,),
                name=f"{self.config.name}-listener", daemon=True,
            )
            listener.start()
        try:
            asyncio.run(self._run(stop))
        except Exception:  # a background thread has no one to raise to
            log.exception("%s: the relay stopped on an unexpected error", self.config.name)
        finally:
            self._set_state("stopped")
            if listener is not None:
                listener.join(timeout=5)

    def run_once(self) -> int:
        """Publishes everything stored after the relay's position and returns how many
        events it published. Raises RelayBusy when another relay is active and
        BrokerUnavailable when NATS fails (nothing is lost: the next run carries on)."""
        return asyncio.run(self._once())

    def save_position(self, start: int, end: int) -> None:
        """Moves the tracked position once JetStream acknowledged the events up to `end`."""
        self._lease.save(start, end)

    async def _run(self, stop: threading.Event) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self.config.name}-db")
        self._next_log = time.monotonic() + self.config.log_interval
        delay = self.config.backoff_initial
        self._set_state("starting")
        try:
            while not stop.is_set():
                try:
                    if not await self._db(self._lease.acquire):
                        if self._state != "standby":
                            log.info("%s: another relay is active; standing by", self.config.name)
                        self._set_state("standby")
                        await self._tick()
                        await self._pause(stop, self.config.standby_poll)
                        continue
                    try:
                        await self._serve(stop)
                    finally:
                        await self._db(self._lease.release)
                        self._set_state("stopped" if stop.is_set() else "standby")
                    delay = self.config.backoff_initial
                except LeaseLost as error:
                    log.warning("%s: lease lost (%s); standing by", self.config.name, error)
                    await self._pause(stop, self.config.standby_poll)
                except Exception as error:  # the store failed; NATS failures stay in _serve
                    log.warning("%s: event store unavailable (%s); retrying in %.1f s",
                                self.config.name, _describe(error), delay)
                    await self._pause(stop, delay)
                    delay = min(delay * 2, self.config.backoff_max)
        finally:
            self._executor.shutdown(wait=True)

    async def _serve(self, stop: threading.Event) -> None:
        """Active: publish from the saved position, reconnecting to NATS with back-off."""
        position = await self._db(self._lease.position)
        with self._lock:
            self._state, self._position = "active", position
        log.info("%s: active from position %d, publishing to %s (stream %s)",
                 self.config.name, position, self.config.broker_url, self.config.stream)
        delay = self.config.backoff_initial
        while not stop.is_set():
            try:
                async with self._connect() as broker:
                    delay = self.config.backoff_initial
                    await self._follow(broker, stop)
            except BrokerUnavailable as error:
                self._broker_failed(error, delay)
                await self._tick()
                await self._pause(stop, delay)
                delay = min(delay * 2, self.config.backoff_max)

    async def _follow(self, broker: _Broker, stop: threading.Event) -> None:
        next_check = time.monotonic() + LEASE_CHECK_SECONDS
        while not stop.is_set():
            if broker.closed.is_set():
                raise BrokerUnavailable("connection lost")
            published = await self._step(broker)
            await self._tick()
            if not published:
                await asyncio.to_thread(self._wait_for_work, stop, self._idle)
                if time.monotonic() >= next_check:
                    await self._db(self._lease.check)
                    next_check = time.monotonic() + LEASE_CHECK_SECONDS

    async def _once(self) -> int:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self.config.name}-db")
        try:
            if not await self._db(self._lease.acquire):
                raise RelayBusy(f"another relay of this store is active ({self.config.name})")
            try:
                position = await self._db(self._lease.position)
                with self._lock:
                    self._state, self._position = "active", position
                total = 0
                try:
                    async with self._connect() as broker:
                        while published := await self._step(broker):
                            total += published
                except BrokerUnavailable as error:
                    self._broker_failed(error, None)
                    raise
                return total
            finally:
                await self._db(self._lease.release)
                self._set_state("stopped")
        finally:
            self._executor.shutdown(wait=True)

    async def _step(self, broker: _Broker) -> int:
        """Publishes the next batch and saves the position; 0 when there is nothing new."""
        start, size = self._position, self.config.batch_size
        ahead = broker.read_ahead
        if ahead is not None and ahead[0] == start:
            broker.read_ahead = None
            events = await ahead[1]
        else:
            broker.discard_read_ahead()
            events = await self._db(self.event_log.read, start, size)
        if not events:
            return 0
        end = events[-1].position
        if len(events) == size:  # a backlog: read on while this batch is published
            broker.read_ahead = (end, asyncio.get_running_loop().run_in_executor(
                self._executor, self.event_log.read, end, size))
        acks = await self._publish(broker, events)
        await self._db(self.save_position, start, end)
        with self._lock:
            self._position = end
            self._published += len(acks)
            self._duplicates += sum(1 for ack in acks if ack.duplicate)
            self._last_publish_at = datetime.now(UTC)
        return len(events)

    async def _publish(self, broker: _Broker, events: Sequence[StoredCloudEvent]) -> list[PubAck]:
        """Publishes in store order with at most `concurrency` messages unacknowledged;
        returns once JetStream acknowledged every one. A timeout leaves it unknown whether
        a message was stored: the caller publishes the batch again, same ids."""
        topic, timeout = self.config.topic, self.config.publish_timeout
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            # One deadline, pushed back as acknowledgements free room for more messages
            # (a timeout per message would cost a task per message).
            async with asyncio.timeout(timeout) as deadline:
                for number, event in enumerate(events):
                    futures.append(await broker.js.publish_async(
                        subject_for(topic, event.type), event.document,
                        headers={Header.MSG_ID.value: cloudevent_id(event.document),
                                 "Content-Type": CONTENT_TYPE},
                    ))
                    if number % 64 == 0:
                        deadline.reschedule(loop.time() + timeout)
                deadline.reschedule(loop.time() + timeout)
                # Exceptions as results: a gather that fails or is cancelled with no one
                # awaiting it would be logged as "exception never retrieved".
                acks = asyncio.gather(*futures, return_exceptions=True)
                closed = asyncio.ensure_future(broker.closed.wait())
                waiters: set[asyncio.Future[Any]] = {acks, closed}
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                if not acks.done():
                    raise ConnectionError("connection lost")
                results: list[PubAck] = []
                for result in acks.result():
                    if isinstance(result, BaseException):
                        raise result
                    results.append(result)
                return results
        except Exception as error:
            for future in futures:  # settle every one, so none is left unretrieved
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            text = (f"no acknowledgement within {timeout:g} s" if isinstance(error, TimeoutError)
                    else _describe(error))
            raise BrokerUnavailable(text) from error

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[_Broker]:
        """A fresh connection with the stream in place. It does not reconnect by itself: a
        lost connection fails the batch at once, and the relay reconnects with back-off."""
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        async def on_error(error: Exception) -> None:
            log.debug("%s: NATS: %s", self.config.name, _describe(error))

        timeout = self.config.connect_timeout
        try:
            # max_reconnect_attempts=0 would mean "forever"; 1 means two quick tries.
            client = await asyncio.wait_for(
                nats.connect(
                    self.config.broker_url, name=f"product-status {self.config.name}",
                    connect_timeout=timeout, allow_reconnect=False,
                    max_reconnect_attempts=1, reconnect_time_wait=0,
                    ping_interval=10, max_outstanding_pings=2,
                    error_cb=on_error, disconnected_cb=on_closed, closed_cb=on_closed,
                ),
                timeout=2 * timeout + 1,
            )
        except Exception as error:
            raise BrokerUnavailable(_describe(error)) from error
        try:
            js = client.jetstream(timeout=self.config.publish_timeout,
                                  publish_async_max_pending=self.config.concurrency)
            try:
                await self._ensure_stream(js)
            except Exception as error:
                raise BrokerUnavailable(_describe(error)) from error
            with self._lock:
                was, self._broker, self._last_error = self._broker, "connected", None
            if was == "unreachable":
                log.info("%s: NATS at %s is back; catching up from position %d",
                         self.config.name, self.config.broker_url, self._position)
            broker = _Broker(js, closed)
            try:
                yield broker
            finally:
                broker.discard_read_ahead()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Creates the stream, or brings its subjects and duplicate window to ours
        (keeping whatever else an operator configured)."""
        name, subject = self.config.stream, f"{self.config.topic}.>"
        window = float(self.config.duplicate_window)
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(StreamConfig(
                name=name, subjects=[subject], duplicate_window=window,
                storage=StorageType.FILE,
                description="Incident CloudEvents, published by product-status",
            ))
            log.info("%s: created stream %s (%s, duplicate window %g s)",
                     self.config.name, name, subject, window)
            return
        config = info.config
        # Ours replaces any narrower subject of the topic (a stream refuses overlaps).
        subjects = [s for s in config.subjects or [] if not s.startswith(f"{self.config.topic}.")]
        subjects.append(subject)
        if subjects == config.subjects and abs((config.duplicate_window or 0) - window) < 1e-3:
            return
        await js.update_stream(config.evolve(subjects=subjects, duplicate_window=window))
        log.info("%s: updated stream %s (subjects %s, duplicate window %g s)",
                 self.config.name, name, ", ".join(subjects), window)

    def _broker_failed(self, error: BrokerUnavailable, retry_in: float | None) -> None:
        text = _describe(error)
        with self._lock:
            was, self._broker, self._last_error = self._broker, "unreachable", text
        if was != "unreachable":
            log.warning("%s: NATS at %s unreachable (%s)%s; commands go on being stored",
                        self.config.name, self.config.broker_url, text,
                        f"; retrying with back-off up to {self.config.backoff_max:g} s"
                        if retry_in is not None else "")
        else:
            log.debug("%s: NATS still unreachable (%s)", self.config.name, text)

    # Helpers.

    async def _db(self, function: Callable[..., T], *args: Any) -> T:
        """Runs blocking database work off the loop, one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _pause(self, stop: threading.Event, seconds: float) -> None:
        await asyncio.to_thread(stop.wait, seconds)

    def _wait_for_work(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.wake.wait(min(remaining, 0.1)):
                self.wake.clear()
                return

    async def _tick(self) -> None:
        """The periodic status line."""
        if time.monotonic() < self._next_log:
            return
        self._next_log = time.monotonic() + self.config.log_interval
        try:
            status = await self._db(self.status)
        except Exception as error:
            log.info("%s: status unavailable (%s)", self.config.name, _describe(error))
        else:
            log.info("relay %s", status.describe())
