"""The composition root: the one place that turns settings into running parts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from commands.application import IncidentCommands
from infra.event_log import EventLog
from infra.settings import Settings


@dataclass
class Services:
    settings: Settings
    commands: IncidentCommands
    event_log: EventLog

    def close(self) -> None:
        self.commands.close()


def now() -> datetime:
    return datetime.now(UTC)


def new_incident_id() -> str:
    return "incident-" + uuid.uuid4().hex


def persistence_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's persistence settings for the configured database."""
    url = settings.database_url
    if url is None or url.startswith("sqlite:"):
        path = Path(urlsplit(url).path) if url else settings.data_dir / "product-status.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": "10",
        "POSTGRES_MAX_OVERFLOW": "20",
        "POSTGRES_CONNECT_TIMEOUT": "5",
    }


def bootstrap(settings: Settings) -> Services:
    """Builds every part from the settings; creates the tables if missing."""
    commands = IncidentCommands(
        persistence_env(settings),
        clock=now,
        new_incident_id=new_incident_id,
        max_updates=settings.incident_max_updates,
    )
    return Services(settings=settings, commands=commands, event_log=EventLog(commands.recorder))
