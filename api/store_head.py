"""The store's head for token reads, one query shared by the requests waiting for it.

A caller with a token who names no position reads every write committed before it asked,
whichever process took it (api/consistency.py): the store's head, read with one indexed
query. Asked once per request, that query (and the worker thread it runs in) costs more
than the rest of a kept answer. Requests arriving together share it, on one condition: the
query they take must have started after they arrived, so that it sees every commit made
before they asked. One query runs at a time; a request arriving while one runs waits for
the next, which starts when that one ends and serves every request that arrived
meanwhile (the busier the process, the more requests a query serves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from anyio import to_thread
from starlette.datastructures import State


class SharedHead:
    """The store's head, read by one query at a time for all the requests of an event loop
    (a single flight that only takes on requests arrived before it started)."""

    def __init__(self, read: Callable[[], int]) -> None:
        """`read`: the blocking query of the store's head."""
        self._read = read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: asyncio.Future[int] | None = None  # the query under way
        self._next: asyncio.Future[int] | None = None  # the one to start after it
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # queries run, for whom it concerns

    async def read(self) -> int:
        """The store's head as read by a query started after this call."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (a test client's requests may each have a loop)
            self._loop, self._running, self._next = loop, None, None
        if self._running is None:
            flight = self._running = loop.create_future()
            self._start(loop, flight)
        else:  # the one under way started before this request arrived: the next one
            if self._next is None:
                self._next = loop.create_future()
            flight = self._next
        # Shielded: a request given up on (its client left) leaves the query to the others.
        return await asyncio.shield(flight)

    def _start(self, loop: asyncio.AbstractEventLoop, flight: asyncio.Future[int]) -> None:
        self.queries += 1
        self._task = loop.create_task(self._query(loop, flight))

    async def _query(self, loop: asyncio.AbstractEventLoop, flight: asyncio.Future[int]
                     ) -> None:
        try:
            head = await to_thread.run_sync(self._read)
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except Exception as error:  # every request waiting for it fails as it would alone
            flight.set_exception(error)
        else:
            flight.set_result(head)
        finally:
            if self._loop is loop:
                self._running, following, self._next = self._next, self._next, None
                if following is not None:
                    self._start(loop, following)


def shared_head(state: State, read: Callable[[], int]) -> SharedHead:
    """The app's shared head (in `state`, made on first use)."""
    found: SharedHead | None = getattr(state, "shared_head", None)
    if found is None:
        found = state.shared_head = SharedHead(read)
    return found
