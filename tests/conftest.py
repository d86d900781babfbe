"""Shared fixtures: real stores (SQLite file, PostgreSQL database) and a real HTTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from infra.bootstrap import Services, bootstrap, now
from infra.settings import Settings, load_settings
from tests.receivers import SmtpReceiver
from tests.servers import create_database, drop_database, postgres_server

TOKENS = {"admin": "admin-token", "writer": "writer-token", "reader": "reader-token"}
WRITER = {"Authorization": f"Bearer {TOKENS['writer']}"}
READER = {"Authorization": f"Bearer {TOKENS['reader']}"}


def make_settings(database_url: str, **overrides: str) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items()),
        # Tests write far faster than the default 600 a minute; the limit has tests of its own.
        "RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
        **overrides,
    }
    return load_settings(env)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url)
    yield url
    drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test body runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A mail server on loopback that keeps what it receives."""
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


def running(settings: Settings, *, delivery: bool = False,
            clock: Callable[[], datetime] = now) -> Iterator[Services]:
    """Services with the projectors running in the background (and the deliveries to
    subscribers and integrations, with `delivery`), closed after."""
    built = bootstrap(settings, clock=clock)
    built.start_projections()
    if delivery:
        built.start_delivery()
    yield built
    built.close()


def delivering(settings: Settings) -> Iterator[Services]:
    yield from running(settings, delivery=True)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    yield from running(settings)


class LiveServer:
    """The API served by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        # IPPROTO_TCP so asyncio sets TCP_NODELAY (else each keep-alive answer waits ~40 ms).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(services), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        services.store_watch.close_when(lambda: self.server.should_exit)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serving(services: Services) -> Iterator[httpx.Client]:
    """A real HTTP client of the API served from `services` by a live server, stopped
    after (the services stay open)."""
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def live_server(services: Services) -> Iterator[LiveServer]:
    server = LiveServer(services)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def follower_server(settings: Settings) -> Iterator[LiveServer]:
    """A second API process's worth of parts on the same store, running no projectors:
    it learns of the read models only by looking at their positions."""
    services: Services = bootstrap(settings)
    server = LiveServer(services)
    server.start()
    yield server
    server.stop()
    services.close()


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A real HTTP client of the live server."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client
