"""Plain SQL access to the database that holds the event store, the read tables and the
followers' positions: SQLite by default, PostgreSQL when DATABASE_URL says so.

SQL is written once with `?` placeholders; PostgreSQL gets them as `%s`.

A PostgreSQL connection the server has ended is not handed out (DeadConnectionCheck), and a
connection lost mid-statement raises one of CONNECTION_ERRORS, which the API answers 503
with Retry-After.
"""

from __future__ import annotations

import select
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import eventsourcing.persistence
import psycopg
from psycopg_pool import ConnectionPool

from projections.base import Cursor

Dialect = Literal["sqlite", "postgres"]
# An advisory lock key of this product's own ("PSTA"): held while creating tables, since
# PostgreSQL's IF NOT EXISTS is not safe against a concurrent CREATE of the same name.
SCHEMA_LOCK = 0x50535441
Row = tuple[Any, ...]
# The database (or the way to it) failed, not the statement: retrying later may succeed.
# psycopg's own for plain SQL; eventsourcing's wrap them for the event store.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
)


class DeadConnectionCheck:
    """A pool's `check`: refuses a connection the server has ended (a restart, a failover,
    `pg_terminate_backend`). A quiet connection costs no round trip: the server's goodbye
    (an error, then end of file) makes its socket readable, and only then is it pinged.
    One ended connection usually means all were, so every idle one is checked at once
    (psycopg_pool pauses, growing to seconds, between two failed checks of one request)."""

    def __init__(self) -> None:
        self.pool: ConnectionPool[Any] | None = None  # set once the pool is built

    def __call__(self, connection: psycopg.Connection[Any]) -> None:
        if not connection.closed and not _has_input(connection):
            return
        try:
            ConnectionPool.check_connection(connection)
        except psycopg.Error:
            if self.pool is not None:
                self.pool.check()
            raise


def _has_input(connection: psycopg.Connection[Any]) -> bool:
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class Database(ABC):
    dialect: Dialect

    @abstractmethod
    def transaction(self, *, write: bool = False, pipeline: bool = False) -> Any:
        """A context manager yielding a Cursor; commits on success, rolls back on error.
        A write transaction holds the write lock (SQLite) from its start. `pipeline`
        sends statements without waiting for each answer where the database can
        (PostgreSQL); results are waited for when read."""

    @abstractmethod
    def close(self) -> None: ...


def create_schema(database: Database, statements: Iterable[str]) -> None:
    """Runs CREATE ... IF NOT EXISTS statements under the schema lock the caller holds
    (infra.bootstrap.schema_lock). Each statement is its own transaction: a process starting
    while others work must never hold one table's lock while waiting for another's (CREATE
    INDEX IF NOT EXISTS takes a SHARE lock even when the index exists)."""
    for statement in statements:
        with database.transaction(write=True) as cursor:
            cursor.execute(statement)


class _PgCursor:
    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _PgCursor:
        self._cursor.execute(_pg_sql(sql), params)
        return self

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        # A cursor of its own: in pipeline mode the results of this statement must not
        # be what a later fetch on the shared cursor reads.
        with self._cursor.connection.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), params)

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> Any:
    return sql.replace("?", "%s").encode()


class PostgresDatabase(Database):
    dialect: Dialect = "postgres"

    def __init__(self, conninfo: str, *, max_size: int = 10) -> None:
        self.conninfo = conninfo
        check = DeadConnectionCheck()
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            conninfo, min_size=1, max_size=max_size, open=True, timeout=10,
            kwargs={"autocommit": False, "connect_timeout": 5}, check=check,
        )
        check.pool = self.pool

    @contextmanager
    def transaction(self, *, write: bool = False, pipeline: bool = False) -> Iterator[Cursor]:
        with self.pool.connection() as connection:
            if pipeline:
                with connection.pipeline(), connection.transaction(), \
                        connection.cursor() as cursor:
                    yield _PgCursor(cursor)
            else:
                with connection.transaction(), connection.cursor() as cursor:
                    yield _PgCursor(cursor)

    def close(self) -> None:
        self.pool.close()


class SQLiteDatabase(Database):
    dialect: Dialect = "sqlite"
    # Run on each new connection.
    pragmas: tuple[str, ...] = ("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=30000")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            for pragma in self.pragmas:
                connection.execute(pragma)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, *, write: bool = False, pipeline: bool = False) -> Iterator[Cursor]:
        connection = self._connection()
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cursor
        except BaseException:
            connection.rollback()
            raise
        else:
            connection.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
