"""Read-your-writes: a read waits (bounded) until the projections reached a position.

The position is the later of the client's (the `Store-Position` a write answered, sent back
as `Min-Position` or in the `store_position` cookie) and the last position this process
wrote, so every client of a process reads its own writes even without sending one.

The barrier hears of this process's read models through the process's wake-up source
(`progressed`), at once. Read models followed by another process move only their rows
in `projection_positions`: those are read while someone waits, by one waiting thread at
a time for all of them, at 2 ms growing to 50 ms. (A NOTIFY per projection batch would
tell at once, but PostgreSQL serialises the commits of notifying transactions, the
store's inserts among them.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from infra.database import Database
from infra.event_log import EventLog
from infra.follower_positions import READ_MODELS, Positions


class ReadBarrier:
    def __init__(self, database: Database, event_log: EventLog, names: Iterable[str]) -> None:
        """`names`: the read models a read waits for."""
        self._event_log = event_log
        self._positions = Positions(database, READ_MODELS)
        self._condition = threading.Condition()
        self._known = dict.fromkeys(names, 0)  # a lower bound of each read model's position
        self._reached = 0  # the least of them
        self._written = 0  # the last position this process wrote
        self._looking = threading.Lock()  # held by the one thread reading the table

    def written(self, position: int) -> None:
        with self._condition:
            self._written = max(self._written, position)

    def progressed(self, name: str, position: int) -> None:
        """A read model of this process moved (from the wake-up source)."""
        self.reached({name: position})

    def reached(self, positions: Mapping[str, int]) -> None:
        with self._condition:
            for name, position in positions.items():
                if name in self._known and position > self._known[name]:
                    self._known[name] = position
            least = min(self._known.values(), default=0)
            if least > self._reached:
                self._reached = least
                self._condition.notify_all()

    @property
    def last_written(self) -> int:
        return self._written

    @property
    def position(self) -> int:
        """The least position every read model is known to have reached (no I/O)."""
        return self._reached

    def read(self) -> dict[str, int]:
        """Reads the position of each read model (one query), and learns from it."""
        found = self._positions.all()
        self.reached(found)
        return {name: found.get(name, 0) for name in self._known}

    def least(self, positions: Mapping[str, int]) -> int:
        """The least position of the read models in `positions` (as `read` answers)."""
        return min((positions.get(name, 0) for name in self._known), default=0)

    def look(self) -> None:
        """`read`, unless another thread is reading them right now (its answer serves)."""
        if self._looking.acquire(blocking=False):
            try:
                self.read()
            finally:
                self._looking.release()

    def has_reached(self, target: int) -> bool:
        """Whether every projection is known to have reached `target` (no I/O)."""
        return self._reached >= target

    def store_head(self) -> int:
        """The position of the store's last event: a client naming a later one names a
        position of another store (or of this one before a restore)."""
        return self._event_log.last_position()

    def wait(self, target: int, timeout: float) -> bool:
        """True once every projection reached `target`; False if `timeout` passed first."""
        if self._reached >= target:
            return True
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            self.look()
            with self._condition:
                if self._reached >= target:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(pause, remaining))
            pause = min(pause * 2, 0.05)
