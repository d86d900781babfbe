"""`product-status serve --workers N`: N processes answering on one port, stopped together."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import READER, TOKENS, WRITER
from tests.processes import ServeProcess, run_cli

DEADLINE = 60.0


def serve_workers(database_url: str, tmp_path: Path, count: int,
                  **env: str) -> ServeProcess:
    """`serve --workers count` on `database_url`, answering once started, logging to
    `tmp_path`/serve.log: the tests' tokens and no write limit to speak of, unless `env`
    says otherwise."""
    settings = {"DATABASE_URL": database_url, "RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
                "API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items())}
    return ServeProcess(settings | env, tmp_path / "serve.log", "--workers", str(count))


def workers_of(parent: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


def listening_on(port: int, state: str = "0A") -> set[str]:
    """The inodes of the sockets on local `port` in `state` (0A: listening, 01: a
    connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    return inodes


def sockets_of(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def workers_of_gone(workers: set[int]) -> list[int]:
    """The workers still running once their parent is gone (a failed test's leftovers)."""
    return [pid for pid in workers if alive(pid)]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def listening_workers(server: ServeProcess, count: int) -> set[int]:
    """The workers of `server`, once `count` of them each listen on its port."""
    deadline = time.monotonic() + DEADLINE
    while True:
        workers = workers_of(server.process.pid)
        listeners = listening_on(server.port)
        holders = {pid for pid in workers if sockets_of(pid) & listeners}
        if len(workers) == count and len(listeners) == count and holders == workers:
            return workers
        assert time.monotonic() < deadline, (workers, listeners, server.output())
        time.sleep(0.1)


def answered_by_each(server: ServeProcess, workers: set[int], path: str) -> int:
    """GETs `path` on 24 new connections kept open, and checks that each worker holds one
    of them (the kernel spreads new connections at random: 2 workers miss one of 24 with
    a chance of 2^-23); returns the number of GETs (each answered 200)."""
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(24)]
    try:
        for client in clients:
            answer = client.get(path)
            assert answer.status_code == 200, answer.text
        connections = listening_on(server.port, "01")
        assert all(sockets_of(pid) & connections for pid in workers), server.output()
    finally:
        for client in clients:
            client.close()
    return len(clients)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_two_workers_listen_on_one_port_answer_and_stop_together(
        database_url: str, tmp_path: Path, signum: int) -> None:
    server = serve_workers(database_url, tmp_path, 2)
    workers: set[int] = set()
    try:
        # Two processes, each with its own socket listening on the one port.
        workers = listening_workers(server, 2)
        assert not sockets_of(server.process.pid) & listening_on(server.port)  # it only waits
        # New connections are spread over both: each worker holds some of 24 kept open.
        assert answered_by_each(server, workers, "/healthz") == 24
        # Whichever worker a new connection meets, a writer reads its write.
        created = httpx.post(f"{server.url}/api/v1/incidents", headers=WRITER, timeout=30,
                             json={"title": "Written through a worker"})
        assert created.status_code == 201, created.text
        position = created.headers["store-position"]
        for _ in range(20):
            read = httpx.get(f"{server.url}/api/v1/incidents", timeout=30,
                             headers={"Min-Position": position})
            assert read.status_code == 200, read.text
            assert created.json()["id"] in read.text
        server.stop(signum, timeout=DEADLINE)
        assert server.process.returncode == 0, server.output()
        deadline = time.monotonic() + DEADLINE
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived serve"
            time.sleep(0.1)
    finally:
        server.stop(signal.SIGKILL)
        for pid in workers_of_gone(workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("count", ["0", "-1", "65", "two", "1.5"])
def test_serve_refuses_a_bad_number_of_workers(count: str) -> None:
    result = run_cli("serve", "--workers", count)
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "from 1 to 64" in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("reader", [WRITER, READER], ids=["writer", "reader"])
def test_a_token_reads_writes_made_through_any_worker_without_naming_a_position(
        postgres_url: str, tmp_path: Path, reader: dict[str, str]) -> None:
    """A script with a token and no cookie jar, each request on a new connection (so on
    any of the workers): every read shows the write answered just before it, the list
    too (kept for token holders by each worker)."""
    server = serve_workers(postgres_url, tmp_path, 4)
    workers: set[int] = set()
    try:
        workers = listening_workers(server, 4)
        for number in range(50):
            title = f"Written through a worker, {number}"
            created = httpx.post(f"{server.url}/api/v1/incidents", headers=WRITER, timeout=30,
                                 json={"title": title, "severity": "high"})
            assert created.status_code == 201, created.text
            read = httpx.get(f"{server.url}/api/v1/incidents/{created.json()['id']}",
                             headers=reader, timeout=30)
            assert read.status_code == 200, (number, read.text)
            assert (read.json()["title"], read.json()["severity"]) == (title, "high")
            listed = httpx.get(f"{server.url}/api/v1/incidents?limit=5", headers=reader,
                               timeout=30)
            assert listed.status_code == 200, (number, listed.text)
            assert listed.json()["items"][0]["id"] == created.json()["id"], number
        server.stop(signal.SIGTERM, timeout=DEADLINE)
    finally:
        server.stop(signal.SIGKILL)
        for pid in workers_of_gone(workers):
            os.kill(pid, signal.SIGKILL)


def request_count(body: str) -> float:
    """The anonymous `GET /api/v1/incidents` answered 200, as a scrape counts them."""
    return sum(sample.value for family in text_string_to_metric_families(body)
               for sample in family.samples
               if sample.name == "product_status_http_requests_total"
               and sample.labels == {"route": "/api/v1/incidents", "method": "GET",
                                     "status": "200", "caller": "anonymous"})


def metric_files(workers: set[int]) -> set[Path]:
    """The directories of the metric files the workers hold open."""
    found = set()
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink()
                if target.suffix == ".db" and target.name.startswith("counter_"):
                    found.add(target.parent)
    return found


@pytest.mark.parametrize("given", [False, True], ids=["private", "given"])
def test_metrics_of_workers_count_every_worker(sqlite_url: str, tmp_path: Path,
                                               given: bool) -> None:
    """`/metrics` sums the requests of all workers, whichever answers the scrape: in a
    directory of its own that `serve` removes at exit, or in PROMETHEUS_MULTIPROC_DIR."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    server = serve_workers(sqlite_url, tmp_path, 2, API_TOKENS="reader:r",
                           PROMETHEUS_MULTIPROC_DIR=str(shared) if given else "")
    workers: set[int] = set()
    try:
        workers = listening_workers(server, 2)
        made = answered_by_each(server, workers, "/api/v1/incidents")
        directories = metric_files(workers)
        assert len(directories) == 1, directories
        directory = directories.pop()
        assert (directory == shared) is given, directory
        for _ in range(6):  # new connections: either worker answers
            scrape = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer r"},
                               timeout=30)
            assert scrape.status_code == 200
            assert request_count(scrape.text) == made, scrape.text
        server.stop(signal.SIGTERM, timeout=DEADLINE)
        assert server.process.returncode == 0, server.output()
        assert directory.is_dir() is given  # an operator's directory is theirs
    finally:
        server.stop(signal.SIGKILL)
        for pid in workers_of_gone(workers):
            os.kill(pid, signal.SIGKILL)
