"""The worker that runs one follower (see infra/follower.py for what a follower is): its
lease, its position, its batches, its wake-ups and its back-off."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infra.event_log import StoredCloudEvent
from infra.follower import (
    Backoff,
    Delivering,
    FollowerBusy,
    FollowerOptions,
    FollowerState,
    Handler,
    Transactional,
    Unavailable,
    describe,
)
from infra.follower_lease import LeaseLost, lease_for
from infra.follower_positions import PositionRefused, Positions

if TYPE_CHECKING:
    from infra.followers import Followers

log = logging.getLogger("product_status.follower")


class Follower:
    """One follower's worker in this process; `run(stop)` in a thread of its own."""

    def __init__(self, handler: Handler, group: Followers,
                 options: FollowerOptions | None = None) -> None:
        self.handler = handler
        self.name = handler.name
        self.group = group
        self.options = options or FollowerOptions()
        self.positions = Positions(group.database, handler.positions)
        self.lease = lease_for(group.database, handler.name)
        self._lock = threading.Lock()
        self._state, self._position = "stopped", 0
        self._last_error: str | None = None
        self._done, self._last_done_at = 0, datetime.min.replace(tzinfo=UTC)
        self._next_log = 0.0
        self._ahead: tuple[int, Future[list[StoredCloudEvent]]] | None = None
        self._reader: ThreadPoolExecutor | None = None  # reads ahead while running

    # What it is doing.

    def state(self) -> FollowerState:
        with self._lock:
            return FollowerState(self.name, self._state, self._position, self._last_error,
                                 self._done, self._last_done_at if self._done else None)

    def _set(self, *, state: str | None = None, position: int | None = None,
             last_error: str | None = None) -> None:
        with self._lock:
            if state is not None:
                self._state = state
            if position is not None:
                self._position = position
            if last_error is not None:
                self._last_error = last_error

    def report(self) -> None:
        """The periodic status line (every `log_interval` seconds)."""
        now = self.state()
        log.info("%s: %s at position %d", self.name, now.state, now.position)

    def _tick(self) -> None:
        interval = self.options.log_interval
        if interval is not None and time.monotonic() >= self._next_log:
            self._next_log = time.monotonic() + interval
            self.report()

    # Running.

    def run(self, stop: threading.Event) -> None:
        """Follows the store until `stop` is set; never raises. Stands by while another
        worker holds the lease, and retries failures with back-off."""
        self.group.listener.start()
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        self._set(state="starting")
        self._next_log = time.monotonic() + (self.options.log_interval or 0)
        with self._reading():
            while not stop.is_set():
                try:
                    if not self.lease.acquire():
                        if self.state().state != "standby":
                            log.info("%s: another worker is active; standing by", self.name)
                        self._set(state="standby")
                        self._tick()
                        stop.wait(self.options.standby_poll * random.uniform(0.8, 1.2))
                        continue
                    try:
                        self._serve(stop, backoff)
                    finally:
                        self._drop_read_ahead()
                        self.lease.release()
                        self._set(state="stopped" if stop.is_set() else "standby")
                except LeaseLost as error:
                    log.warning("%s: lease lost (%s); standing by", self.name, describe(error))
                    stop.wait(self.options.standby_poll)
                except Exception as error:  # the store failed, or the handler had a bug
                    delay = backoff.next()
                    log.warning("%s: %s; retrying in %.1f s", self.name, describe(error), delay)
                    log.debug("%s: details", self.name, exc_info=True)
                    stop.wait(delay)
        self.handler.stopped()
        self._set(state="stopped")

    def run_once(self) -> int:
        """Handles everything stored after the saved position and returns how many events
        it handled. FollowerBusy when another worker is active; the handler's Unavailable
        is raised as it is (nothing is lost: the next run carries on)."""
        if not self.lease.acquire():
            raise FollowerBusy(f"another worker of {self.name} is active")
        try:
            with self._reading():
                self._activate(quietly=True)
                try:
                    self.handler.open()
                    total = 0
                    while handled := self._step():
                        total += handled
                    return total
                finally:
                    self.handler.close()
        finally:
            self.handler.stopped()
            self.lease.release()
            self._set(state="stopped")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A thread that reads the next batch ahead, for handlers that want it."""
        if not self.handler.read_ahead:
            yield
            return
        with ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-read") as reader:
            self._reader = reader
            try:
                yield
            finally:
                self._drop_read_ahead()
                self._reader = None

    def _activate(self, *, quietly: bool = False) -> None:
        self.positions.ensure(self.name)  # a follower registered since the tables were made
        position = self.positions.load(self.name)
        self._set(state="active", position=position)
        log.log(logging.DEBUG if quietly else logging.INFO, "%s: active from position %d",
                self.name, position)

    def _serve(self, stop: threading.Event, backoff: Backoff) -> None:
        self._activate()
        while not stop.is_set():
            try:
                try:
                    self.handler.open()
                    backoff.reset()
                    self._follow(stop)
                finally:
                    self._drop_read_ahead()
                    self.handler.close()
            except Unavailable as error:
                self._unavailable(error, backoff, stop)

    def _unavailable(self, error: Unavailable, backoff: Backoff, stop: threading.Event) -> None:
        self._set(last_error=describe(error))
        self._tick()
        stop.wait(backoff.next())
        self.lease.check()

    def _follow(self, stop: threading.Event) -> None:
        listener, options = self.group.listener, self.options
        next_check = time.monotonic() + options.lease_check
        look = True  # at the store, whatever the head says
        while not stop.is_set():
            generation = listener.generation
            handled = full = 0
            if look or listener.head > self._position:
                handled = self._step()
                full = handled >= self.handler.batch_size
            self._tick()
            if time.monotonic() >= next_check:
                self.lease.check()
                next_check = time.monotonic() + options.lease_check
            if not full:
                look = listener.wait(generation, options.idle, stop) == generation

    def _step(self) -> int:
        """Reads and handles the next batch; returns its size (0: nothing new)."""
        while True:
            start = self._position
            events = self._read(start)
            if not events:
                return 0
            end = events[-1].position
            if self._reader is not None and self.handler.read_ahead \
                    and len(events) >= self.handler.batch_size:
                self._ahead = (end, self._reader.submit(self._read_now, end))
            if isinstance(self.handler, Transactional):
                if not self._commit(self.handler, start, end, events):
                    continue  # the position moved: read again from there
            else:
                assert isinstance(self.handler, Delivering)
                self.handler.deliver(events)
                self.save_position(start, end)
            with self._lock:
                self._position, self._done = end, self._done + len(events)
                self._last_done_at, self._last_error = datetime.now(UTC), None
            self.group.listener.progressed(self.name, end)
            return len(events)

    def _commit(self, handler: Transactional, start: int, end: int,
                events: Sequence[StoredCloudEvent]) -> bool:
        prepared = handler.prepare(events)
        try:
            with self.group.write_turn(), \
                    self.group.database.transaction(write=True, pipeline=True) as cursor:
                self.positions.advance(cursor, self.name, start, end)
                handler.apply(cursor, prepared)
        except PositionRefused:
            self.lease.check()
            moved = self.positions.load(self.name)
            log.info("%s: the position moved from %d to %d (a rebuild?); carrying on",
                     self.name, start, moved)
            self._drop_read_ahead()
            self._set(position=moved)
            return False
        return True

    def save_position(self, start: int, end: int) -> None:
        """Moves a delivering follower's position once its batch up to `end` is done."""
        self.lease.save(self.positions.table, start, end)

    def _read_now(self, after: int) -> list[StoredCloudEvent]:
        return self.group.event_log.read(after, self.handler.batch_size)

    def _read(self, after: int) -> list[StoredCloudEvent]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead[0] == after:
                return ahead[1].result()
            _settle(ahead[1])
        return self._read_now(after)

    def _drop_read_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            _settle(ahead[1])


def _settle(future: Future[Any]) -> None:
    """Marks a read nobody will use as seen, so its failure is not reported as lost."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
