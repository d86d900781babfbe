"""Scheduled maintenance over HTTP: the window's rules, and upcoming and in-progress
maintenance in the list filters, the summary, the status page and the feeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import READER, WRITER

SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


def at(hours: float) -> str:
    return (SOON + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def declare(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/api/v1/incidents", headers=WRITER,
                     json={"title": "Database upgrade", **body})


def scheduled(http: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = declare(http, incident_type="maintenance", scheduled_start=at(0),
                     scheduled_end=at(2), affected_services=["database"],
                     public_message="Short read-only period", **body)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_maintenance_declared_before_its_window_is_scheduled(http: httpx.Client) -> None:
    incident = scheduled(http)
    assert incident["status"] == "scheduled"
    assert (incident["scheduled_start"], incident["scheduled_end"]) == (at(0), at(2))
    public = http.get(f"/api/v1/incidents/{incident['id']}").json()
    assert (public["status"], public["scheduled_start"]) == ("scheduled", at(0))
    plain = declare(http).json()
    assert (plain["status"], plain["scheduled_start"], plain["scheduled_end"]) == (
        "investigating", None, None)


@pytest.mark.parametrize(("body", "field"), [
    ({"scheduled_start": at(0), "scheduled_end": at(1)}, "scheduled_start"),
    ({"incident_type": "maintenance", "scheduled_start": at(1), "scheduled_end": at(0)},
     "scheduled_end"),
    ({"incident_type": "maintenance", "scheduled_start": at(1), "scheduled_end": at(1)},
     "scheduled_end"),
    ({"incident_type": "maintenance", "scheduled_start": at(1)}, "scheduled_end"),
    ({"incident_type": "maintenance", "status": "scheduled"}, "status"),
])
def test_a_window_that_cannot_be_is_refused(http: httpx.Client, body: dict[str, Any],
                                            field: str) -> None:
    before = http.get("/api/v1/incidents", headers=READER).json()["total"]
    answer = declare(http, **body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert http.get("/api/v1/incidents", headers=READER).json()["total"] == before


@pytest.mark.parametrize("bad", ["tomorrow", "2026-13-01T00:00:00Z", 1714557600])
def test_a_window_that_is_not_rfc3339_is_refused(http: httpx.Client, bad: Any) -> None:
    answer = declare(http, incident_type="maintenance", scheduled_start=bad,
                     scheduled_end=at(1))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "scheduled_start"


def test_the_window_moves_while_scheduled_only(http: httpx.Client) -> None:
    incident = scheduled(http)
    url = f"/api/v1/incidents/{incident['id']}"
    moved = http.put(url, headers={**WRITER, "If-Match": f'"{incident["version"]}"'},
                     json={"scheduled_start": at(1), "scheduled_end": at(3)})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["scheduled_start"], moved.json()["scheduled_end"]) == (at(1), at(3))
    backwards = http.put(url, headers=WRITER, json={"scheduled_end": at(0)})
    assert backwards.status_code == 422
    retyped = http.put(url, headers=WRITER, json={"incident_type": "outage"})
    assert retyped.status_code == 422
    started = http.post(f"{url}/updates", headers=WRITER, json={"status": "monitoring"})
    assert started.status_code == 201
    late = http.put(url, headers=WRITER, json={"scheduled_end": at(5)})
    assert late.status_code == 422
    assert http.get(url, headers=READER).json()["scheduled_end"] == at(3)
    other = declare(http).json()
    windowless = http.put(f"/api/v1/incidents/{other['id']}", headers=WRITER,
                          json={"scheduled_start": at(0), "scheduled_end": at(1)})
    assert windowless.status_code == 422


def test_cancelling_resolves_it(http: httpx.Client) -> None:
    incident = scheduled(http)
    cancelled = http.post(f"/api/v1/incidents/{incident['id']}/updates", headers=WRITER,
                          json={"status": "resolved", "public_message": "Cancelled"})
    assert cancelled.status_code == 201
    assert cancelled.json()["status"] == "resolved"
    assert cancelled.json()["resolved_at"] is not None
    back = http.post(f"/api/v1/incidents/{incident['id']}/updates", headers=WRITER,
                     json={"status": "scheduled"})
    assert back.status_code == 409


def test_upcoming_and_in_progress_maintenance_are_listed_counted_shown_and_fed(
        http: httpx.Client) -> None:
    upcoming = scheduled(http, title="Storage upgrade")
    running = scheduled(http, title="Network upgrade")
    http.post(f"/api/v1/incidents/{running['id']}/updates", headers=WRITER,
              json={"status": "monitoring", "update_type": "maintenance",
                    "public_message": "Maintenance in progress"})
    private = scheduled(http, title="Secret upgrade", is_public=False)
    declare(http, title="Unrelated outage")

    listed = http.get("/api/v1/incidents", params={"status": "scheduled"}).json()
    assert [i["id"] for i in listed["items"]] == [upcoming["id"]]
    listed = http.get("/api/v1/incidents", params={"status": "scheduled"},
                      headers=READER).json()
    assert {i["id"] for i in listed["items"]} == {upcoming["id"], private["id"]}

    summary = http.get("/api/v1/incidents/status/summary").json()
    assert summary["by_status"]["scheduled"] == 1
    assert summary["maintenance"] == {"scheduled": 1, "in_progress": 1}
    assert summary["active"] == 2  # the running maintenance and the outage
    summary = http.get("/api/v1/incidents/status/summary", headers=READER).json()
    assert summary["maintenance"] == {"scheduled": 2, "in_progress": 1}

    page = http.get("/").text
    section = page.split('id="maintenance-heading"')[1].split("</section>")[0]
    assert "Storage upgrade" in section
    assert "Network upgrade" in section
    assert "Maintenance window:" in section
    assert "Maintenance in progress" in section
    assert "Secret upgrade" not in page
    active = page.split('id="active-heading"')[1].split("</section>")[0]
    assert "Unrelated outage" in active
    assert "Network upgrade" not in active

    for feed in ("/api/v1/incidents/rss/feed", "/api/v1/incidents/atom/feed"):
        body = http.get(feed).text
        assert "Storage upgrade" in body
        assert "Scheduled maintenance" in body
        assert f"Maintenance window: {at(0)} to {at(2)}" in body
        assert "Secret upgrade" not in body


def test_the_services_own_request_keys_are_refused(http: httpx.Client) -> None:
    incident = declare(http).json()
    answer = http.post(f"/api/v1/incidents/{incident['id']}/updates",
                       headers={**WRITER, "Idempotency-Key": "system:auto_resolve:v2"},
                       json={"status": "resolved"})
    assert answer.status_code == 400
    assert http.get(f"/api/v1/incidents/{incident['id']}").json()["status"] == "investigating"
