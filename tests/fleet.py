"""The production topology as processes on one machine: two API processes
(`serve --no-projectors --no-relay --no-deliver`), two `project`, two `publish` and two
`deliver` on one
PostgreSQL and a three-node NATS JetStream cluster (stream replicas 3).

`make fleet` runs `python -m tests.fleet`: it starts everything, prints where, and stops
it all on Ctrl-C. tests/e2e/test_fleet.py drives the same fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors

from infra.database import PostgresDatabase
from infra.follower_lease import lease_holder
from tests.processes import CliProcess, ServeProcess
from tests.servers import (
    LOOPBACK,
    _nats_handshake,
    create_database,
    drop_database,
    find_nats_server,
    free_port,
    postgres_server,
)

TOKENS = "admin:fleet-admin,writer:fleet-writer,reader:fleet-reader"
WRITER = {"Authorization": "Bearer fleet-writer"}
READER = {"Authorization": "Bearer fleet-reader"}


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"


class NatsCluster:
    """Three JetStream nodes on loopback, routed to each other."""

    def __init__(self, base: Path, size: int = 3) -> None:
        self.binary = find_nats_server()
        self.nodes = [NatsNode(f"node-{n}", free_port(), free_port(), base / f"nats-{n}",
                               base / f"nats-{n}.log") for n in range(1, size + 1)]

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        asyncio.run(self._wait_for_jetstream())

    def start_node(self, node: NatsNode) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats://{LOOPBACK}:{other.cluster_port}" for other in self.nodes
                          if other is not node)
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(
                [str(self.binary), "-a", LOOPBACK, "-p", str(node.port), "-js",
                 "-sd", str(node.store), "-n", node.name, "--cluster_name", "product-status",
                 "--cluster", f"nats://{LOOPBACK}:{node.cluster_port}", "--routes", routes],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                _nats_handshake(LOOPBACK, node.port, timeout=2)
                return
            except OSError:
                assert node.process.poll() is None, node.log.read_text()
                assert time.monotonic() < deadline, f"{node.name} did not start"
                time.sleep(0.1)

    async def _wait_for_jetstream(self) -> None:
        """Until the cluster elected a JetStream leader (it answers account info)."""
        client = await nats.connect(self.nodes[0].url)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    await client.jetstream().account_info()
                    return
                except Exception:
                    assert time.monotonic() < deadline, "JetStream has no leader"
                    await asyncio.sleep(0.2)
        finally:
            await client.close()

    def kill(self, node: NatsNode) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=30)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.process.kill()


@dataclass
class Fleet:
    base: Path
    database_url: str
    nats: NatsCluster
    env: dict[str, str]
    apis: list[ServeProcess] = field(default_factory=list)
    workers: dict[str, list[CliProcess]] = field(default_factory=dict)

    def start_worker(self, command: str, number: int) -> CliProcess:
        process = CliProcess([command], self.env, self.base / f"{command}-{number}.log")
        self.workers.setdefault(command, []).append(process)
        return process

    def kill_and_restart(self, command: str, index: int) -> None:
        """SIGKILL one follower process, then start another in its place."""
        old = self.workers[command][index]
        old.stop(signal.SIGKILL)
        self.workers[command][index] = CliProcess(old.args, self.env, old.log)

    def active_pid(self, follower: str) -> int | None:
        """The pid of the process whose worker of `follower` holds its lease (as
        `publish --status` tells it for the relay)."""
        database = PostgresDatabase(self.database_url)
        try:
            holder = lease_holder(database, follower) or ""
        finally:
            database.close()
        found = re.search(r"pid (\d+)", holder)
        return int(found.group(1)) if found else None

    def kill_active(self, command: str, follower: str, otherwise: int) -> bool:
        """SIGKILLs (and replaces) the `command` process that holds `follower`'s lease, or
        process `otherwise` when none holds it; whether the killed one was active."""
        pid = self.active_pid(follower)
        index = next((i for i, p in enumerate(self.workers[command]) if p.process.pid == pid),
                     None)
        self.kill_and_restart(command, otherwise if index is None else index)
        return index is not None

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.base.glob("*.log")))

    def stop(self) -> None:
        for process in [*self.apis, *(p for group in self.workers.values() for p in group)]:
            process.stop(signal.SIGTERM)


def stored_events(api: str, after: int = 0) -> list[dict[str, Any]]:
    """Every CloudEvent stored after position `after`, in store order, read through an API
    process."""
    found: list[dict[str, Any]] = []
    while True:
        page = httpx.get(f"{api}/api/v1/events", headers=READER,
                         params={"after": after, "limit": 1000}, timeout=30).json()
        found += page["items"]
        if page["next_after"] is None:
            return found
        after = page["next_after"]


def store_head(api: str) -> int:
    answer = httpx.get(f"{api}/api/v1/audit/head", headers=READER, timeout=30)
    return int(answer.json()["position"])


async def _stream_ids(url: str) -> tuple[int, list[str]]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info("INCIDENTS")
        ids = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg("INCIDENTS", sequence)
            ids.append(json.loads(message.data or b"{}")["id"])
        return info.config.num_replicas or 1, ids
    finally:
        await client.close()


def wait_published(running: Fleet, url: str, within: float = 60) -> tuple[int, list[str]]:
    """Waits until JetStream (asked at `url`) holds every stored event, or `within`
    seconds passed: the stream's replica count and the CloudEvents ids it holds."""
    deadline = time.monotonic() + within
    while True:
        stored = [event["id"] for event in stored_events(running.apis[0].url)]
        try:
            replicas, ids = asyncio.run(_stream_ids(url))
        except nats.errors.TimeoutError:
            # The cluster is still electing the stream's leader (a node just died):
            # JetStream cannot answer yet, so ask again until the deadline.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        if sorted(ids) == sorted(stored) or time.monotonic() > deadline:
            return replicas, ids
        time.sleep(0.5)


# The processes of the topology besides the API's: each runs twice (one works, one stands by).
WORKER_COMMANDS = ("project", "publish", "deliver")
API_ARGS = ("--no-projectors", "--no-relay", "--no-deliver")


@contextlib.contextmanager
def fleet(base: Path | None = None, **settings: str) -> Iterator[Fleet]:
    own = base is None
    base = base or Path(tempfile.mkdtemp(prefix="product-status-fleet-"))
    with postgres_server() as server_url:
        database_url = create_database(server_url)
        cluster = NatsCluster(base)
        running: Fleet | None = None
        try:
            cluster.start()
            env = {"DATABASE_URL": database_url, "API_TOKENS": TOKENS,
                   "CLOUDEVENT_BROKER_URL": cluster.urls, "CLOUDEVENT_STREAM_REPLICAS": "3",
                   "PUBLIC_BASE_URL": "http://status.example", **settings}
            running = Fleet(base, database_url, cluster, env)
            for command in WORKER_COMMANDS:
                for number in (1, 2):
                    running.start_worker(command, number)
            for number in (1, 2):
                running.apis.append(ServeProcess(env, base / f"serve-{number}.log", *API_ARGS))
            yield running
        finally:
            if running is not None:
                running.stop()
            cluster.stop()
            drop_database(database_url)
            if own:
                shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    """Starts the fleet and keeps it until Ctrl-C."""
    with fleet() as running:
        print(f"PostgreSQL: {running.database_url}")
        print(f"NATS cluster: {running.nats.urls} (stream replicas 3)")
        for api in running.apis:
            print(f"API: {api.url}  (tokens: {TOKENS})")
        for command, processes in running.workers.items():
            print(f"{command}: {len(processes)} processes")
        print(f"logs: {running.base}; Ctrl-C stops everything")
        with contextlib.suppress(KeyboardInterrupt):
            while all(api.alive() for api in running.apis):
                time.sleep(1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
