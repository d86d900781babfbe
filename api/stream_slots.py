"""Bounds the live event streams open at once in one process (MAX_EVENT_STREAMS): each
holds a connection for as long as its client stays, so without a bound they would take
every connection the server has."""

from __future__ import annotations

import logging
import threading
import time

from starlette.datastructures import State

from api.problems import Problem
from infra.serving_limits import open_files_limit
from infra.settings import Settings

log = logging.getLogger("product_status.stream")

RETRY_AFTER_SECONDS = 5
REPORT_INTERVAL = 60.0


class StreamSlot:
    """One open stream's place; `release()` gives it back (once, however often called)."""

    def __init__(self, slots: StreamSlots) -> None:
        self._slots: StreamSlots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._give_back()


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()
        self._next_report = 0.0

    def take(self) -> StreamSlot:
        """A place for one more stream, or a 503 problem with Retry-After at the limit."""
        with self._lock:
            if self.open < self.limit:
                self.open += 1
                return StreamSlot(self)
            now, report = time.monotonic(), False
            if now >= self._next_report:
                self._next_report, report = now + REPORT_INTERVAL, True
        if report:  # at most once a minute, however many are refused
            log.warning("%d live event streams are open (MAX_EVENT_STREAMS): refusing "
                        "new ones", self.limit)
        raise Problem(503, f"too many live event streams are open (at most {self.limit}); "
                      "retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    def _give_back(self) -> None:
        with self._lock:
            self.open -= 1


def stream_slots(state: State, settings: Settings) -> StreamSlots:
    """The application's stream slots, made on first use from the settings."""
    found = getattr(state, "stream_slots", None)
    if not isinstance(found, StreamSlots):
        found = StreamSlots(settings.event_stream_limit(open_files_limit()))
        state.stream_slots = found
    return found
