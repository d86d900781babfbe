"""The production topology as processes (tests/fleet.py): two API processes, two of each
follower, one PostgreSQL and a three-node NATS JetStream cluster with stream replicas 3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fleet import WRITER, Fleet, fleet, stored_events, wait_published


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as started:
        yield started


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
    replicas, ids = wait_published(running, running.nats.nodes[0].url)
    assert replicas == 3
    assert sorted(ids) == sorted([e['id'] for e in stored_events(first)])

    running.nats.kill(running.nats.nodes[0])
    for n in range(20):
        answer = httpx.post(f"{(first, second)[n % 2]}/api/v1/incidents", headers=WRITER,
                            json={"title": f"after {n}"})
        assert answer.status_code == 201
    _, ids = wait_published(running, running.nats.nodes[1].url, within=120)
    stored = [e['id'] for e in stored_events(first)]
    assert len(stored) == 30
    assert sorted(ids) == sorted(stored), running.logs()  # each event once, none lost
