"""The right to be a follower's one active worker, freed by the database or the operating
system when the holder's process dies.

* PostgreSQL: an advisory lock per follower, held by one session of the process for all its
  followers (`LeaseSession`), so a process needs one extra connection however many
  followers it runs. Followers that deliver outside the database save their position
  through that session: a save that succeeds proves the lock was still held. TCP
  keepalives make both ends notice a vanished peer within ~25 s, so a standby takes over.
* SQLite: an exclusive `flock` on a file beside the database, one per follower.

Two followers of one name in one process are kept apart too (the session remembers who
holds what; each file lock has its own descriptor).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import weakref
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from infra.database import Database, PostgresDatabase, SQLiteDatabase


class LeaseLost(Exception):
    """The worker no longer holds its lease (its database session ended, or the position
    was moved by someone else): it stops and stands by."""


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (0 <= key < 2**63) named after the follower."""
    digest = hashlib.sha256(f"product-status follower {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def lock_path(database: SQLiteDatabase, name: str) -> Path:
    return Path(f"{database.path}.{name}.lock")


class Lease(ABC):
    """One follower's lease, and the saving of its position outside a transaction of its
    own (for followers whose "done" happens outside the database)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def acquire(self) -> bool:
        """True when this worker holds the lease now (also when it held it already)."""

    @abstractmethod
    def check(self) -> None:
        """Raises LeaseLost when the lease is gone."""

    @abstractmethod
    def save(self, table: str, start: int, end: int) -> None:
        """Moves the position from `start` to `end`; LeaseLost if it is not at `start`."""

    @abstractmethod
    def release(self) -> None: ...


class LeaseSession:
    """The PostgreSQL session that holds every advisory lock of this process."""

    _of: ClassVar[weakref.WeakKeyDictionary[PostgresDatabase, LeaseSession]] = (
        weakref.WeakKeyDictionary())
    _of_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, database: PostgresDatabase) -> LeaseSession:
        with cls._of_lock:
            session = cls._of.get(database)
            if session is None:
                session = cls._of[database] = LeaseSession(database)
            return session

    def __init__(self, database: PostgresDatabase) -> None:
        self.conninfo = database.conninfo  # not the database: it keys `_of` weakly
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._held: dict[int, object] = {}  # advisory key -> the lease holding it

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._held.clear()
            self._connection = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=5,
                application_name=f"product-status followers {holder_text()}"[:63],
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                options="-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                        "-c tcp_keepalives_count=3",
            )
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._held.clear()  # ending the session frees every lock it held
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def try_lock(self, key: int, holder: object) -> bool:
        with self._lock:
            if key in self._held:
                return self._held[key] is holder
            try:
                row = self._connect().execute(
                    "SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            except psycopg.Error:
                self._drop()
                raise
            if row and row[0]:
                self._held[key] = holder
                return True
            return False

    def execute(self, key: int, holder: object, sql: str, params: tuple[Any, ...]) -> Any:
        """Runs `sql` in the session, only while `holder` holds the lock `key`."""
        with self._lock:
            connection = self._connection
            if self._held.get(key) is not holder or connection is None or connection.closed:
                raise LeaseLost("the lease is not held")
            try:
                return connection.execute(sql, params).fetchone()
            except psycopg.Error as error:
                self._drop()
                raise LeaseLost(f"the lease's database session ended: {error}") from error

    def unlock(self, key: int, holder: object) -> None:
        with self._lock:
            if self._held.get(key) is not holder:
                return
            del self._held[key]
            if self._connection is not None and not self._connection.closed:
                try:
                    self._connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:
                    self._drop()

    def close(self) -> None:
        with self._lock:
            self._drop()


class AdvisoryLease(Lease):
    def __init__(self, database: PostgresDatabase, name: str) -> None:
        super().__init__(name)
        self.session = LeaseSession.of(database)
        self.key = advisory_key(name)

    def acquire(self) -> bool:
        return self.session.try_lock(self.key, self)

    def check(self) -> None:
        self.session.execute(self.key, self, "SELECT 1", ())

    def save(self, table: str, start: int, end: int) -> None:
        row = self.session.execute(
            self.key, self,
            f"UPDATE {table} SET position = %s WHERE name = %s AND position = %s "
            "RETURNING position",
            (end, self.name, start),
        )
        if row is None:
            self.release()
            raise LeaseLost(f"position {start} was moved by another worker")

    def release(self) -> None:
        self.session.unlock(self.key, self)


class FileLease(Lease):
    def __init__(self, database: SQLiteDatabase, name: str) -> None:
        super().__init__(name)
        self.database = database
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
            os.write(fd, holder_text().encode())
            self._fd = fd
        return True

    def check(self) -> None:
        if self._fd is None:
            raise LeaseLost("the lease was released")

    def save(self, table: str, start: int, end: int) -> None:
        self.check()
        with self.database.transaction(write=True) as cursor:
            row = cursor.execute(
                f"UPDATE {table} SET position = ? WHERE name = ? AND position = ? "
                "RETURNING position",
                (end, self.name, start),
            ).fetchone()
        if row is None:
            raise LeaseLost(f"position {start} was moved by another worker")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees the lock


def lease_for(database: Database, name: str) -> Lease:
    if isinstance(database, PostgresDatabase):
        return AdvisoryLease(database, name)
    if isinstance(database, SQLiteDatabase):
        return FileLease(database, name)
    raise TypeError(f"no lease for {type(database).__name__}")


def close_leases(database: Database) -> None:
    """Ends the lease session of this process (its followers have stopped)."""
    if isinstance(database, PostgresDatabase):
        LeaseSession.of(database).close()


def lease_holder(database: Database, name: str) -> str | None:
    """Who holds a follower's lease, in any process (None: no worker is active)."""
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
