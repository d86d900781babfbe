"""Following the event store: one mechanism for every follower (the read models, the NATS
relay, and whatever reacts to events next). A new follower is a `Handler` and a
`Followers.add(handler)`, never a loop of its own.

What the mechanism gives each follower, by name:

* a tracked position (a row of a positions table, see follower_positions) that moves by
  compare-and-set only;
* one active worker across processes: a lease (see follower_lease); other workers stand
  by, try the lease every `standby_poll` seconds and carry on from the saved position;
* batches of stored events after its position, in store order, read through the event
  log (`read_ahead`: the next batch is read while this one is handled);
* wake-ups from the process's one StoreListener, plus a look every `idle` seconds in case
  a wake-up was lost (a notification connection that was down, say);
* back-off with jitter when the store or the handler's destination fails.

Handlers differ only in what "done" means:

* `Transactional`: the handler's writes commit in the transaction that moves the
  position. Exactly once: a batch that does not start at the recorded position is
  refused and rolled back.
* `Delivering`: the destination acknowledged (NATS, an HTTP 2xx, a mail server); then the
  position is saved through the lease. At least once: a worker that dies in between
  delivers the batch again, so deliveries carry the CloudEvent id for the receiver to
  drop repeats.

The worker that does all this is in follower_worker.py; followers.py registers them.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.event_log import StoredCloudEvent
from infra.follower_lease import LeaseLost
from infra.follower_positions import DELIVERIES, READ_MODELS
from projections.base import Cursor


class Unavailable(Exception):
    """The handler's destination failed or is out of reach; the batch is tried again after
    a back-off, and nothing is lost."""


class FollowerBusy(Exception):
    """Another worker holds the follower's lease."""


class Handler:
    """What one follower does with the events. `name` names its position and lease."""

    name: str
    positions: str
    batch_size: int = 500
    read_ahead: bool = False

    def open(self) -> None:
        """Called when this worker becomes active (to connect, say); raise Unavailable to
        be called again after a back-off."""

    def close(self) -> None:
        """Called when this worker stops being active, and after Unavailable."""

    def stopped(self) -> None:
        """Called when this worker stops following (the end of `run` or `run_once`)."""


class Transactional(Handler, ABC):
    """Done = written in the transaction that moves the position (exactly once)."""

    positions = READ_MODELS

    def prepare(self, events: Sequence[StoredCloudEvent]) -> Any:
        """Work that needs no transaction (decoding), done before it opens."""
        return events

    @abstractmethod
    def apply(self, cursor: Cursor, prepared: Any) -> None:
        """Writes the batch's results through `cursor`, in the position's transaction."""


class Delivering(Handler, ABC):
    """Done = acknowledged outside the database; then the position is saved (at least
    once). The next batch is read while one is delivered."""

    positions = DELIVERIES
    read_ahead = True

    @abstractmethod
    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        """Returns once every event is acknowledged; raises Unavailable otherwise."""


@dataclass(frozen=True)
class FollowerOptions:
    idle: float = 1.0  # a look at the store after this long without a wake-up
    standby_poll: float = 1.0  # how often a standby worker tries the lease
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    lease_check: float = 5.0  # how often an active worker makes sure it holds its lease
    log_interval: float | None = None  # a status line this often (None: none)


@dataclass(frozen=True)
class FollowerState:
    """`state`: `starting`, `active`, `standby` (another worker holds the lease) or
    `stopped`; `done`: events handled by this worker since it started."""

    name: str
    state: str
    position: int
    last_error: str | None
    done: int
    last_done_at: datetime | None


class Backoff:
    """Delays that double from `initial` up to `maximum`, each drawn between half and all
    of it, so workers that failed together do not retry together."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.initial


def describe(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, Unavailable | LeaseLost):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
