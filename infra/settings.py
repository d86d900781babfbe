"""All settings, read from the environment by one class that refuses bad values.

The parsing of the longer ones lives beside it: `infra.mail_settings` (SMTP_URL, mail
addresses), `infra.token_settings` (API_TOKENS), `infra.response_settings`
(RESPONSE_TARGETS) and `infra.serving_limits` (what the open-files limit allows)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.response import ResponsePolicy
from domain.values import Severity
from infra.mail_settings import check_from_address, smtp_server
from infra.response_settings import parse_response_targets
from infra.serving_limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_EVENT_STREAMS,
    reserved_files,
)
from infra.token_settings import ConfiguredToken, parse_api_tokens

_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class SettingsError(Exception):
    """A setting with a bad value; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: str | None = None
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(default=8003, ge=1, le=65535)
    api_tokens: Annotated[tuple[ConfiguredToken, ...], NoDecode] = Field(default=(), repr=False)
    public_base_url: str | None = None
    incident_rss_enabled: bool = True
    incident_max_updates: int = Field(default=100, ge=1, le=100_000)
    # An active incident unchanged this long is resolved by the service (0: never);
    # decimals allowed (0.001 is 3.6 s).
    incident_auto_resolve_hours: float = Field(default=72.0, ge=0, le=24 * 366 * 10,
                                               allow_inf_nan=False)
    # Response targets by severity (`critical=5m,high=30m`; those left out keep the
    # product's), and how long an active incident may go without a public update.
    response_targets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    update_reminder_minutes: float = Field(default=30, gt=0, le=7 * 24 * 60,
                                           allow_inf_nan=False)
    cloudevent_broker_url: str | None = None
    cloudevent_topic: str = "incidents"
    # Copies JetStream keeps of the stream (a cluster of at least this many nodes).
    cloudevent_stream_replicas: int = Field(default=1, ge=1, le=5)
    # JetStream drops a republished event (same Nats-Msg-Id) within this window: it must
    # outlast the longest NATS outage or relay downtime to ride out without duplicates.
    cloudevent_duplicate_window_seconds: int = Field(default=86_400, ge=120, le=30 * 86_400)
    rss_ttl_minutes: int = Field(default=5, ge=1, le=10_080)
    # Serving limits: None derives the cap from the open-files limit (see the methods below).
    max_connections: int | None = Field(default=None, ge=2, le=1_000_000)
    max_event_streams: int | None = Field(default=None, ge=1, le=1_000_000)
    header_timeout_seconds: int = Field(default=10, ge=1, le=3600)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=3600)
    # Integrations: the retry schedule (decimals allowed), when a failing one is disabled,
    # whether destinations on non-public networks are allowed, and how mail is sent.
    delivery_retry_initial_seconds: float = Field(default=5.0, gt=0, le=86_400,
                                                  allow_inf_nan=False)
    delivery_retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400,
                                              allow_inf_nan=False)
    delivery_disable_after_hours: float = Field(default=72.0, gt=0, le=24 * 366,
                                                allow_inf_nan=False)
    integrations_allow_private_networks: bool = False
    # Addresses or networks integrations may reach although they are not public (an
    # internal chat server, say): "10.1.2.3,192.168.7.0/24".
    integrations_allowed_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # Incidents declared by Alertmanager's notifications are public (default: private, so
    # operators publish them when ready).
    alertmanager_public: bool = False
    smtp_url: str | None = Field(default=None, repr=False)
    email_from: str = "Product Status <status@localhost>"
    # Writes a token may make in any minute, counted across every process on the database.
    rate_limit_writes_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    log_format: Literal["text", "json"] = "text"
    # prometheus-client's own variable (it reads it too): worker processes behind one port
    # keep their metrics in files there, and /metrics sums them.
    prometheus_multiproc_dir: Path | None = None
    # Touched every 10 s by `project`, `publish` and `deliver` while the database answers.
    heartbeat_file: Path | None = None

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
        return parse_api_tokens(value) if isinstance(value, str) else value

    @field_validator("response_targets", mode="before")
    @classmethod
    def _response_targets(cls, value: object) -> object:
        return parse_response_targets(value) if isinstance(value, str) else value

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _multiproc_dir(cls, value: Path | None) -> Path | None:
        if value is None or not str(value):
            return None
        if not value.is_dir():
            raise ValueError(f"must be an existing directory, got {str(value)!r}")
        return value

    @field_validator("heartbeat_file")
    @classmethod
    def _heartbeat_file(cls, value: Path | None) -> Path | None:
        if value is None or not str(value):
            return None
        if not value.parent.is_dir():
            raise ValueError(f"its directory must exist, got {str(value)!r}")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"must be an absolute URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("cloudevent_broker_url")
    @classmethod
    def _broker_urls(cls, value: str | None) -> str | None:
        """One NATS URL, or the URLs of a cluster's nodes separated by commas."""
        if not value:
            return None
        urls = [url.strip().rstrip("/") for url in value.split(",")]
        for url in urls:
            parts = urlsplit(url)
            if not parts.scheme or not parts.netloc:
                raise ValueError(f"must be absolute URLs separated by commas, got {url!r}")
        return ",".join(urls)

    @field_validator("cloudevent_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _SUBJECT_TOKEN.match(value):
            raise ValueError("must be a NATS subject of letters, digits, '-', '_' and dots")
        return value

    @model_validator(mode="after")
    def _serving_limits(self) -> Settings:
        # Both timers start when a response ends; a longer keep-alive could never apply.
        if self.keep_alive_timeout_seconds > self.header_timeout_seconds:
            raise ValueError(
                f"KEEP_ALIVE_TIMEOUT_SECONDS ({self.keep_alive_timeout_seconds}) must not "
                f"exceed HEADER_TIMEOUT_SECONDS ({self.header_timeout_seconds})")
        if (self.max_event_streams is not None and self.max_connections is not None
                and self.max_event_streams >= self.max_connections):
            raise ValueError(
                f"MAX_EVENT_STREAMS ({self.max_event_streams}) must be below "
                f"MAX_CONNECTIONS ({self.max_connections}), or streams take every connection")
        return self

    @field_validator("integrations_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                networks.append(str(ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"not an address or network: {item!r}") from None
        return tuple(networks)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        smtp_server(value)  # raises ValueError naming what is wrong
        return value

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str) -> str:
        check_from_address(value)  # raises ValueError naming what is wrong
        return value

    @model_validator(mode="after")
    def _retry_schedule(self) -> Self:
        if self.delivery_retry_max_seconds < self.delivery_retry_initial_seconds:
            raise ValueError("DELIVERY_RETRY_MAX_SECONDS must not be less than "
                             "DELIVERY_RETRY_INITIAL_SECONDS")
        return self

    @property
    def response_policy(self) -> ResponsePolicy:
        return ResponsePolicy(
            targets={Severity(name): timedelta(seconds=seconds)
                     for name, seconds in self.response_targets.items()},
            reminder=timedelta(minutes=self.update_reminder_minutes))

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"

    def connection_limit(self, open_files: int) -> int:
        """MAX_CONNECTIONS, or by default what the open-files limit leaves after the
        files the process keeps for itself (`reserved_files`), at most 10,000."""
        if self.max_connections is not None:
            return self.max_connections
        return max(2, min(DEFAULT_MAX_CONNECTIONS, open_files - reserved_files(open_files)))

    def event_stream_limit(self, open_files: int) -> int:
        """MAX_EVENT_STREAMS, or by default half the connection limit, at most 500."""
        if self.max_event_streams is not None:
            return self.max_event_streams
        return max(1, min(DEFAULT_MAX_EVENT_STREAMS, self.connection_limit(open_files) // 2))

    def check_serving_limits(self, open_files: int) -> None:
        """Refuses connection and stream limits this process's open-files limit cannot
        honour (checked when `serve` starts)."""
        most = open_files - reserved_files(open_files)
        if self.max_connections is not None and self.max_connections > most:
            raise SettingsError(
                f"MAX_CONNECTIONS: {self.max_connections} is more than this process's "
                f"open-files limit ({open_files}, ulimit -n) allows: at most {most}")
        connections = self.connection_limit(open_files)
        if self.event_stream_limit(open_files) >= connections:
            raise SettingsError(
                f"MAX_EVENT_STREAMS: must be below the connection limit ({connections}, "
                f"from the open-files limit {open_files}), or streams take every connection")


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
            if item["loc"]:
                message = str(item["msg"]).removeprefix("Value error, ")
                problems.append(f"{str(item['loc'][0]).upper()}: {message}")
            else:  # a rule across settings: its message names them
                problems.append(str(item["msg"]).removeprefix("Value error, "))
        raise SettingsError("; ".join(problems)) from None
