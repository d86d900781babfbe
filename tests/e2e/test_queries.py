"""The query API over HTTP: filters, pagination, summary, visibility, read-your-writes.
No sleeps: each read relies on read-your-writes."""

from __future__ import annotations

import itertools
import json
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.incident import Incident
from domain.values import Status
from domain.visibility import Audience
from infra.bootstrap import Services, bootstrap
from infra.settings import Settings
from projections.queries import ListFilters, encode_cursor
from tests.conftest import READER, WRITER, LiveServer
from tests.processes import start_follower_process

CLI = str(Path(sys.executable).parent / "product-status")

# 24 incidents covering each value of each filter, some private, one deleted.
SEVERITIES = ["critical", "high", "medium", "low", "minor"]
TYPES = ["outage", "degraded_performance", "maintenance", "security", "feature_disabled",
         "other"]


def seed(http: httpx.Client) -> list[dict[str, Any]]:
    made = []
    for i in range(24):
        body = {
            "title": f"{'Database' if i % 4 == 0 else 'Gateway'} trouble {i}",
            "description": "packet loss" if i % 5 == 0 else "slow",
            "severity": SEVERITIES[i % 5], "incident_type": TYPES[i % 6],
            "affected_services": [f"svc-{i % 3}"] + (["shared"] if i % 2 else []),
            "affected_regions": [f"region-{i % 2}"],
            "start_time": f"2026-01-{i + 1:02d}T00:00:00Z",
            "is_public": i % 6 != 5,
        }
        created = http.post("/api/v1/incidents", json=body, headers=WRITER).json()
        url = f"/api/v1/incidents/{created['id']}/updates"
        if i % 4 == 1:
            created = http.post(url, json={"status": "identified"}, headers=WRITER).json()
        if i % 4 == 2:
            created = http.post(url, json={"status": "resolved"}, headers=WRITER).json()
        made.append(created)
    http.delete(f"/api/v1/incidents/{made[23]['id']}", headers=WRITER)
    return made[:23]


def listed(http: httpx.Client, headers: dict[str, str] | None = None,
           **params: Any) -> dict[str, Any]:
    response = http.get("/api/v1/incidents", params={"limit": 100, **params}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def expected(incidents: list[dict[str, Any]], *, internal: bool, **filters: Any) -> list[str]:
    def keep(incident: dict[str, Any]) -> bool:
        if not internal and not incident["is_public"]:
            return False
        for name in ("status", "severity", "incident_type"):
            if name in filters and incident[name] not in filters[name]:
                return False
        if "service" in filters and not set(filters["service"]) & set(
                incident["affected_services"]):
            return False
        if "region" in filters and not set(filters["region"]) & set(incident["affected_regions"]):
            return False
        text = (incident["title"] + " " + incident["description"]).lower()
        if "q" in filters and filters["q"].lower() not in text:
            return False
        if "since" in filters and incident["start_time"] < filters["since"]:
            return False
        return not ("until" in filters and incident["start_time"] >= filters["until"])

    return [i["id"] for i in reversed(incidents) if keep(i)]  # newest first


FILTERS: list[dict[str, Any]] = [
    {"status": ["investigating"]},
    {"status": ["identified", "resolved"]},
    {"severity": ["critical"]},
    {"severity": ["low", "minor"]},
    {"incident_type": ["outage"]},
    {"incident_type": ["maintenance", "security"]},
    {"service": ["shared"]},
    {"service": ["svc-0", "svc-2"]},
    {"region": ["region-1"]},
    {"q": "database"},
    {"q": "PACKET"},
    {"since": "2026-01-10T00:00:00Z"},
    {"until": "2026-01-05T00:00:00Z"},
    {"since": "2026-01-03T00:00:00Z", "until": "2026-01-20T00:00:00Z"},
]
COMBINED = [
    {**a, **b} for a, b in itertools.combinations(FILTERS, 2) if not set(a) & set(b)
]


@pytest.fixture
def seeded(http: httpx.Client) -> list[dict[str, Any]]:
    return seed(http)


def test_every_filter_alone_and_combined(http: httpx.Client,
                                         seeded: list[dict[str, Any]]) -> None:
    for filters in [{}, *FILTERS, *COMBINED]:
        for headers, internal in ((None, False), (READER, True)):
            body = listed(http, headers, **filters)
            want = expected(seeded, internal=internal, **filters)
            assert [i["id"] for i in body["items"]] == want, filters
            assert body["total"] == len(want), filters
    assert len(COMBINED) > 50


def test_public_lists_hide_private_deleted_and_internal(
    http: httpx.Client, seeded: list[dict[str, Any]]
) -> None:
    public = listed(http)
    assert all(i["is_public"] for i in public["items"])
    assert all("internal_notes" not in i for i in public["items"])
    everything = listed(http, READER)
    assert everything["total"] == 23
    assert public["total"] == sum(i["is_public"] for i in seeded)
    assert all("internal_notes" in i for i in everything["items"])


def test_pagination_walks_newest_first_without_duplicates_while_the_set_grows(
    http: httpx.Client, seeded: list[dict[str, Any]]
) -> None:
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/api/v1/incidents", params=params, headers=READER).json()
        seen += [i["id"] for i in page["items"]]
        http.post("/api/v1/incidents", json={"title": f"new {added}"}, headers=WRITER)
        added += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen == [i["id"] for i in reversed(seeded)]
    assert listed(http, READER)["total"] == 23 + added


def test_summary_counts_equal_what_the_list_reports(
    http: httpx.Client, seeded: list[dict[str, Any]]
) -> None:
    for headers in (None, READER):
        summary = http.get("/api/v1/incidents/status/summary", headers=headers).json()
        assert summary["total"] == listed(http, headers)["total"]
        for status, count in summary["by_status"].items():
            assert count == listed(http, headers, status=[status])["total"], status
        for severity, count in summary["by_severity"].items():
            assert count == listed(http, headers, severity=[severity])["total"], severity
        for kind, count in summary["by_type"].items():
            assert count == listed(http, headers, incident_type=[kind])["total"], kind
        active = ["investigating", "identified", "monitoring"]
        assert summary["active"] == listed(http, headers, status=active)["total"]
        # A maintenance in progress counts apart from the severities of active incidents.
        unplanned = [t for t in TYPES if t != "maintenance"]
        for severity, count in summary["active_by_severity"].items():
            assert count == listed(http, headers, status=active, severity=[severity],
                                   incident_type=unplanned)["total"]
        assert summary["maintenance"]["in_progress"] == listed(
            http, headers, status=active, incident_type=["maintenance"])["total"]
        for service in summary["services"]:
            name = [service["name"]]
            in_maintenance = listed(http, headers, status=active, service=name,
                                    incident_type=["maintenance"])["total"]
            worst = next((s for s in SEVERITIES if listed(
                http, headers, status=active, service=name, severity=[s],
                incident_type=unplanned)["total"]),
                "maintenance" if in_maintenance else "operational")
            assert service["state"] == worst, service


def test_one_incident_from_the_read_tables_with_updates(
    http: httpx.Client, seeded: list[dict[str, Any]]
) -> None:
    incident = seeded[1]
    body = http.get(f"/api/v1/incidents/{incident['id']}", headers=READER)
    assert body.headers["etag"] == f'"{incident["version"]}"'
    assert body.json() == incident  # the command's answer equals the read model
    private = next(i for i in seeded if not i["is_public"])
    assert http.get(f"/api/v1/incidents/{private['id']}").status_code == 404


def test_page_cost_does_not_grow_with_depth(http: httpx.Client, services: Services) -> None:
    at = datetime.now(UTC)
    for batch in range(6):  # 3,000 incidents, saved 500 to a transaction
        services.commands.save(*[
            Incident.declare(incident_id=f"incident-deep-{batch}-{i}", at=at, title="t",
                             status=Status.IDENTIFIED if i % 3 else Status.INVESTIGATING)
            for i in range(500)])
    assert services.barrier.wait(services.event_log.last_position(), timeout=120)
    first = http.get("/api/v1/incidents", params={"limit": 20, "status": "investigating"},
                     headers=READER).json()
    assert first["total"] == 6 * 167
    queries = services.queries
    filters = ListFilters(status=("investigating",))
    deep_cursor = encode_cursor(30)  # near the oldest incidents
    plans = [queries.page_query(filters, audience=Audience.READER, limit=20, cursor=c)
             for c in (None, first["next_cursor"], deep_cursor)]
    with services.database.transaction() as cursor:
        if services.database.dialect == "postgres":
            cursor.execute("ANALYZE incidents")
            rows_read = []
            for sql, params in plans:
                plan = cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql,
                                      params).fetchone()
                assert plan is not None
                assert "Sort" not in json.dumps(plan[0][0]["Plan"]), plan
                scan = plan[0][0]["Plan"]["Plans"][0]
                assert scan["Node Type"] == "Index Scan", scan
                rows_read.append(scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0))
            # A page reads its rows plus those the filter passes over, at any depth.
            assert max(rows_read) < 100, rows_read
        else:
            for sql, params in plans:
                plan = cursor.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                detail = " ".join(str(row[-1]) for row in plan)
                assert "USING INDEX incidents_newest" in detail, detail
                assert "TEMP B-TREE" not in detail, detail


@pytest.mark.parametrize("cursor", ["garbage", "djE6", "x" * 200, "djI6MTA"])
def test_a_bad_cursor_is_a_400(http: httpx.Client, cursor: str) -> None:
    response = http.get("/api/v1/incidents", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_writes_tell_their_position_and_reads_wait_for_it(http: httpx.Client) -> None:
    response = http.post("/api/v1/incidents", json={"title": "fresh"}, headers=WRITER)
    position = int(response.headers["store-position"])
    assert f"store_position={position}" in response.headers["set-cookie"]
    listed_now = http.get("/api/v1/incidents", headers={"Min-Position": str(position)})
    assert listed_now.json()["items"][0]["id"] == response.json()["id"]
    never_written = http.get("/api/v1/incidents", params={"min_position": position + 1000})
    assert never_written.status_code == 400
    bad = http.get("/api/v1/incidents", headers={"Min-Position": "soon"})
    assert bad.status_code == 400


def test_a_read_the_projections_cannot_reach_in_time_is_503(settings: Settings) -> None:
    services = bootstrap(settings)  # no projector runs anywhere
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            created = client.post("/api/v1/incidents", json={"title": "t"}, headers=WRITER)
            assert created.status_code == 201
            behind = client.get("/api/v1/incidents")
            assert behind.status_code == 503
            assert behind.headers["retry-after"] == "1"
            assert behind.headers["content-type"] == "application/problem+json"
    finally:
        server.stop()
        services.close()


@pytest.fixture
def api_and_projector(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """An API that runs no projectors, and a separate `project` process."""
    services = bootstrap(settings)  # projections not started here
    server = LiveServer(services)
    server.start()
    projector = start_follower_process("project", str(settings.database_url),
                                       tmp_path / "project.log")
    try:
        yield server.url, services
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.wait(timeout=30)
        server.stop()
        services.close()


def test_read_your_writes_when_projections_run_in_another_process(
    api_and_projector: tuple[str, Any]
) -> None:
    url, _ = api_and_projector
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(10):
            created = client.post("/api/v1/incidents", json={"title": f"r{i}"}, headers=WRITER)
            assert created.status_code == 201
            # The cookie carries the position; the list waits for the other process.
            first = client.get("/api/v1/incidents", params={"limit": 1}).json()["items"][0]
            assert first["id"] == created.json()["id"]
            summary = client.get("/api/v1/incidents/status/summary").json()
            assert summary["total"] == i + 1
