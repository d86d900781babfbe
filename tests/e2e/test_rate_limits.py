"""The contract's limits: 429 problems with Retry-After, counted across processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.rate_limits import SIGN_UPS
from infra.bootstrap import bootstrap
from infra.database import Database, PostgresDatabase, SQLiteDatabase
from infra.rate_limits import Limit, RateLimits
from tests.conftest import READER, WRITER, LiveServer, make_settings
from tests.receivers import SmtpReceiver

ANOTHER_WRITER = {"Authorization": "Bearer second-writer"}
TOKENS = "writer:writer-token,second:writer:second-writer,reader:reader-token"


def _from(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """A request relayed by a proxy on loopback (trusted by default) for `address`."""
    return {"X-Forwarded-For": address, **(headers or {})}


@pytest.fixture
def servers(database_url: str) -> Iterator[list[LiveServer]]:
    """Two API instances on one database, each with its own services."""
    started = []
    for _ in range(2):
        services = bootstrap(make_settings(database_url, API_TOKENS=TOKENS,
                                           RATE_LIMIT_WRITES_PER_MINUTE="4"))
        services.start_projections()
        server = LiveServer(services)
        server.start()
        started.append(server)
    yield started
    for server in started:
        server.stop()
        server.services.close()


def _create(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/incidents", json={"title": "limited"}, headers=headers)


def test_writes_per_token_are_limited_across_processes(servers: list[LiveServer]) -> None:
    first, second = (s.url for s in servers)
    assert [_create(url, WRITER).status_code for url in (first, second, first, second)] == [
        201] * 4
    refused = _create(first, WRITER)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert _create(second, WRITER).status_code == 429  # counted in the shared database
    # Another token writes on; the limited one still reads.
    assert _create(second, ANOTHER_WRITER).status_code == 201
    assert httpx.get(f"{first}/api/v1/incidents", headers=WRITER).status_code == 200
    stored = servers[0].services.event_log.read(0, 100)
    assert len(stored) == 5  # the refused writes recorded nothing


def test_anonymous_reads_are_never_limited(servers: list[LiveServer]) -> None:
    url = servers[0].url
    for _ in range(60):
        assert httpx.get(f"{url}/api/v1/incidents", headers=_from("10.0.0.9")).status_code == 200


def test_failed_authentications_are_limited_per_client_address(
    servers: list[LiveServer],
) -> None:
    first, second = (s.url for s in servers)
    bad = _from("192.0.2.7", {"Authorization": "Bearer guess"})
    answers = [httpx.get(f"{(first, second)[i % 2]}/api/v1/events", headers=bad).status_code
               for i in range(20)]
    assert answers == [401] * 20
    refused = httpx.get(f"{first}/api/v1/events", headers=bad)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Once refused, the address is refused whatever token it tries, not anonymously.
    assert httpx.get(f"{first}/api/v1/events", headers=_from("192.0.2.7", READER)
                     ).status_code == 429
    assert httpx.get(f"{first}/api/v1/incidents", headers=_from("192.0.2.7")).status_code == 200
    # Another address is not affected.
    assert httpx.get(f"{first}/api/v1/events", headers=_from("192.0.2.8", READER)
                     ).status_code == 200
    malformed = _from("192.0.2.9", {"Authorization": "Basic eDp5"})
    assert [httpx.get(f"{second}/api/v1/events", headers=malformed).status_code
            for _ in range(21)] == [401] * 20 + [429]


def test_sign_ups_are_limited_per_client_address(database_url: str) -> None:
    """The API's and the status page form's sign-ups count together, per client address."""
    smtp = SmtpReceiver().start()
    services = bootstrap(make_settings(database_url, SMTP_URL=smtp.url))
    server = LiveServer(services)
    server.start()
    try:
        url = f"{server.url}/api/v1/subscribers"
        answers = [httpx.post(url, json={"email": f"s{n}@example.org"},
                              headers=_from("198.51.100.1"))
                   for n in range(SIGN_UPS.count)]
        answers.append(httpx.post(f"{server.url}/subscribe", data={"email": "f@example.org"},
                                  headers=_from("198.51.100.1")))
        assert [a.status_code for a in answers] == [202] * SIGN_UPS.count + [429]
        assert 3500 <= int(answers[-1].headers["Retry-After"]) <= 3600
        assert httpx.post(url, json={"email": "t@example.org"},
                          headers=_from("198.51.100.2")).status_code == 202
        smtp.wait_for(SIGN_UPS.count + 1)
    finally:
        server.stop()
        services.close()
        smtp.stop()


def test_the_api_description_lists_429_where_it_can_be_answered(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path, method in (("/api/v1/incidents", "post"), ("/api/v1/incidents", "get"),
                         ("/api/v1/incidents/{incident_id}/updates", "post"),
                         ("/api/v1/events", "get"), ("/api/v1/subscribers", "post")):
        answer = paths[path][method]["responses"]["429"]
        assert "application/problem+json" in answer["content"], (path, method)
        assert "Retry-After" in answer["headers"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _database(url: str, tmp_path: Path) -> Database:
    if url.startswith("sqlite"):
        return SQLiteDatabase(tmp_path / "store.db")
    return PostgresDatabase(url)


def test_a_limit_counts_a_sliding_window(database_url: str, tmp_path: Path) -> None:
    database = _database(database_url, tmp_path)
    clock = Clock()
    counts = tmp_path / "limits.db" if database.dialect == "sqlite" else None
    limits = RateLimits(database, counts, clock=clock)
    limits.create_table()
    three = Limit("test", 3, 60)
    try:
        assert [limits.take(three, "k") for _ in range(3)] == [None] * 3
        clock.now += 20
        assert limits.take(three, "k") == 40  # the first three leave the window at +60
        assert limits.take(three, "other") is None
        fresh = RateLimits(database, counts, clock=clock)  # another process: asks the database
        assert fresh.take(three, "k") == 40
        clock.now += 40
        assert fresh.take(three, "k") is None
    finally:
        limits.close()
        database.close()
