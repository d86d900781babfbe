"""The integrations this process delivers: one follower of the event store each, started,
restarted and stopped as the `integrations` table says.

The table is read every `poll` seconds, and at once when a change is made through this
process (`wake()`); a changed revision (new settings, a new secret, a replay, a resume)
restarts that integration's follower, which carries on from its saved position. Every
process that delivers runs a follower for every enabled integration; the follower's lease
makes one of them active and the others stand by.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from infra.integrations.delivery import IntegrationDelivery, RetrySchedule
from infra.integrations.kinds import DeliveryContext

log = logging.getLogger("product_status.integrations")

# Runs a handler as a follower in a thread of its own until `stop` is set.
StartFollower = Callable[[IntegrationDelivery, threading.Event], threading.Thread]


@dataclass
class _Running:
    revision: int
    stop: threading.Event
    thread: threading.Thread
    handler: IntegrationDelivery


class Deliverers:
    def __init__(self, context: DeliveryContext, start_follower: StartFollower,
                 poll: float = 1.0) -> None:
        self.context = context
        self.start_follower = start_follower
        self.poll = poll
        self.schedule = RetrySchedule.from_settings(context.settings)
        self._running: dict[str, _Running] = {}
        self._stopping: list[_Running] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Look at the integrations now (one was changed through this process)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Keeps the followers in line with the table until `stop` is set."""
        while not stop.is_set():
            self._wake.clear()
            try:
                self.refresh()
            except Exception as error:  # the database is away: try again next round
                log.warning("integrations: cannot read their settings (%s)", error)
            self._wake.wait(self.poll)
        self.close()

    def refresh(self) -> None:
        revisions = self.context.store.revisions()
        with self._lock:
            for integration_id, running in list(self._running.items()):
                if revisions.get(integration_id) != running.revision:
                    self._stop(integration_id)
            for integration_id in revisions:
                if integration_id in self._running:
                    continue
                integration = self.context.store.get(integration_id)
                if integration is None or not integration.enabled:
                    continue
                stop = threading.Event()
                handler = IntegrationDelivery(integration, self.context, stop, self.schedule)
                thread = self.start_follower(handler, stop)
                self._running[integration_id] = _Running(integration.revision, stop, thread,
                                                         handler)
            self._stopping = [r for r in self._stopping if r.thread.is_alive()]

    def _stop(self, integration_id: str) -> None:
        running = self._running.pop(integration_id)
        running.stop.set()
        self._stopping.append(running)

    def running(self) -> list[str]:
        """The integrations this process runs a follower for."""
        with self._lock:
            return list(self._running)

    def close(self) -> None:
        with self._lock:
            for integration_id in list(self._running):
                self._stop(integration_id)
            stopping, self._stopping = self._stopping, []
        for running in stopping:
            running.thread.join(timeout=15)
