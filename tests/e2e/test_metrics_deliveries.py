"""/metrics counts failed deliveries per integration, and shows each one's lag."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import READER, TOKENS, WRITER, make_settings, running, serving
from tests.e2e.test_metrics import samples, value
from tests.receivers import HttpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}


@pytest.fixture
def delivering(sqlite_url: str) -> Iterator[httpx.Client]:
    settings = make_settings(
        sqlite_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
        DELIVERY_RETRY_INITIAL_SECONDS="0.2", DELIVERY_RETRY_MAX_SECONDS="0.5")
    for services in running(settings, delivery=True):
        yield from serving(services)


def test_failed_deliveries_are_counted_per_integration(delivering: httpx.Client) -> None:
    http = delivering
    receiver = HttpReceiver().start()
    try:
        receiver.mode = "fail"
        added = http.post("/api/v1/integrations", headers=ADMIN,
                          json={"kind": "webhook", "url": receiver.url, "name": "ops hook"})
        assert added.status_code == 201, added.text
        integration = added.json()["id"]
        assert http.post("/api/v1/incidents", headers=WRITER,
                         json={"title": "undeliverable"}).status_code == 201
        name = "product_status_delivery_failures_total"
        deadline = time.monotonic() + 30
        while value(samples(http.get("/metrics", headers=READER).text), name,
                    integration=integration) < 2:
            assert time.monotonic() < deadline, "no failed delivery counted within 30 s"
            time.sleep(0.2)
        found = samples(http.get("/metrics", headers=READER).text)
        lag = value(found, "product_status_follower_lag_events", follower=integration,
                    kind="delivery")
        assert lag >= 1  # the failing integration holds its events
    finally:
        receiver.stop()
