"""What the NATS relay publishes where: its settings, subjects and message ids."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from domain.incident import EVENT_TYPE_PREFIX
from infra.settings import Settings

CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_NAME = "nats_relay"


def stream_name(topic: str) -> str:
    """The JetStream stream of a topic: `incidents` -> `INCIDENTS`, `a.b` -> `A_B`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic).upper()


@dataclass(frozen=True)
class RelayConfig:
    broker_url: str  # one URL, or a cluster's separated by commas
    topic: str = "incidents"
    replicas: int = 1  # copies JetStream keeps of the stream
    stream: str = ""  # default: derived from the topic
    duplicate_window: float = 24 * 3600.0  # seconds; at least the longest outage to ride out
    name: str = DEFAULT_NAME  # the tracked position's row and the lease's name
    batch_size: int = 1000
    concurrency: int = 256  # messages in flight, unacknowledged
    connect_timeout: float = 2.0
    publish_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    idle_poll: float | None = None  # a look at the store without a wake-up (default 1 s)
    standby_poll: float = 1.0
    log_interval: float = 30.0

    def __post_init__(self) -> None:
        if not self.stream:
            object.__setattr__(self, "stream", stream_name(self.topic))
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        if self.duplicate_window < 1:
            raise ValueError("duplicate_window must be at least 1 second")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RelayConfig:
        """The relay of CLOUDEVENT_BROKER_URL, CLOUDEVENT_TOPIC and (when the settings have
        it) CLOUDEVENT_DUPLICATE_WINDOW_SECONDS; `overrides` replace any field."""
        if not settings.cloudevent_broker_url:
            raise ValueError("CLOUDEVENT_BROKER_URL is not set: there is no NATS to publish to")
        values: dict[str, Any] = {
            "broker_url": settings.cloudevent_broker_url,
            "topic": settings.cloudevent_topic,
            "replicas": settings.cloudevent_stream_replicas,
        }
        window = getattr(settings, "cloudevent_duplicate_window_seconds", None)
        if window is not None:
            values["duplicate_window"] = float(window)
        values.update(overrides)
        return cls(**values)


def subject_for(topic: str, event_type: str) -> str:
    """`incidents` + `com.example.incident.update_added` -> `incidents.update_added`."""
    return f"{topic}.{event_type.removeprefix(EVENT_TYPE_PREFIX)}"


# The mapper writes `{"specversion": "1.0", "id": "...", ...}`: read the id from there
# without parsing the whole document, and parse it when it is written otherwise.
_LEADING_ID = re.compile(rb'\{\s*"specversion"\s*:\s*"[^"\\]*"\s*,\s*"id"\s*:\s*"([^"\\]+)"')


def cloudevent_id(document: bytes) -> str:
    found = _LEADING_ID.match(document)
    if found is not None:
        return found.group(1).decode()
    return str(json.loads(document)["id"])
