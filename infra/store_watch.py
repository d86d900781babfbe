"""Wakes the live event streams (`GET /api/v1/events/stream`) when the event store grows:
the asyncio side of the process's one wake-up source (infra/store_listener.py).

A stream never polls the store and never holds a thread while it waits: it waits on an
asyncio event of its loop. When the listener hears of new events it makes one call per
event loop that has streams waiting (not one per stream), and that loop wakes all its
streams at once, so the cost a commit pays does not grow with the streams open.

`close()` ends every stream (server shutdown); `close_when(predicate)` does so as soon as
the predicate holds, e.g. `lambda: server.should_exit` for uvicorn, which otherwise waits
for open streams before it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from infra.store_listener import StoreListener

T = TypeVar("T")


@dataclass
class _Signal:
    """What the waiters of one event loop wait on: `event`, replaced each time it fires."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0
    scheduled: bool = False  # a fire is on its way to the loop


@dataclass
class _Loop:
    """The streams of one event loop."""

    grown: _Signal = field(default_factory=_Signal)  # the store grew
    moved: _Signal = field(default_factory=_Signal)  # a follower of this process moved
    guard: asyncio.Task[None] | None = None


class Wake:
    """One waiting stream's wake-up, used on the stream's event loop."""

    def __init__(self, watch: StoreWatch, loop: _Loop) -> None:
        self._watch = watch
        self._loop = loop
        self._event = loop.grown.event

    def clear(self) -> None:
        """Call before looking at the store: a write after this wakes the next `wait`."""
        self._event = self._loop.grown.event

    async def wait(self, timeout: float) -> None:
        """Returns when the store's head moved (or the watch closed) since `clear()`,
        or after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            await self._event.wait()

    def __enter__(self) -> Wake:
        return self

    def __exit__(self, *_: object) -> None:
        self._watch._unsubscribe(self._loop)


class StoreWatch:
    def __init__(self, listener: StoreListener, *, poll_interval: float = 0.25) -> None:
        """`poll_interval`: how often the `close_when` predicates are looked at while
        streams are open."""
        self.listener = listener
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._closed = False
        self._close_when: list[Callable[[], bool]] = []
        self._loops: dict[asyncio.AbstractEventLoop, _Loop] = {}
        self._in_flight: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[Any]] = {}
        listener.on_advance(self._advanced)
        listener.on_progress(self._progressed)

    @property
    def head(self) -> int:
        """The highest store position this process has heard of."""
        return self.listener.head

    @property
    def generation(self) -> int:
        """Counts the moves of the head: a read of the store started after observing
        generation g sees every event that g stands for."""
        return self.listener.generation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        """How many streams follow the store through this watch."""
        return sum(state.grown.waiters for state in self._loops.values())

    def close(self) -> None:
        """Ends every stream; streams opened later end at once."""
        with self._lock:
            self._closed = True
        self._schedule(lambda state: state.grown, every=True)
        self._schedule(lambda state: state.moved, every=True)

    def close_when(self, predicate: Callable[[], bool]) -> None:
        """Closes the watch once `predicate()` holds; looked at every `poll_interval`
        while streams are open."""
        with self._lock:
            self._close_when.append(predicate)

    def subscribe(self) -> Wake:
        """A wake-up for one stream; use it as a context manager to unsubscribe. Call it
        on the stream's event loop."""
        loop = asyncio.get_running_loop()
        self.listener.start()  # other processes' writes too, from now on
        with self._lock:
            state = self._loop(loop)
            state.grown.waiters += 1
            if state.guard is None and not self._closed:
                state.guard = loop.create_task(self._guard(loop, state), name="store-watch")
        return Wake(self, state)

    def _unsubscribe(self, state: _Loop) -> None:
        with self._lock:
            state.grown.waiters -= 1

    def _loop(self, loop: asyncio.AbstractEventLoop) -> _Loop:
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _Loop()
        return state

    def _advanced(self) -> None:
        """The head moved (any thread)."""
        self._schedule(lambda state: state.grown)

    def _progressed(self, _name: str, _position: int) -> None:
        """A follower of this process moved (its thread)."""
        self._schedule(lambda state: state.moved)

    def _schedule(self, signal_of: Callable[[_Loop], _Signal], *, every: bool = False) -> None:
        """One call per event loop with waiters (`every`: with or without)."""
        with self._lock:
            due = []
            for loop, state in self._loops.items():
                signal = signal_of(state)
                if (signal.waiters or every) and not signal.scheduled:
                    signal.scheduled = True
                    due.append((loop, signal))
        for loop, signal in due:
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fire, signal)

    def _fire(self, signal: _Signal) -> None:
        with self._lock:
            signal.scheduled = False
        fired, signal.event = signal.event, asyncio.Event()
        fired.set()

    async def progress(self, timeout: float) -> None:
        """Returns when a follower of this process moved (a read model caught up a bit),
        or after `timeout` seconds (followers of other processes are not heard of)."""
        with self._lock:
            signal = self._loop(asyncio.get_running_loop()).moved
            signal.waiters += 1
            moved = signal.event
        try:
            with anyio.move_on_after(timeout):
                await moved.wait()
        finally:
            with self._lock:
                signal.waiters -= 1

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

    async def _guard(self, loop: asyncio.AbstractEventLoop, state: _Loop) -> None:
        """Looks at the `close_when` predicates while this loop has streams."""
        me = asyncio.current_task()
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                with self._lock:
                    if self._closed or not state.grown.waiters:
                        state.guard = None
                        return
                    predicates = list(self._close_when)
                if any(predicate() for predicate in predicates):
                    self.close()
        finally:
            with self._lock:
                if state.guard is me:
                    state.guard = None


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()
