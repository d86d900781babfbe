"""The production topology as processes (tests/fleet.py): two API processes, two of each
follower, one PostgreSQL and a three-node NATS JetStream cluster with stream replicas 3."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from tests.fleet import READER, WRITER, Fleet, fleet


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as started:
        yield started


async def _stream_ids(url: str) -> tuple[int, list[str]]:
    """The stream's replica count and the CloudEvents ids it holds, in order."""
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


def _stored_ids(api: str) -> list[str]:
    answer = httpx.get(f"{api}/api/v1/events", params={"limit": 1000}, headers=READER)
    return [item["id"] for item in answer.json()["items"]]


def _published(running: Fleet, url: str, within: float = 60) -> tuple[int, list[str]]:
    """Waits until JetStream holds every stored event; the replicas and ids it holds."""
    deadline = time.monotonic() + within
    while True:
        stored = _stored_ids(running.apis[0].url)
        replicas, ids = asyncio.run(_stream_ids(url))
        if sorted(ids) == sorted(stored) or time.monotonic() > deadline:
            return replicas, ids
        time.sleep(0.5)


def test_a_write_through_one_api_is_read_through_the_other(running: Fleet) -> None:
    first, second = (api.url for api in running.apis)
    created = httpx.post(f"{first}/api/v1/incidents", headers=WRITER,
                         json={"title": "Fleet outage", "affected_services": ["api"]})
    assert created.status_code == 201, running.logs()
    position = created.headers["Store-Position"]
    incident = created.json()
    read = httpx.get(f"{second}/api/v1/incidents/{incident['id']}",
                     headers={"Min-Position": position}, timeout=10)
    assert read.status_code == 200, running.logs()
    assert read.json()["title"] == "Fleet outage"
    listed = httpx.get(f"{second}/api/v1/incidents", headers={"Min-Position": position})
    assert [i["id"] for i in listed.json()["items"]] == [incident["id"]]
    for api in running.apis:
        assert httpx.get(f"{api.url}/readyz").status_code == 200


def test_jetstream_keeps_three_copies_and_loses_nothing_when_a_node_dies(
    running: Fleet,
) -> None:
    first, second = (api.url for api in running.apis)
    for n in range(10):
        answer = httpx.post(f"{(first, second)[n % 2]}/api/v1/incidents", headers=WRITER,
                            json={"title": f"before {n}"})
        assert answer.status_code == 201
    replicas, ids = _published(running, running.nats.nodes[0].url)
    assert replicas == 3
    assert sorted(ids) == sorted(_stored_ids(first))

    running.nats.kill(running.nats.nodes[0])
    for n in range(20):
        answer = httpx.post(f"{(first, second)[n % 2]}/api/v1/incidents", headers=WRITER,
                            json={"title": f"after {n}"})
        assert answer.status_code == 201
    _, ids = _published(running, running.nats.nodes[1].url, within=120)
    stored = _stored_ids(first)
    assert len(stored) == 30
    assert sorted(ids) == sorted(stored), running.logs()  # each event once, none lost
