"""The service's own commands at deadlines: auto-resolve, and the start and end of a
scheduled maintenance.

Each is a recorded decision, issued through the same command path as a person's (the
incident's rules, events, integrations), with actor `system`. The deadlines come from the
`incident_deadlines` read model; the command expects the version the deadline was read at
and carries a key derived from it, so a deadline is acted on exactly once: by one process
(the lease below), and even if two acted (the second finds the version moved, or its key
recorded). Someone who changed the incident first wins: the deadline moves with it.

One process acts at a time, under the follower lease named `timers` (an advisory lock on
PostgreSQL, a file lock on SQLite); the others stand by. Deadlines that passed while no
process acted are applied when one starts, oldest first.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from commands.application import CommandError, IncidentCommands, NewUpdate
from commands.cloudevents import SYSTEM_ACTOR
from domain.errors import IncidentRuleError
from domain.response import SYSTEM_KEY_PREFIX
from domain.values import Status, UpdateType
from infra.database import Database
from infra.follower import Backoff, describe
from infra.follower_lease import LeaseLost, lease_for
from infra.metrics import timer_fired
from projections.incident_deadlines import (
    AUTO_RESOLVE,
    END,
    START,
    Deadline,
    due_deadlines,
)

log = logging.getLogger("product_status.timers")

NAME = "timers"
BATCH = 500  # deadlines acted on between two looks at the read model
MAINTENANCE_STARTED = "Maintenance in progress"
MAINTENANCE_COMPLETED = "Maintenance completed"


def auto_resolve_message(hours: float) -> str:
    return (f"Resolved automatically: no change for {hours:g} hours.")


def update_for(deadline: Deadline, auto_resolve_hours: float) -> NewUpdate:
    """The status update the service posts at a deadline."""
    if deadline.kind == START:
        return NewUpdate(status=Status.MONITORING, update_type=UpdateType.MAINTENANCE,
                         public_message=MAINTENANCE_STARTED, author=SYSTEM_ACTOR)
    if deadline.kind == END:
        return NewUpdate(status=Status.RESOLVED, update_type=UpdateType.MAINTENANCE,
                         public_message=MAINTENANCE_COMPLETED, author=SYSTEM_ACTOR)
    assert deadline.kind == AUTO_RESOLVE, deadline.kind
    return NewUpdate(status=Status.RESOLVED, update_type=UpdateType.RESOLUTION,
                     public_message=auto_resolve_message(auto_resolve_hours),
                     author=SYSTEM_ACTOR)


def key_for(deadline: Deadline) -> str:
    """The same for every process acting on this deadline (an incident's version is
    reached once)."""
    return f"{SYSTEM_KEY_PREFIX}{deadline.kind}:v{deadline.version}"


class Timers:
    """Acts on due deadlines: `apply_due()` once, or `run(stop)` in a thread of its own."""

    def __init__(self, commands: IncidentCommands, database: Database,
                 clock: Callable[[], datetime], auto_resolve_hours: float,
                 interval: float = 1.0) -> None:
        self.commands = commands
        self.database = database
        self.clock = clock
        self.auto_resolve_hours = auto_resolve_hours
        self.interval = interval
        self.lease = lease_for(database, NAME)
        self._lock = threading.Lock()
        self._state = "off"
        self._applied = 0
        self._last_error: str | None = None
        # Deadlines acted on whose effect the read model may not show yet: not asked twice.
        self._acted: set[tuple[str, int]] = set()

    def state(self) -> dict[str, Any]:
        """`state`: `off` (not run here), `active`, `standby` (another process acts) or
        `stopped`; `applied`: commands recorded by this process."""
        with self._lock:
            return {"state": self._state, "applied": self._applied,
                    "last_error": self._last_error}

    def _set(self, state: str, error: str | None = None) -> None:
        with self._lock:
            self._state, self._last_error = state, error

    def apply_due(self) -> int:
        """Issues the command of every deadline due now, oldest first; returns how many
        were recorded. The caller holds the lease (or is a test)."""
        recorded = 0
        while True:
            due = [d for d in due_deadlines(self.database, self.clock(),
                                            self.auto_resolve_hours)
                   if (d.incident_id, d.version) not in self._acted][:BATCH]
            if not due:
                return recorded
            for deadline in due:
                if self._apply(deadline):
                    recorded += 1
                self._acted.add((deadline.incident_id, deadline.version))
            if len(self._acted) > 100_000:
                self._acted.clear()

    def _apply(self, deadline: Deadline) -> bool:
        try:
            written = self.commands.add_update(
                deadline.incident_id, update_for(deadline, self.auto_resolve_hours),
                expected_version=deadline.version, request_key=key_for(deadline),
                actor=SYSTEM_ACTOR)
        except (CommandError, IncidentRuleError) as error:
            # Changed since the read model saw it (someone moved first, or another process
            # acted): the read model will say whether something is still due. A failing
            # store is raised (and the deadline tried again).
            log.debug("%s of %s at v%d not applied: %s", deadline.kind,
                      deadline.incident_id, deadline.version, error)
            return False
        if written.recorded:
            log.info("%s of %s (due %s) applied", deadline.kind, deadline.incident_id,
                     deadline.due.isoformat())
            timer_fired(deadline.kind)
            with self._lock:
                self._applied += 1
        return written.recorded

    def run(self, stop: threading.Event) -> None:
        """Acts on deadlines every `interval` seconds while this process holds the lease;
        stands by otherwise. Never raises."""
        backoff = Backoff(0.5, 10.0)
        self._set("starting")
        while not stop.is_set():
            try:
                if not self.lease.acquire():
                    self._set("standby")
                    stop.wait(self.interval * random.uniform(0.8, 1.2))
                    continue
                self._set("active")
                try:
                    while not stop.is_set():
                        self.apply_due()
                        backoff.reset()
                        self.lease.check()
                        stop.wait(self.interval)
                finally:
                    self.lease.release()
            except LeaseLost as error:
                log.warning("timers: lease lost (%s); standing by", describe(error))
                self._set("standby", describe(error))
                stop.wait(self.interval)
            except Exception as error:  # the store failed
                delay = backoff.next()
                log.warning("timers: %s; retrying in %.1f s", describe(error), delay)
                self._set("standby", describe(error))
                stop.wait(delay)
        self._set("stopped")
