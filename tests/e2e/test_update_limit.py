"""`INCIDENT_MAX_UPDATES` over HTTP: the limit holds, yet an incident can always be closed."""

from __future__ import annotations

import httpx
import pytest

from infra.settings import Settings
from tests.conftest import READER, WRITER, make_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, INCIDENT_MAX_UPDATES="2")


def test_an_incident_at_the_update_limit_can_be_resolved_and_reviewed(
    http: httpx.Client,
) -> None:
    created = http.post("/api/v1/incidents", json={"title": "Queue stuck"}, headers=WRITER)
    assert created.status_code == 201, created.text
    url = f"/api/v1/incidents/{created.json()['id']}"

    for status in ["identified", "monitoring"]:
        answer = http.post(f"{url}/updates", json={"status": status}, headers=WRITER)
        assert answer.status_code == 201, answer.text
    refused = http.post(f"{url}/updates", json={"message": "still watching"}, headers=WRITER)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "at most 2" in refused.json()["detail"]

    resolved = http.post(f"{url}/updates", headers=WRITER,
                         json={"status": "resolved", "public_message": "Fixed"})
    assert resolved.status_code == 201, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_at"] is not None

    reopened = http.post(f"{url}/updates", json={"status": "investigating"}, headers=WRITER)
    assert reopened.status_code == 409  # only closing updates pass the limit
    reviewed = http.post(f"{url}/updates", json={"status": "post_incident"}, headers=WRITER)
    assert reviewed.status_code == 201, reviewed.text

    incident = http.get(url, headers=READER).json()
    assert incident["status"] == "post_incident"
    assert [u["status"] for u in incident["updates"]] == [
        "identified", "monitoring", "resolved", "post_incident"]
