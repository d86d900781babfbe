"""The HTTP API end to end, against a real server on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import pytest
from cloudevents.core.formats.json import JSONFormat

from tests.conftest import READER, TOKENS, WRITER

INCIDENT = {
    "title": "API Response Time Degradation",
    "description": "Users experiencing slow API response times",
    "severity": "medium",
    "incident_type": "degraded_performance",
    "affected_services": ["api-gateway", "user-service"],
    "affected_regions": ["us-east-1", "us-west-2"],
    "start_time": "2024-01-01T12:00:00Z",
    "public_message": "We are investigating increased API response times",
    "internal_notes": "p95 latency up by 200ms",
}


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = http.post("/api/v1/incidents", json={**INCIDENT, **fields}, headers=WRITER)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def events(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/api/v1/events", params=params, headers=READER)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_create_answers_201_with_location_etag_and_every_field(http: httpx.Client) -> None:
    response = http.post("/api/v1/incidents", json=INCIDENT, headers=WRITER)
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("incident-")
    assert response.headers["location"] == f"/api/v1/incidents/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["status"] == "investigating"
    assert body["version"] == 1
    assert body["resolved_at"] is None
    assert body["updates"] == []
    for name, value in INCIDENT.items():
        assert body[name] == value, name
    assert body["is_public"] is True
    assert body["rss_enabled"] is True
    assert body["created_at"] == body["updated_at"]


def test_only_title_is_required_and_start_time_defaults_to_now(http: httpx.Client) -> None:
    response = http.post("/api/v1/incidents", json={"title": "Minimal"}, headers=WRITER)
    assert response.status_code == 201
    body = response.json()
    assert body["start_time"] == body["created_at"]
    assert (body["severity"], body["incident_type"]) == ("medium", "other")


def test_lifecycle_through_updates(http: httpx.Client) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"
    for status in ["identified", "monitoring", "resolved"]:
        response = http.post(f"{url}/updates", headers=WRITER, json={
            "status": status, "message": f"internal {status}",
            "public_message": f"public {status}", "update_type": "status_update",
            "author": "on-call"})
        assert response.status_code == 201, response.text
        assert response.json()["status"] == status
    resolved = http.get(url, headers=READER).json()
    assert resolved["resolved_at"] is not None
    assert [u["status"] for u in resolved["updates"]] == ["identified", "monitoring", "resolved"]
    assert resolved["updates"][0]["author"] == "on-call"
    reopened = http.post(f"{url}/updates", headers=WRITER, json={"status": "investigating",
                                                                 "message": "back"})
    assert reopened.json()["resolved_at"] is None
    again = http.post(f"{url}/updates", headers=WRITER, json={"status": "resolved"}).json()
    final = http.post(f"{url}/updates", headers=WRITER, json={"status": "post_incident"})
    assert final.status_code == 201
    assert final.json()["resolved_at"] == again["resolved_at"]
    refused = http.post(f"{url}/updates", headers=WRITER, json={"status": "investigating"})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"


def test_put_changes_only_the_given_details(http: httpx.Client) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"
    response = http.put(url, headers=WRITER, json={"severity": "critical",
                                                   "affected_services": ["db"]})
    assert response.status_code == 200
    body = response.json()
    assert body["severity"] == "critical"
    assert body["affected_services"] == ["db"]
    assert body["title"] == INCIDENT["title"]
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'


def test_if_match_guards_against_lost_updates(http: httpx.Client) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"
    stale = http.put(url, headers={**WRITER, "If-Match": '"5"'}, json={"title": "x"})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'
    fresh = http.put(url, headers={**WRITER, "If-Match": '"1"'}, json={"title": "y"})
    assert fresh.status_code == 200
    update = http.post(f"{url}/updates", headers={**WRITER, "If-Match": '"1"'},
                       json={"message": "late"})
    assert update.status_code == 412
    gone = http.delete(url, headers={**WRITER, "If-Match": '"1"'})
    assert gone.status_code == 412
    assert http.delete(url, headers={**WRITER, "If-Match": '"2"'}).status_code == 204


def test_delete_is_soft_and_hides_the_incident(http: httpx.Client) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"
    assert http.delete(url, headers=WRITER).status_code == 204
    assert http.get(url).status_code == 404
    assert http.get(url, headers=READER).status_code == 404
    assert http.delete(url, headers=WRITER).status_code == 404
    assert http.put(url, headers=WRITER, json={"title": "z"}).status_code == 409
    assert [e["type"] for e in events(http, subject=incident["id"])][-1] == (
        "com.example.incident.deleted")


def test_public_readers_see_public_incidents_and_fields_only(http: httpx.Client) -> None:
    public = create(http)
    private = create(http, is_public=False)
    http.post(f"/api/v1/incidents/{public['id']}/updates", headers=WRITER,
              json={"message": "secret cause", "public_message": "we are on it"})
    seen = http.get(f"/api/v1/incidents/{public['id']}").json()
    assert "internal_notes" not in seen
    assert seen["updates"][0]["public_message"] == "we are on it"
    assert "message" not in seen["updates"][0]
    assert "secret" not in json.dumps(seen)
    assert "p95" not in json.dumps(seen)
    assert http.get(f"/api/v1/incidents/{private['id']}").status_code == 404
    assert http.get(f"/api/v1/incidents/{private['id']}/timeline").status_code == 404
    assert http.get(f"/api/v1/incidents/{private['id']}", headers=READER).status_code == 200
    timeline = http.get(f"/api/v1/incidents/{public['id']}/timeline").text
    assert "we are on it" in timeline
    assert "secret cause" not in timeline
    assert "p95" not in timeline
    full = http.get(f"/api/v1/incidents/{public['id']}/timeline", headers=READER).json()
    assert "secret cause" in json.dumps(full)


def test_tokens_and_roles(http: httpx.Client) -> None:
    no_token = http.post("/api/v1/incidents", json=INCIDENT)
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    reader = http.post("/api/v1/incidents", json=INCIDENT, headers=READER)
    assert reader.status_code == 403
    admin = http.post("/api/v1/incidents", json=INCIDENT,
                      headers={"Authorization": f"Bearer {TOKENS['admin']}"})
    assert admin.status_code == 201
    assert http.get("/api/v1/events").status_code == 401
    bad = http.get(f"/api/v1/incidents/{admin.json()['id']}",
                   headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert len(events(http)) == 1


def test_idempotency_key_returns_the_first_answer(http: httpx.Client) -> None:
    headers = {**WRITER, "Idempotency-Key": "create-once"}
    first = http.post("/api/v1/incidents", json=INCIDENT, headers=headers)
    http.put(f"/api/v1/incidents/{first.json()['id']}", headers=WRITER, json={"title": "later"})
    retry = http.post("/api/v1/incidents", json=INCIDENT, headers=headers)
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    other = http.post("/api/v1/incidents", json={**INCIDENT, "title": "else"}, headers=headers)
    assert other.status_code == 422
    url = f"/api/v1/incidents/{first.json()['id']}/updates"
    update_headers = {**WRITER, "Idempotency-Key": "update-once"}
    one = http.post(url, json={"status": "resolved"}, headers=update_headers)
    two = http.post(url, json={"status": "resolved"}, headers=update_headers)
    assert one.json() == two.json()
    assert len(events(http)) == 4  # created, updated, update_added, resolved


def test_events_are_the_stored_documents_in_order_with_filters(http: httpx.Client) -> None:
    first = create(http)
    second = create(http)
    http.post(f"/api/v1/incidents/{first['id']}/updates", headers=WRITER,
              json={"status": "resolved"})
    everything = http.get("/api/v1/events", headers=READER)
    items = everything.json()["items"]
    assert [e["type"].rsplit(".", 1)[1] for e in items] == [
        "created", "created", "update_added", "resolved"]
    for raw in _raw_items(everything.content):
        JSONFormat().read(None, raw)
    assert [e["subject"] for e in events(http, subject=first["id"])] == [first["id"]] * 3
    assert [e["subject"] for e in events(http, type="created")] == [first["id"], second["id"]]
    both = events(http, type=["com.example.incident.created", "resolved"])
    assert len(both) == 3
    page = http.get("/api/v1/events", params={"limit": 2}, headers=READER).json()
    assert len(page["items"]) == 2
    rest = events(http, after=page["next_after"])
    assert [e["id"] for e in page["items"] + rest] == [e["id"] for e in items]


def _raw_items(body: bytes) -> list[bytes]:
    """The documents as they appear in the body, to check they are the stored bytes."""
    decoder = json.JSONDecoder()
    text = body.decode()
    start = text.index("[") + 1
    raws = []
    while text[start] != "]":
        _, end = decoder.raw_decode(text, start)
        raws.append(text[start:end].encode())
        start = end + (1 if text[end] == "," else 0)
    return raws


def test_events_endpoint_serves_the_stored_bytes(http: httpx.Client, services: Any) -> None:
    create(http)
    stored = [e.document for e in services.event_log.read(0, 10)]
    served = _raw_items(http.get("/api/v1/events", headers=READER).content)
    assert served == stored


def test_as_of_shows_the_incident_at_an_instant(http: httpx.Client) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"
    resolved = http.post(f"{url}/updates", headers=WRITER, json={"status": "resolved"}).json()
    before = http.get(url, params={"as_of": incident["created_at"]}).json()
    assert before["status"] == "investigating"
    assert before["version"] == 1
    after = http.get(url, params={"as_of": resolved["updated_at"]}).json()
    assert after["status"] == "resolved"
    assert http.get(url, params={"as_of": "2000-01-01T00:00:00Z"}).status_code == 404


def test_health_readiness_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    spec = http.get("/openapi.json").json()
    assert "/api/v1/incidents/{incident_id}/updates" in spec["paths"]
    assert http.get("/docs").status_code == 200


def _race(count: int, send: Any) -> list[httpx.Response]:
    barrier = Barrier(count)

    def run(i: int) -> httpx.Response:
        barrier.wait()
        response: httpx.Response = send(i)
        return response

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def base_url(live_server: Any) -> str:
    url: str = live_server.url
    return url


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=60)


def test_30_concurrent_updates_all_land_with_dense_versions(
    http: httpx.Client, base_url: str
) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}/updates"

    def send(i: int) -> httpx.Response:
        with _client(base_url) as client:
            return client.post(url, headers=WRITER, json={"message": f"update {i}"})

    responses = _race(30, send)
    assert [r.status_code for r in responses] == [201] * 30
    final = http.get(f"/api/v1/incidents/{incident['id']}", headers=READER).json()
    assert final["version"] == 31
    assert sorted(u["number"] for u in final["updates"]) == list(range(1, 31))
    assert sorted(u["message"] for u in final["updates"]) == sorted(
        f"update {i}" for i in range(30))


def test_10_concurrent_puts_with_one_if_match_one_wins(http: httpx.Client, base_url: str) -> None:
    incident = create(http)
    url = f"/api/v1/incidents/{incident['id']}"

    def send(i: int) -> httpx.Response:
        with _client(base_url) as client:
            return client.put(url, headers={**WRITER, "If-Match": '"1"'},
                              json={"title": f"title {i}"})

    codes = sorted(r.status_code for r in _race(10, send))
    assert codes == [200] + [412] * 9
    assert http.get(url, headers=READER).json()["version"] == 2


def test_10_concurrent_creates_with_one_key_make_one_incident(
    http: httpx.Client, base_url: str
) -> None:
    def send(_: int) -> httpx.Response:
        with _client(base_url) as client:
            return client.post("/api/v1/incidents", json=INCIDENT,
                               headers={**WRITER, "Idempotency-Key": "storm"})

    responses = _race(10, send)
    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(events(http)) == 1
