"""The delivering process (`product-status deliver`) killed with SIGKILL again and again
while events stream in: nothing is lost, the order holds, and anything sent again is the
same message with the same id."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.bootstrap import Services, bootstrap
from tests.conftest import TOKENS, LiveServer, make_settings
from tests.e2e.test_integrations_delivery import Commands, ids_of, stored_after, wait_until, webhook
from tests.receivers import HttpReceiver

CLI = str(Path(sys.executable).parent / "product-status")
KILLS = 5


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    started = HttpReceiver().start()
    yield started
    started.stop()


def test_the_deliverer_killed_mid_stream_five_times_loses_nothing(
        database_url: str, tmp_path: Path, receiver: HttpReceiver) -> None:
    settings = {"INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true",
                "DELIVERY_RETRY_INITIAL_SECONDS": "0.2", "DELIVERY_RETRY_MAX_SECONDS": "1"}
    env = {"DATABASE_URL": database_url, **settings,
           "API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items())}
    # The API, without deliverers: they run in the `deliver` processes.
    services: Services = bootstrap(make_settings(database_url, **settings))
    services.start_projections()
    server = LiveServer(services)
    server.start()
    log = tmp_path / "deliver.log"
    processes: list[subprocess.Popen[bytes]] = []

    def deliverer() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen([CLI, "deliver"], env={**os.environ, **env},
                                       stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            receiver.delay = 0.03  # a receiver that does some work: a backlog builds up
            webhook(http, receiver, include_internal=True)
            start = services.event_log.last_position()
            writer = threading.Thread(target=Commands(http, seed=5).run, args=(250,))
            writer.start()
            rng = random.Random(5)
            for _ in range(KILLS):
                process = deliverer()
                wanted = len(receiver.received) + 5
                wait_until(lambda: len(receiver.received) >= wanted, 60,  # noqa: B023
                           f"the deliverer sends (log: {log})")
                time.sleep(rng.uniform(0.1, 0.8))
                process.kill()  # SIGKILL: no clean-up, the lease goes with the process
                process.wait(timeout=10)
            process = deliverer()
            writer.join()
            stored = stored_after(services, start)
            wait_until(lambda: len(set(receiver.ids())) >= len(stored), 120,
                       "everything delivered after the last restart")
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        server.stop()
        services.close()

    got = receiver.delivered()
    first: dict[str, bytes] = {}
    for item in got:
        body = first.setdefault(item.headers["webhook-id"], item.body)
        assert item.body == body  # a repeat is the same message, with the same id
    assert list(first) == ids_of(stored)  # nothing lost, in store order
    assert list(first.values()) == stored
    assert all(r.verified for r in receiver.received)
    assert sum(1 for p in processes if p.returncode == -9) == KILLS
