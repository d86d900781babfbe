"""Commands and reads over HTTP while PostgreSQL drops the service's connections.

Every connection of the test's database is terminated (`pg_terminate_backend`) while
writers post. A command answered 201 must be stored exactly once, a 503 (with
`Retry-After`) may or may not have landed but never twice, and nothing answers 500.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from infra.bootstrap import Services, persistence_env
from infra.settings import Settings
from tests.conftest import WRITER, LiveServer, make_settings

pytestmark = pytest.mark.postgres

WRITERS = 6
DURATION_SECONDS = 20.0
TERMINATE_EVERY_SECONDS = 1.5
UPDATES_PER_INCIDENT = 40
# Answers a dropped connection may give: success, or "unavailable, retry".
ALLOWED = {200, 201, 503}


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    return make_settings(postgres_url)


def terminate_backends(database_url: str, *, wait: bool = False) -> int:
    """Ends every other session of the database (the service's pools, its listener);
    with `wait`, returns once they are gone (ending one is asynchronous)."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        pids = [pid for pid, ended in connection.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        ).fetchall() if ended]
        while wait and connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            time.sleep(0.01)
    return len(pids)


@dataclass
class Outcomes:
    """What each command was answered, by what it wrote (title or update message)."""

    creates: dict[str, int] = field(default_factory=dict)
    updates: dict[tuple[str, str], int] = field(default_factory=dict)
    reads: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, response: httpx.Response) -> None:
        """Records an answer that is neither success nor a proper 503."""
        problem = None
        if response.status_code not in ALLOWED:
            problem = "unexpected status"
        elif response.status_code == 503 and (
            "Retry-After" not in response.headers
            or response.headers["content-type"] != "application/problem+json"
        ):
            problem = "503 without Retry-After or problem+json"
        if problem:
            with self.lock:
                self.bad.append(f"{problem}: {response.request.method} {response.request.url}"
                                f" -> {response.status_code} {response.text[:300]}")


def write_until(server: LiveServer, deadline: float, writer: int, outcomes: Outcomes) -> None:
    counter = itertools.count()
    with httpx.Client(base_url=server.url, headers=WRITER, timeout=60) as client:
        incident_id = None
        while time.monotonic() < deadline:
            n = next(counter)
            try:
                if incident_id is None or n % UPDATES_PER_INCIDENT == 0:
                    incident_id = create(client, f"writer {writer} incident {n}", outcomes)
                    continue
                add_update(client, incident_id, f"writer {writer} update {n}", outcomes)
                if n % 10 == 0:
                    read = client.get("/api/v1/incidents", params={"limit": 5})
                    outcomes.check(read)
                    with outcomes.lock:
                        outcomes.reads[read.status_code] += 1
            except httpx.TransportError as error:  # the server dropped the connection
                with outcomes.lock:
                    outcomes.bad.append(f"no answer: {error!r}")


def create(client: httpx.Client, title: str, outcomes: Outcomes) -> str | None:
    response = client.post("/api/v1/incidents", json={"title": title})
    outcomes.check(response)
    with outcomes.lock:
        outcomes.creates[title] = response.status_code
    return str(response.json()["id"]) if response.status_code == 201 else None


def add_update(client: httpx.Client, incident_id: str, message: str, outcomes: Outcomes) -> None:
    with outcomes.lock:
        outcomes.updates[(incident_id, message)] = 0  # sent, not answered
    response = client.post(f"/api/v1/incidents/{incident_id}/updates",
                           json={"message": message})
    outcomes.check(response)
    with outcomes.lock:
        outcomes.updates[(incident_id, message)] = response.status_code


def stored(services: Services, database_url: str) -> Iterator[tuple[str, dict[str, object]]]:
    """(type, document) of every stored event, read straight from the event store."""
    table = services.commands.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        for topic, state in connection.execute(f"SELECT topic, state FROM {table}"):
            yield topic, json.loads(bytes(state))


def test_writes_under_dropped_connections_are_exactly_once_and_never_500(
    services: Services, live_server: LiveServer, postgres_url: str
) -> None:
    outcomes = Outcomes()
    deadline = time.monotonic() + DURATION_SECONDS
    writers = [
        threading.Thread(target=write_until, args=(live_server, deadline, i, outcomes))
        for i in range(WRITERS)
    ]
    terminated: list[int] = []
    for thread in writers:
        thread.start()
    while time.monotonic() < deadline:
        time.sleep(TERMINATE_EVERY_SECONDS)
        terminated.append(terminate_backends(postgres_url))
    for thread in writers:
        thread.join()

    assert sum(terminated) > 0, "no connection was terminated: the test proved nothing"
    created: Counter[str] = Counter()
    added: Counter[tuple[str, str]] = Counter()
    for topic, document in stored(services, postgres_url):
        data = document["data"]
        assert isinstance(data, dict)
        if topic.endswith(".created"):
            created[data["title"]] += 1
        elif topic.endswith(".update_added"):
            added[(data["incident_id"], data["message"])] += 1
    # Answered 201: stored exactly once. Anything else: stored at most once.
    lost: list[object] = [title for title, status in outcomes.creates.items()
            if status == 201 and created[title] != 1]
    lost += [key for key, status in outcomes.updates.items()
             if status == 201 and added[key] != 1]
    twice = [key for key, count in [*created.items(), *added.items()] if count > 1]
    assert (outcomes.bad, lost, twice) == ([], [], []), (
        f"{len(outcomes.bad)} bad answers, e.g. {outcomes.bad[:5]}; "
        f"{len(lost)} answered 201 but not stored exactly once, e.g. {lost[:5]}; "
        f"{len(twice)} stored twice, e.g. {twice[:5]}"
    )
    answered = Counter(outcomes.updates.values())

    assert answered[201] > 100, answered


def test_reads_and_writes_after_the_server_ended_every_connection(
    live_server: LiveServer, postgres_url: str
) -> None:
    """Pooled connections the server ended are not handed out: no 500 after a restart."""
    with httpx.Client(base_url=live_server.url, headers=WRITER, timeout=60) as client:
        incident_id = client.post("/api/v1/incidents", json={"title": "Before"}).json()["id"]
        # Several reads at once, so the pool holds several connections.
        barrier = threading.Barrier(6)

        def read() -> None:
            barrier.wait()
            with httpx.Client(base_url=live_server.url, timeout=60) as reader:
                assert reader.get("/api/v1/incidents").status_code == 200

        readers = [threading.Thread(target=read) for _ in range(6)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
        assert terminate_backends(postgres_url, wait=True) > 0
        answers = [client.get("/api/v1/incidents").status_code for _ in range(6)]
        answers.append(client.get(f"/api/v1/incidents/{incident_id}").status_code)
        added = client.post(f"/api/v1/incidents/{incident_id}/updates", json={"message": "after"})
        assert answers == [200] * 7
        assert added.status_code == 201
        assert client.get(f"/api/v1/incidents/{incident_id}").json()["version"] == 2


def test_the_event_store_pool_keeps_the_configured_sizes(services: Services) -> None:
    """The event store's pool is rebuilt with a connection check: nothing else changes."""
    pool = services.commands.recorder.datastore.pool  # type: ignore[attr-defined]
    env = persistence_env(services.settings)
    configured = int(env["POSTGRES_POOL_SIZE"])
    assert (pool.min_size, pool.max_size, pool.timeout) == (
        configured, configured + int(env["POSTGRES_MAX_OVERFLOW"]), 5)
    assert (pool.min_size, pool.max_size) == (2, 30)  # a fleet fits max_connections
    assert pool.kwargs["dbname"] == urlsplit(services.settings.database_url or "").path[1:]
