"""All settings, read from the environment by one class that refuses bad values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class SettingsError(Exception):
    """A setting with a bad value; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: str | None = None
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(default=8003, ge=1, le=65535)
    api_tokens: Annotated[dict[str, Role], NoDecode] = Field(default_factory=dict, repr=False)
    public_base_url: str | None = None
    incident_rss_enabled: bool = True
    incident_max_updates: int = Field(default=100, ge=1, le=100_000)
    incident_auto_resolve_hours: int = Field(default=72, ge=0)
    cloudevent_broker_url: str | None = None
    cloudevent_topic: str = "incidents"
    # JetStream drops a republished event (same Nats-Msg-Id) within this window: it must
    # outlast the longest NATS outage or relay downtime to ride out without duplicates.
    cloudevent_duplicate_window_seconds: int = Field(default=86_400, ge=120, le=30 * 86_400)
    rss_ttl_minutes: int = Field(default=5, ge=1, le=10_080)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres", "sqlite"):
            raise ValueError("must be a postgresql:// (or sqlite:///path) URL")
        parts = urlsplit(value)
        if scheme != "sqlite" and not parts.path.strip("/"):
            raise ValueError("must name a database, e.g. postgresql://user@host:5432/dbname")
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _api_tokens(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tokens: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            role, sep, token = pair.partition(":")
            if not sep or not token:
                raise ValueError(f"expected role:token pairs separated by commas, got {pair!r}")
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
            tokens[token] = role
        return tokens

    @field_validator("public_base_url", "cloudevent_broker_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"must be an absolute URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("cloudevent_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _SUBJECT_TOKEN.match(value):
            raise ValueError("must be a NATS subject of letters, digits, '-', '_' and dots")
        return value

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Reads the settings; a bad value raises SettingsError naming the variable."""
    try:
        if environ is None:
            return Settings()
        values = {k.lower(): v for k, v in environ.items() if k.lower() in Settings.model_fields}
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]).upper() if item["loc"] else "settings"
            problems.append(f"{name}: {item['msg']}")
        raise SettingsError("; ".join(problems)) from None
