"""Delivering to one integration: the handler of its follower of the event store.

Events come in store order, a batch at a time. Each one the integration's filters let
through becomes one message (or none: PagerDuty sends nothing for most events), sent
and recorded as an attempt. A failed attempt stops the batch: what was delivered before
it is saved as done, the next attempt is scheduled (exponential back-off with jitter,
DELIVERY_RETRY_INITIAL_SECONDS doubling up to DELIVERY_RETRY_MAX_SECONDS), and the
same event is tried again then, so order is kept and nothing is sent twice. An
integration failing for DELIVERY_DISABLE_AFTER_HOURS is disabled.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from commands.cloudevents import rfc3339
from infra.event_log import StoredCloudEvent
from infra.follower import Delivering, Unavailable
from infra.integrations.config import DeliveryState, Integration
from infra.integrations.kinds import DeliveryContext, message_for, sender_for
from infra.integrations.occurrences import IncidentStates
from infra.integrations.senders import HoldsSender, Sender
from infra.integrations.store import POSITIONS, Attempt
from infra.metrics import delivery_failed
from infra.settings import Settings

log = logging.getLogger("product_status.integrations")
# Attempts of a long batch are recorded at least this often, so lists show progress.
RECORD_EVERY = 0.5
# A worker waiting for its next attempt makes sure of its lease this often.
WAIT_SLICE = 5.0


class DeliveryFailed(Unavailable):
    """The destination did not accept a message; tried again when it is due."""


@dataclass(frozen=True)
class RetrySchedule:
    initial: float
    maximum: float
    disable_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrySchedule:
        return cls(settings.delivery_retry_initial_seconds,
                   settings.delivery_retry_max_seconds,
                   timedelta(hours=settings.delivery_disable_after_hours))

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row: the nominal delay doubles
        from `initial` up to `maximum`; each wait is drawn between 75% and all of it, so
        integrations that failed together do not retry together."""
        nominal: float = min(self.initial * 2.0 ** min(failures - 1, 60), self.maximum)
        return nominal * random.uniform(0.75, 1.0)


def _ignore() -> None:
    return None


@contextlib.contextmanager
def _no_turn() -> Iterator[None]:
    yield


class IntegrationDelivery(HoldsSender, Delivering):
    """The handler of one integration's follower ("done": the destination accepted)."""

    batch_size = 250
    positions = POSITIONS

    def __init__(self, integration: Integration, context: DeliveryContext,
                 stop: threading.Event, schedule: RetrySchedule | None = None) -> None:
        self.integration = integration
        self.name = integration.follower_name
        self.context = context
        self.stop = stop
        self.schedule = schedule or RetrySchedule.from_settings(context.settings)
        self.states = IncidentStates(context.event_log, context.mapper)
        self.state = integration.state
        self.saved = 0  # the position saved as done
        self.sender: Sender | None = None
        # Set by the follower that runs it: how to save progress (lease-checked) and
        # how to make sure the lease is still held while waiting.
        self.save_progress: Callable[[int, int], None] = self._save_directly
        self.check_lease: Callable[[], None] = _ignore
        self.write_turn: Callable[[], AbstractContextManager[None]] = _no_turn

    # The follower's calls.

    def open(self) -> None:
        """Becoming active (or trying again): waits until the next attempt is due."""
        self.saved = self.context.store.position(self.integration.id)
        self._wait_until_due()
        self.sender = sender_for(self.integration, self.context)

    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        """Sends what the integration takes of these events, in order; raises
        DeliveryFailed at the first message not accepted (what came before is done)."""
        assert self.sender is not None, "open() first"
        done, pending = self.saved, list[Attempt]()
        recorded = time.monotonic()
        for stored in events:
            if stored.position <= self.saved:
                continue  # delivered by an earlier try of this batch
            message = message_for(self.integration, stored, self.states, self.context)
            if message is not None:
                attempt = self.sender.send(message, self.state.failures + 1)
                pending.append(attempt)
                if not attempt.delivered:
                    delivery_failed(self.integration.id)
                    self._failed(pending, done, attempt)
                self._delivered(attempt)
            done = stored.position
            if pending and time.monotonic() - recorded > RECORD_EVERY:
                self._record(pending, done)
                pending, recorded = [], time.monotonic()
        self._record(pending, done)

    def move_position(self, start: int, end: int) -> None:
        """Saves `end` as done, from what is saved (`start` is where the follower read
        the batch from; a failed try of the batch may have moved on from there)."""
        if end > self.saved:
            self.save_progress(self.saved, end)
            self.saved = end

    # Delivery state.

    def _delivered(self, attempt: Attempt) -> None:
        if self.state.failing_since is not None:
            log.info("%s: delivering again after %d failed attempts", self.name,
                     self.state.failures)
        self.state = DeliveryState(last_delivered_at=attempt.at)

    def _record(self, attempts: list[Attempt], done: int) -> None:
        if attempts:
            with self.write_turn():
                self.context.store.record(self.integration.id, attempts, self.state)
        self.move_position(self.saved, done)

    def _failed(self, attempts: list[Attempt], done: int, attempt: Attempt) -> None:
        now = datetime.now(UTC)  # the attempt ended now (its `at` is when it started)
        since = self.state.failing_since or attempt.at
        failures = self.state.failures + 1
        disable = now - since >= self.schedule.disable_after
        if disable:
            reason = f"failing since {rfc3339(since)}: {attempt.error}"
            self.state = replace(self.state, failing_since=since, failures=failures,
                                 next_attempt_at=None, disabled_reason=reason)
        else:
            due = now + timedelta(seconds=self.schedule.delay(failures))
            self.state = replace(self.state, failing_since=since, failures=failures,
                                 next_attempt_at=due)
        with self.write_turn():
            self.context.store.record(self.integration.id, attempts, self.state,
                                      disable=disable)
        self.move_position(self.saved, done)
        if disable:
            log.warning("%s: disabled after failing since %s", self.name, rfc3339(since))
            self.stop.set()
            raise DeliveryFailed(f"disabled: {attempt.error}")
        log.warning("%s: %s (attempt %d); next attempt at %s", self.name, attempt.error,
                    failures, rfc3339(self.state.next_attempt_at or now))
        raise DeliveryFailed(attempt.error or "not accepted")

    def _wait_until_due(self) -> None:
        due = self.state.next_attempt_at
        while due is not None:
            left = (due - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return
            if self.stop.wait(min(left, WAIT_SLICE)):
                raise DeliveryFailed("stopping")
            self.check_lease()

    def _save_directly(self, start: int, end: int) -> None:
        """Saving without a follower's lease (a handler driven by hand): compare-and-set."""
        with self.write_turn(), self.context.store.database.transaction(write=True) as cursor:
            moved = cursor.execute(
                f"UPDATE {POSITIONS} SET position = ? WHERE name = ? AND position = ? "
                "RETURNING position", (end, self.name, start)).fetchone()
        if moved is None:
            raise DeliveryFailed(f"position {start} was moved by another worker")
