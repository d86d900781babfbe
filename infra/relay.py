"""Publishes every stored CloudEvent to NATS JetStream, in store order: the event store is
the outbox.

The relay is a follower of the store (infra/follower.py) whose handler is the NATS
publisher (relay_publisher.py): its position is a row of `relay_positions`, moved only
after JetStream acknowledged every message of a batch. A relay that dies between
publishing and saving publishes the batch again, and JetStream drops the repeats by
`Nats-Msg-Id`: the stream's duplicate window must outlast the outages the relay should
ride out (24 h by default).

At most one relay per store is active, holding the follower's lease; others stand by,
try again every `standby_poll` seconds and take over from the saved position. A slow or
absent NATS never blocks or fails a command: the relay runs in its own thread and
retries with capped, jittered back-off while commands go on being stored.

Its settings are in relay_config.py, its status (`/readyz`, `publish --status`) in
relay_status.py.
"""

from __future__ import annotations

import logging
import threading

from infra.database import Database
from infra.event_log import EventLog
from infra.follower import FollowerBusy, FollowerOptions
from infra.follower_positions import DELIVERIES
from infra.follower_worker import Follower
from infra.followers import Followers
from infra.relay_config import (
    CONTENT_TYPE,
    DEFAULT_NAME,
    RelayConfig,
    cloudevent_id,
    stream_name,
    subject_for,
)
from infra.relay_publisher import BrokerUnavailable, NatsPublisher
from infra.relay_status import RelayStatus, create_table, read_status, stored_position

__all__ = [
    "CONTENT_TYPE", "DEFAULT_NAME", "POSITIONS", "BrokerUnavailable", "Relay", "RelayBusy",
    "RelayConfig", "RelayStatus", "cloudevent_id", "create_table", "read_status",
    "stored_position", "stream_name", "subject_for",
]

log = logging.getLogger("product_status.relay")

POSITIONS = DELIVERIES
# How often an active relay makes sure its lease (database session) is still there.
LEASE_CHECK_SECONDS = 5.0


class RelayBusy(FollowerBusy):
    """Another relay of this store is active."""


class Relay(Follower):
    """The NATS relay's worker in this process; see the module's docstring."""

    def __init__(self, database: Database, event_log: EventLog, config: RelayConfig,
                 followers: Followers | None = None) -> None:
        """`followers`: the process's followers, whose wake-ups it shares (without them
        it gets its own, as a relay alone in its process would)."""
        self.config = config
        self.event_log = event_log
        self.publisher = NatsPublisher(config)
        self._own_group = followers is None
        super().__init__(
            self.publisher, followers or Followers(database, event_log),
            FollowerOptions(
                idle=config.idle_poll or 1.0, standby_poll=config.standby_poll,
                backoff_initial=config.backoff_initial, backoff_max=config.backoff_max,
                lease_check=LEASE_CHECK_SECONDS, log_interval=config.log_interval,
            ),
        )
        create_table(database, config.name)

    def run(self, stop: threading.Event) -> None:
        try:
            super().run(stop)
        finally:
            if self._own_group:
                self.group.close()

    def run_once(self) -> int:
        """Publishes everything stored after the relay's position and returns how many
        events it published. Raises RelayBusy when another relay is active and
        BrokerUnavailable when NATS fails (nothing is lost: the next run carries on)."""
        try:
            return super().run_once()
        except FollowerBusy:
            raise RelayBusy(f"another relay of this store is active ({self.name})") from None

    def status(self) -> RelayStatus:
        """The relay's status now (for /readyz and the log); asks the store for its head."""
        head = self.event_log.last_position()
        now, publisher = self.state(), self.publisher
        active = now.state == "active"
        position = now.position if active else stored_position(self.group.database, self.name)
        return RelayStatus(
            name=self.name, state=now.state, position=position, head=head,
            broker=publisher.broker if active else "not connected",
            last_error=publisher.last_error, last_publish_at=publisher.last_publish_at,
            published=publisher.published, duplicates=publisher.duplicates,
        )

    def report(self) -> None:
        try:
            status = self.status()
        except Exception as error:
            log.info("%s: status unavailable (%s)", self.name, error)
        else:
            log.info("relay %s", status.describe())
