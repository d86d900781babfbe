"""The followers of one process, and what they share: the store they follow, the process's
one wake-up source (StoreListener), its lease session and, on SQLite, a turn at writing.

Registering a follower is `followers.add(handler)`; `start(stop)` runs each in a thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from infra.database import Database, PostgresDatabase
from infra.event_log import EventLog
from infra.follower import FollowerOptions, Handler
from infra.follower_worker import Follower
from infra.store_listener import StoreListener


class Followers:
    def __init__(self, database: Database, event_log: EventLog,
                 listener: StoreListener | None = None) -> None:
        self.database = database
        self.event_log = event_log
        conninfo = database.conninfo if isinstance(database, PostgresDatabase) else None
        self.listener = listener or StoreListener(event_log, conninfo)
        self.members: list[Follower] = []
        # SQLite lets one transaction write at a time, and a writer that finds the file
        # locked sleeps in steps of milliseconds: this process's followers queue here.
        self._write_turn = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, handler: Handler, options: FollowerOptions | None = None) -> Follower:
        follower = Follower(handler, self, options)
        self.members.append(follower)
        return follower

    def register(self, follower: Follower) -> Follower:
        """Adds a follower built elsewhere (a subclass with more to say, like the relay)."""
        self.members.append(follower)
        return follower

    @contextlib.contextmanager
    def write_turn(self) -> Iterator[None]:
        if self.database.dialect != "sqlite":
            yield
            return
        with self._write_turn:
            yield

    def start(self, members: Sequence[Follower], stop: threading.Event) -> None:
        """Runs these followers in the background until `stop` is set."""
        self.listener.start()
        for follower in members:
            thread = threading.Thread(target=follower.run, args=(stop,),
                                      name=f"follower-{follower.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Waits for the followers (whose `stop` the caller set), then stops listening."""
        self.listener.interrupt()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self.listener.close()
