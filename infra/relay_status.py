"""What the NATS relay is doing: the `relay` block of `/readyz` and
`product-status publish --status` (whose shapes clients rely on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commands.cloudevents import rfc3339
from infra.database import Database
from infra.event_log import EventLog
from infra.follower_lease import lease_holder
from infra.follower_positions import DELIVERIES, Positions
from infra.relay_config import DEFAULT_NAME


@dataclass(frozen=True)
class RelayStatus:
    """What a relay is doing. `state`: `active` (publishing), `standby` (another relay holds
    the lease), `starting`, `stopped`; from `read_status`: `running` (some relay holds the
    lease) or `not running`. `broker`: `connected`, `unreachable` (see `last_error`),
    `not connected` (standby or stopped) or `unknown` (read from the database)."""

    name: str
    state: str
    position: int
    head: int
    broker: str
    last_error: str | None = None
    last_publish_at: datetime | None = None
    published: int = 0  # messages acknowledged since this relay started
    duplicates: int = 0  # of those, repeats JetStream dropped by Nats-Msg-Id
    holder: str | None = None  # who holds the lease (read_status only)

    @property
    def lag(self) -> int:
        """Stored events not yet published (store positions; a gap left by a failed save
        counts as one)."""
        return max(0, self.head - self.position)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "broker": self.broker,
            "last_error": self.last_error,
            "last_publish_at": rfc3339(self.last_publish_at) if self.last_publish_at else None,
            "published": self.published,
            "duplicates": self.duplicates,
            "holder": self.holder,
        }

    def describe(self) -> str:
        parts = [
            f"{self.name} {self.state}",
            f"position {self.position}",
            f"head {self.head}",
            f"lag {self.lag}",
            f"broker {self.broker}" + (f" ({self.last_error})" if self.last_error else ""),
        ]
        if self.last_publish_at is not None:
            parts.append(f"last publish {rfc3339(self.last_publish_at)}")
        if self.published:
            parts.append(f"published {self.published} ({self.duplicates} duplicates dropped)")
        if self.holder is not None:
            parts.append(f"held by {self.holder}")
        return ", ".join(parts)


def create_table(database: Database, name: str = DEFAULT_NAME) -> None:
    """Creates the positions table and the relay's row if missing."""
    Positions(database, DELIVERIES).create([name])


def stored_position(database: Database, name: str = DEFAULT_NAME) -> int:
    return Positions(database, DELIVERIES).load(name)


def read_status(database: Database, event_log: EventLog, name: str = DEFAULT_NAME) -> RelayStatus:
    """The relay's position, the store's head and lag, and whether some relay (in any
    process) holds the lease, read from the database without running a relay."""
    create_table(database, name)
    holder = lease_holder(database, name)
    return RelayStatus(
        name=name,
        state="running" if holder else "not running",
        position=stored_position(database, name),
        head=event_log.last_position(),
        broker="unknown",
        holder=holder,
    )
