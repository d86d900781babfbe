"""The one wake-up source of a process: it learns that the event store grew and wakes every
follower, every live stream and whoever else waits, and it passes the followers' progress
on to whoever tracks it (the read barrier).

Three sources feed it:

* `written(position)`, a listener of the command application, after each commit of this
  process: constant work whatever waits (a condition's few follower threads, and one call
  per event loop of streams, never one per stream);
* on PostgreSQL, one LISTEN connection per process on the channel the store's recorder
  NOTIFYs on every insert; a burst of notifications costs one look at the head;
* on SQLite, whose recorder notifies nobody, a look at the head every `poll_interval`
  (50 ms) while the listener runs.

It keeps the head (the highest position heard of) and a generation that counts the head's
moves: a read of the store started after observing generation g sees what g stands for.

eventsourcing's own `recorder.subscribe()` does not serve here: each subscription reads
every event into a queue of its own, one notification at a time, with two threads (and
a connection) per subscriber, and SQLite cannot subscribe at all. Followers read batches
from their own positions; all they need from the store is a nudge.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from infra.event_log import EventLog

log = logging.getLogger("product_status.store")

# A waiting thread looks at its stop event this often even when nothing wakes it.
STOP_CHECK = 0.25


class StoreListener:
    def __init__(self, event_log: EventLog, conninfo: str | None = None, *,
                 poll_interval: float = 0.05, reconnect: float = 1.0) -> None:
        """`conninfo`: the PostgreSQL to LISTEN to (None: look at the head every
        `poll_interval` seconds instead)."""
        self.event_log = event_log
        self.conninfo = conninfo if event_log.channel else None
        self.poll_interval = poll_interval
        self.reconnect = reconnect
        self._condition = threading.Condition()
        self._head = 0
        self._generation = 0
        self._advance_hooks: tuple[Callable[[], None], ...] = ()
        self._progress_hooks: tuple[Callable[[str, int], None], ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def head(self) -> int:
        """The highest store position heard of."""
        return self._head

    @property
    def generation(self) -> int:
        return self._generation

    # Sources.

    def written(self, position: int) -> None:
        """The store reached `position` (a commit of this process); any thread."""
        self._advance(position)

    def _advance(self, head: int) -> None:
        with self._condition:
            if head <= self._head:
                return
            self._head = head
            self._generation += 1
            self._condition.notify_all()
            hooks = self._advance_hooks
        for hook in hooks:
            hook()

    def _look(self) -> None:
        self._advance(self.event_log.last_position())

    # Waiting and fan-out.

    def wait(self, generation: int, timeout: float, stop: threading.Event | None = None) -> int:
        """Returns the generation once it differs from `generation` (the store grew), or
        after `timeout` seconds, or soon after `stop` is set."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._generation == generation and not (stop and stop.is_set()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(min(remaining, STOP_CHECK))
            return self._generation

    def on_advance(self, hook: Callable[[], None]) -> None:
        """Calls `hook()` (in the thread that learnt of it) each time the head moves; it
        must be as cheap as `written` is meant to be."""
        with self._condition:
            self._advance_hooks = (*self._advance_hooks, hook)

    def on_progress(self, hook: Callable[[str, int], None]) -> None:
        """Calls `hook(name, position)` each time a follower of this process moved."""
        with self._condition:
            self._progress_hooks = (*self._progress_hooks, hook)

    def progressed(self, name: str, position: int) -> None:
        for hook in self._progress_hooks:
            hook(name, position)

    def interrupt(self) -> None:
        """Wakes every waiting thread (to look at its stop event)."""
        with self._condition:
            self._condition.notify_all()

    # Running.

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Starts listening (idempotent)."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._stop.clear()
            target = self._listen if self.conninfo else self._poll
            self._thread = threading.Thread(target=target, name="store-listener", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=5)
        self.interrupt()

    def _poll(self) -> None:
        failing = False
        while True:
            try:
                self._look()
                failing = False
            except Exception as error:  # the store is down: say so once, keep looking
                if not failing:
                    log.warning("cannot look at the event store's head (%s); retrying", error)
                failing = True
            if self._stop.wait(self.poll_interval):
                return

    def _listen(self) -> None:
        assert self.conninfo is not None
        assert self.event_log.channel is not None
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.event_log.channel))
        failing = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=5,
                    application_name=f"product-status listener pid {os.getpid()}"[:63],
                ) as connection:
                    connection.execute(listen)
                    self._look()  # whatever was written before LISTEN took effect
                    if failing:
                        log.info("store notifications are back")
                    failing = False
                    while not self._stop.is_set():
                        if any(True for _ in connection.notifies(timeout=0.5, stop_after=1)):
                            for _ in connection.notifies(timeout=0.0):
                                pass  # the rest of a burst: one look serves them all
                            self._look()
            except Exception as error:  # followers still look every few seconds meanwhile
                if not failing:
                    log.warning("store notifications unavailable (%s); retrying", error)
                failing = True
                self._stop.wait(self.reconnect * random.uniform(0.5, 1.5))
