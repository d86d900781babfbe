"""Read-your-writes: a read waits (bounded) until the projections reached a position.

The position is the later of the client's (the `Store-Position` a write answered, sent back
as `Min-Position` or in the `store_position` cookie) and the last position this process
wrote, so every client of a process reads its own writes even without sending one.
"""

from __future__ import annotations

import threading
import time

from infra.database import Database
from infra.event_log import store_head
from infra.projector import TRACKING


class ReadBarrier:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._condition = threading.Condition()
        self._reached = 0  # a lower bound of every projection's position
        self._written = 0  # the last position this process wrote

    def written(self, position: int) -> None:
        with self._condition:
            self._written = max(self._written, position)

    def reached(self, positions: dict[str, int]) -> None:
        with self._condition:
            self._reached = max(self._reached, min(positions.values(), default=0))
            self._condition.notify_all()

    @property
    def last_written(self) -> int:
        return self._written

    def has_reached(self, target: int) -> bool:
        """Whether every projection is known to have reached `target` (no I/O)."""
        return self._reached >= target

    def store_head(self) -> int:
        """The position of the store's last event: a client naming a later one names a
        position of another store (or of this one before a restore)."""
        with self.database.transaction() as cursor:
            return store_head(cursor, self.database)

    def wait(self, target: int, timeout: float) -> bool:
        """True once every projection reached `target`; False if `timeout` passed first."""
        if self._reached >= target:
            return True
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            stored = self._stored_minimum()
            with self._condition:
                self._reached = max(self._reached, stored)
                if self._reached >= target:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def _stored_minimum(self) -> int:
        with self.database.transaction() as cursor:
            row = cursor.execute(f"SELECT min(position) FROM {TRACKING}").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
