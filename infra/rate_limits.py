"""Limits shared by every process on one database: at most `count` hits of a key (a token's
name, a client address) in any `window_seconds`, counted in buckets of 1/60 of the window.

The counts live in the `rate_counts` table (UNLOGGED on PostgreSQL: counts need no crash
safety; on SQLite a file of their own beside the store, written without fsync, so that
counting never waits for the event store's write lock). A process that was told a key is
over its limit remembers it until the answer's Retry-After, asking nothing meanwhile, so a
flood costs the database nothing once refused."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.database import Database, SQLiteDatabase

TABLE = "rate_counts"
_BUCKETS = 60  # per window
_PURGE_EVERY = 1000  # hits between removals of expired buckets


@dataclass(frozen=True)
class Limit:
    name: str
    count: int
    window_seconds: int

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / _BUCKETS


class _SQLiteCounts(SQLiteDatabase):
    """A file of its own: the counts must not take the event store's write lock. Written
    without fsync: counts need no crash safety."""

    pragmas = (*SQLiteDatabase.pragmas, "PRAGMA synchronous=OFF")


class RateLimits:
    def __init__(self, database: Database, sqlite_file: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.database = database if sqlite_file is None else _SQLiteCounts(sqlite_file)
        self.unlogged = database.dialect == "postgres"
        self.clock = clock
        self._blocked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._hits = 0
        self._seen: dict[str, Limit] = {}

    def create_table(self) -> None:
        kind = "UNLOGGED TABLE" if self.unlogged else "TABLE"
        with self.database.transaction(write=True) as cursor:
            cursor.execute(f"CREATE {kind} IF NOT EXISTS {TABLE} (key TEXT NOT NULL, "
                           "bucket BIGINT NOT NULL, hits INTEGER NOT NULL, "
                           "PRIMARY KEY (key, bucket))")

    def close(self) -> None:
        """Closes the counts' own file (SQLite); PostgreSQL's pool is the database's."""
        if isinstance(self.database, _SQLiteCounts):
            self.database.close()

    def take(self, limit: Limit, key: str) -> int | None:
        """Counts one hit unless that would exceed the limit. None: allowed; otherwise the
        seconds to wait before one more would be (at least 1), which this process then
        remembers."""
        remembered = self.remembered(limit, key)
        if remembered is not None:
            return remembered
        now = self.clock()
        current = self._bucket(limit, now)
        name = f"{limit.name}:{key}"
        with self.database.transaction(write=True) as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (key, bucket, hits) VALUES (?, ?, 1) ON CONFLICT "
                f"(key, bucket) DO UPDATE SET hits = {TABLE}.hits + 1", (name, current))
            buckets = self._window(cursor, limit, key, current)
            over = sum(hits for _, hits in buckets) > limit.count
            if over:
                cursor.execute(f"UPDATE {TABLE} SET hits = hits - 1 WHERE key = ? AND bucket = ?",
                               (name, current))
                buckets = [(b, h - 1 if b == current else h) for b, h in buckets]
        self._purge_now_and_then(limit, now)
        return self._verdict(limit, key, buckets, now, current) if over else None

    def _window(self, cursor: Any, limit: Limit, key: str, current: int) -> list[tuple[int, int]]:
        rows = cursor.execute(
            f"SELECT bucket, hits FROM {TABLE} WHERE key = ? AND bucket > ? ORDER BY bucket",
            (f"{limit.name}:{key}", current - _BUCKETS)).fetchall()
        return [(int(b), int(h)) for b, h in rows]

    def _verdict(self, limit: Limit, key: str, buckets: list[tuple[int, int]], now: float,
                 current: int) -> int | None:
        """None when one more hit fits; else when enough of the oldest buckets expire."""
        excess = sum(hits for _, hits in buckets) - limit.count + 1
        if excess <= 0:
            return None
        freed = 0
        for bucket, hits in buckets:
            freed += hits
            if freed >= excess:
                leaves_at = (bucket + _BUCKETS) * limit.bucket_seconds
                wait = max(1, math.ceil(leaves_at - now))
                with self._lock:
                    self._blocked[(limit.name, key)] = self.clock() + wait
                return wait
        return max(1, math.ceil((current + 1) * limit.bucket_seconds - now))

    def remembered(self, limit: Limit, key: str) -> int | None:
        """Without I/O: the seconds left when this process was told the key is over."""
        with self._lock:
            until = self._blocked.get((limit.name, key))
            if until is None:
                return None
            left = until - self.clock()
            if left <= 0:
                del self._blocked[(limit.name, key)]
                return None
        return max(1, math.ceil(left))

    def _bucket(self, limit: Limit, now: float) -> int:
        return int(now // limit.bucket_seconds)

    def _purge_now_and_then(self, limit: Limit, now: float) -> None:
        with self._lock:
            self._seen[limit.name] = limit
            self._hits += 1
            if self._hits % _PURGE_EVERY:
                return
            for key in [k for k, until in self._blocked.items() if until < self.clock()]:
                del self._blocked[key]
            seen = list(self._seen.values())
        for each in seen:  # the key range of one limit: "name:" up to "name;"
            with self.database.transaction(write=True) as cursor:
                cursor.execute(f"DELETE FROM {TABLE} WHERE key >= ? AND key < ? AND bucket <= ?",
                               (f"{each.name}:", f"{each.name};",
                                self._bucket(each, now) - _BUCKETS))
