"""Wakes the live event streams (`GET /api/v1/events/stream`) when the event store grows,
and answers the one read-model question they ask: which incidents may the public see now.

A stream never polls the store by itself and never holds a thread while it waits: it waits
on an asyncio event that `StoreWatch` sets. The watch learns of new events from two sides:

* `written(position)`, a listener of the command application, called after each commit of
  this process: the streams wake at once;
* while at least one stream waits, a look at the store's head every `poll_interval`
  (default 0.25 s, in a short worker-thread call), for events written by other processes.

`close()` ends every stream (server shutdown); `close_when(predicate)` does so as soon as
the predicate holds, e.g. `lambda: server.should_exit` for uvicorn, which otherwise waits
for open streams before it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

log = logging.getLogger("product_status.stream")

T = TypeVar("T")


class Wake:
    """One waiting stream's wake-up: set by the watch from any thread, awaited on the
    stream's event loop."""

    def __init__(self, watch: StoreWatch, loop: asyncio.AbstractEventLoop) -> None:
        self._watch = watch
        self.loop = loop
        self._event = asyncio.Event()

    def set(self) -> None:
        # A closed loop raises RuntimeError: nobody waits there any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        """Call before looking at the store: a write after this wakes the next `wait`."""
        self._event.clear()

    async def wait(self, timeout: float) -> None:
        """Returns when the store's head moved (or the watch closed) since `clear()`,
        or after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            await self._event.wait()

    def __enter__(self) -> Wake:
        return self

    def __exit__(self, *_: object) -> None:
        self._watch._unsubscribe(self)


class StoreWatch:
    def __init__(self, head: Callable[[], int], *, poll_interval: float = 0.25) -> None:
        """`head` answers the store's last position (`EventLog.last_position`); it is
        called in a worker thread."""
        self._read_head = head
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._head = 0
        self._generation = 0
        self._closed = False
        self._close_when: list[Callable[[], bool]] = []
        self._wakes: set[Wake] = set()
        self._pollers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._in_flight: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[Any]] = {}

    @property
    def head(self) -> int:
        """The highest store position this watch has heard of."""
        return self._head

    @property
    def generation(self) -> int:
        """Counts the moves of the head: a read of the store started after observing
        generation g sees every event that g stands for."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        """How many streams follow the store through this watch."""
        return len(self._wakes)

    def written(self, position: int) -> None:
        """The store reached `position` (a commit of this process); any thread."""
        with self._lock:
            if position <= self._head:
                return
            self._head = position
            self._generation += 1
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def close(self) -> None:
        """Ends every stream; streams opened later end at once."""
        with self._lock:
            self._closed = True
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def close_when(self, predicate: Callable[[], bool]) -> None:
        """Closes the watch once `predicate()` holds; looked at every `poll_interval`
        while streams are open."""
        with self._lock:
            self._close_when.append(predicate)

    def subscribe(self) -> Wake:
        """A wake-up for one stream; use it as a context manager to unsubscribe. Call it
        on the stream's event loop."""
        loop = asyncio.get_running_loop()
        wake = Wake(self, loop)
        with self._lock:
            self._wakes.add(wake)
            if loop not in self._pollers and not self._closed:
                self._pollers[loop] = loop.create_task(self._poll(loop), name="store-watch")
        return wake

    def _unsubscribe(self, wake: Wake) -> None:
        with self._lock:
            self._wakes.discard(wake)

    async def shared(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of `call()`, shared with every caller that asks for the same `key`
        while it runs (the streams waiting at the store's head all want the same next
        events: one read serves them all). A caller's cancellation leaves the others'."""
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self._in_flight.get(slot)
        if task is None:
            task = loop.create_task(_awaited(call))
            self._in_flight[slot] = task

            def forget(done: asyncio.Task[Any]) -> None:
                if self._in_flight.get(slot) is done:
                    del self._in_flight[slot]
                if not done.cancelled():
                    done.exception()  # retrieved here; every waiter gets it raised

            task.add_done_callback(forget)
        result: T = await asyncio.shield(task)
        return result

    async def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        failing = False
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                with self._lock:
                    if self._closed or not any(w.loop is loop for w in self._wakes):
                        return
                    predicates = list(self._close_when)
                if any(predicate() for predicate in predicates):
                    self.close()
                    return
                try:
                    head = await anyio.to_thread.run_sync(self._read_head)
                except Exception as error:
                    if not failing:
                        log.warning("cannot look at the event store's head (%s); retrying",
                                    error)
                    failing = True
                    continue
                failing = False
                self.written(head)
        finally:
            with self._lock:
                if self._pollers.get(loop) is asyncio.current_task():
                    del self._pollers[loop]


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()
