"""`/api/v2/*.json` in the shapes of Atlassian Statuspage's public status API v2.

The fixtures below are the example answers of Statuspage's own documentation of that API,
which every Statuspage serves at `/api` (e.g. https://confluence.status.atlassian.com/api;
the same documentation as https://metastatuspage.com/api). Each of our answers must carry
every field of the documented example, at the same place, with a value of the same JSON
type (a documented null: null or a string), and values from the documented sets.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel

from api import status_schemas
from api.statuspage import StatusPage
from infra.bootstrap import Services
from projections.queries import ListFilters, Page
from tests.conftest import WRITER

# --- The documentation's examples (https://confluence.status.atlassian.com/api) --------

PAGE = {"id": "4g2my7tbhjsq", "name": "Confluence",
        "url": "https://confluence.status.atlassian.com", "time_zone": "Etc/UTC",
        "updated_at": "2025-12-20T11:26:07Z"}
STATUS = {"description": "Partial System Outage", "indicator": "major"}
COMPONENT = {
    "created_at": "2014-05-03T01:22:07.274Z", "description": None, "group": False,
    "group_id": None, "id": "b13yz5g2cw10", "name": "API", "only_show_if_degraded": False,
    "page_id": "4g2my7tbhjsq", "position": 1, "showcase": True, "start_date": None,
    "status": "partial_outage", "updated_at": "2014-05-14T20:34:43.340Z"}
INCIDENT = {
    "created_at": "2014-05-14T14:22:39.441-06:00", "id": "cp306tmzcl0y", "impact": "critical",
    "incident_updates": [{
        "body": "Our master database has ham sandwiches flying out of the rack, and we're "
                "working our hardest to stop the bleeding.",
        "created_at": "2014-05-14T14:22:40.301-06:00",
        "display_at": "2014-05-14T14:22:40.301-06:00", "id": "jdy3tw5mt5r5",
        "incident_id": "cp306tmzcl0y", "status": "identified",
        "updated_at": "2014-05-14T14:22:40.301-06:00"}],
    "monitoring_at": None, "name": "Unplanned Database Outage", "page_id": "4g2my7tbhjsq",
    "resolved_at": None, "shortlink": "http://stspg.dev:5000/Q0E", "status": "identified",
    "updated_at": "2014-05-14T14:35:21.711-06:00"}
MAINTENANCE = {
    "created_at": "2014-05-14T14:24:40.430-06:00", "id": "w1zdr745wmfy", "impact": "none",
    "incident_updates": [{
        "body": "Our data center has informed us that they will be performing routine "
                "network maintenance. No interruption in service is expected.",
        "created_at": "2014-05-14T14:24:41.913-06:00",
        "display_at": "2014-05-14T14:24:41.913-06:00", "id": "qq0vx910b3qj",
        "incident_id": "w1zdr745wmfy", "status": "scheduled",
        "updated_at": "2014-05-14T14:24:41.913-06:00"}],
    "monitoring_at": None, "name": "Network Maintenance (No Interruption Expected)",
    "page_id": "4g2my7tbhjsq", "resolved_at": None,
    "scheduled_for": "2014-05-17T22:00:00.000-06:00",
    "scheduled_until": "2014-05-17T23:30:00.000-06:00",
    "shortlink": "http://stspg.dev:5000/Q0F", "status": "scheduled",
    "updated_at": "2014-05-14T14:24:41.918-06:00"}
DOCUMENTED: dict[str, dict[str, Any]] = {
    "/api/v2/summary.json": {"page": PAGE, "status": STATUS, "components": [COMPONENT],
                             "incidents": [INCIDENT], "scheduled_maintenances": [MAINTENANCE]},
    "/api/v2/status.json": {"page": PAGE, "status": STATUS},
    "/api/v2/components.json": {"page": PAGE, "components": [COMPONENT]},
    "/api/v2/incidents/unresolved.json": {"page": PAGE, "incidents": [INCIDENT]},
    "/api/v2/incidents.json": {"page": PAGE, "incidents": [INCIDENT]},
    "/api/v2/scheduled-maintenances/upcoming.json": {
        "page": PAGE, "scheduled_maintenances": [MAINTENANCE]},
    "/api/v2/scheduled-maintenances/active.json": {
        "page": PAGE, "scheduled_maintenances": [{**MAINTENANCE, "status": "in_progress"}]},
    "/api/v2/scheduled-maintenances.json": {
        "page": PAGE, "scheduled_maintenances": [MAINTENANCE]},
}
# The documented value sets.
INDICATORS = {"none", "minor", "major", "critical"}
COMPONENT_STATUSES = {"operational", "degraded_performance", "partial_outage", "major_outage",
                      "under_maintenance"}
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
MAINTENANCE_STATUSES = {"scheduled", "in_progress", "verifying", "completed"}
IMPACTS = {"none", "minor", "major", "critical", "maintenance"}


def same_shape(documented: Any, ours: Any, where: str = "") -> list[str]:
    """Where our answer lacks a documented field or holds another JSON type there."""
    if documented is None:
        return [] if ours is None or isinstance(ours, str) else [f"{where}: not null/string"]
    if isinstance(documented, dict):
        if not isinstance(ours, dict):
            return [f"{where}: not an object"]
        return [problem for key, value in documented.items()
                for problem in ([f"{where}.{key}: missing"] if key not in ours
                                else same_shape(value, ours[key], f"{where}.{key}"))]
    if isinstance(documented, list):
        if not isinstance(ours, list):
            return [f"{where}: not an array"]
        return [p for item in ours for p in same_shape(documented[0], item, f"{where}[]")]
    if type(documented) is not type(ours):
        return [f"{where}: {type(ours).__name__}, documented {type(documented).__name__}"]
    return []


def declare(http: httpx.Client, **fields: Any) -> str:
    created = http.post("/api/v1/incidents", headers=WRITER, json=fields)
    assert created.status_code == 201, created.text
    incident_id: str = created.json()["id"]
    return incident_id


def post(http: httpx.Client, incident_id: str, **fields: Any) -> None:
    answer = http.post(f"/api/v1/incidents/{incident_id}/updates", headers=WRITER, json=fields)
    assert answer.status_code == 201, answer.text


def test_the_v2_answers_have_the_documented_shapes(http: httpx.Client) -> None:
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    outage = declare(http, title="Checkout down", severity="critical",
                     affected_services=["api"], public_message="Looking into it")
    post(http, outage, status="identified", public_message="Found it")
    post(http, outage, status="monitoring", public_message="Fixed, watching")
    resolved = declare(http, title="Slow search", severity="high", affected_services=["web"])
    post(http, resolved, status="resolved", public_message="Back to normal")
    post(http, resolved, status="post_incident", public_message="Review published")
    upcoming = declare(http, title="Database upgrade", incident_type="maintenance",
                       severity="low", affected_services=["db"], start_time=soon)
    active = declare(http, title="Network work", incident_type="maintenance",
                     affected_services=["api", "db"])
    hidden = [declare(http, title="Private", severity="critical", is_public=False,
                      affected_services=["api", "secret-service"]),
              declare(http, title="Deleted", severity="critical",
                      affected_services=["deleted-service"])]
    assert http.delete(f"/api/v1/incidents/{hidden[1]}", headers=WRITER).status_code == 204
    hidden_maintenance = declare(http, title="Private work", incident_type="maintenance",
                                 is_public=False, affected_services=["api"])

    answers = {}
    for path, documented in DOCUMENTED.items():
        response = http.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert same_shape(documented, body) == [], path
        for hidden_id in (*hidden, hidden_maintenance):
            assert hidden_id not in response.text, path
        assert "secret-service" not in response.text
        assert "deleted-service" not in response.text
        answers[path] = body

    summary = answers["/api/v2/summary.json"]
    assert summary["status"] == {"indicator": "critical",
                                 "description": "Major Service Outage"}
    assert answers["/api/v2/status.json"]["status"] == summary["status"]
    page = summary["page"]
    assert page["time_zone"] == "Etc/UTC"
    assert page["url"].startswith("http")
    assert all(a["page"]["id"] == page["id"] for a in answers.values())

    components = {c["name"]: c for c in answers["/api/v2/components.json"]["components"]}
    assert sorted(components) == ["api", "db", "web"]
    assert components["api"]["status"] == "major_outage"
    assert components["db"]["status"] == "under_maintenance"
    assert components["web"]["status"] == "operational"
    assert [c["position"] for c in components.values()] == [1, 2, 3]
    assert {c["status"] for c in components.values()} <= COMPONENT_STATUSES
    assert summary["components"] == list(components.values())

    incidents = {i["id"]: i for i in answers["/api/v2/incidents.json"]["incidents"]}
    assert set(incidents) == {outage, resolved}
    assert incidents[resolved]["status"] == "postmortem"
    assert incidents[resolved]["impact"] == "critical"  # high: a major outage of its service
    assert incidents[resolved]["resolved_at"] is not None
    current = incidents[outage]
    assert current["status"] == "monitoring"
    assert current["impact"] == "critical"
    assert current["monitoring_at"] is not None
    assert [u["status"] for u in current["incident_updates"]] == [
        "monitoring", "identified", "investigating"]
    assert [u["body"] for u in current["incident_updates"]] == [
        "Fixed, watching", "Found it", "Looking into it"]
    assert [c["name"] for c in current["components"]] == ["api"]
    assert current["shortlink"].endswith(f"/incidents/{outage}")
    assert {i["status"] for i in incidents.values()} <= INCIDENT_STATUSES
    assert {i["impact"] for i in incidents.values()} <= IMPACTS
    unresolved = answers["/api/v2/incidents/unresolved.json"]["incidents"]
    assert [i["id"] for i in unresolved] == [outage]
    assert summary["incidents"] == unresolved

    def ids(path: str) -> list[str]:
        return [m["id"] for m in answers[path]["scheduled_maintenances"]]

    assert ids("/api/v2/scheduled-maintenances/upcoming.json") == [upcoming]
    assert ids("/api/v2/scheduled-maintenances/active.json") == [active]
    assert ids("/api/v2/scheduled-maintenances.json") == [active, upcoming]
    assert [m["id"] for m in summary["scheduled_maintenances"]] == [upcoming, active]
    maintenances = {m["id"]: m for m in answers[
        "/api/v2/scheduled-maintenances.json"]["scheduled_maintenances"]}
    assert maintenances[upcoming]["status"] == "scheduled"
    assert [u["status"] for u in maintenances[upcoming]["incident_updates"]] == ["scheduled"]
    assert [u["status"] for u in maintenances[active]["incident_updates"]] == ["in_progress"]
    assert maintenances[upcoming]["scheduled_for"] == soon.replace("+00:00", "Z")
    assert maintenances[active]["status"] == "in_progress"
    # A maintenance is planned: no impact, as Statuspage's scheduled maintenances.
    assert {m["impact"] for m in maintenances.values()} == {"none"}
    assert {m["status"] for m in maintenances.values()} <= MAINTENANCE_STATUSES
    models: dict[str, type[BaseModel]] = {
        "summary.json": status_schemas.V2Summary, "status.json": status_schemas.V2Status,
        "components.json": status_schemas.V2Components}
    for path, body in answers.items():
        default = (status_schemas.V2Maintenances if "maintenances" in path
                   else status_schemas.V2Incidents)
        models.get(path.rsplit("/", 1)[1], default).model_validate(body)

def test_without_incidents_all_is_operational(http: httpx.Client) -> None:
    status = http.get("/api/v2/status.json").json()
    assert status["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert same_shape(DOCUMENTED["/api/v2/status.json"], status) == []
    assert http.get("/api/v2/components.json").json()["components"] == []


# What one severity means in every part of one answer: an incident's impact, its service's
# status and the page's indicator, as Statuspage derives impact and indicator from it.
MEANING = [("minor", "degraded_performance", "minor", "Minor Service Outage"),
           ("low", "degraded_performance", "minor", "Minor Service Outage"),
           ("medium", "partial_outage", "major", "Partial System Outage"),
           ("high", "major_outage", "critical", "Major Service Outage"),
           ("critical", "major_outage", "critical", "Major Service Outage")]


def test_indicator_follows_the_worst_unresolved_incident(http: httpx.Client) -> None:
    declared = []
    for severity, component, indicator, description in MEANING:
        declared.append(declare(http, title=severity, severity=severity,
                                affected_services=["api"]))
        summary = http.get("/api/v2/summary.json").json()
        assert summary["status"] == {"indicator": indicator, "description": description}
        assert [c["status"] for c in summary["components"]] == [component], severity
        assert {i["impact"] for i in summary["incidents"] if i["name"] == severity} == {
            indicator}
        assert http.get("/api/v2/status.json").json()["status"] == summary["status"]
    for incident_id in declared:
        post(http, incident_id, status="resolved")
    assert http.get("/api/v2/status.json").json()["status"]["indicator"] == "none"


def test_each_severity_agrees_with_itself_on_its_own(http: httpx.Client) -> None:
    """The indicator and the component's status of one incident at a time, whatever the
    severity, and a severe maintenance beside none of them: no impact, no indicator."""
    maintenance = declare(http, title="Cache swap", incident_type="maintenance",
                          severity="critical", affected_services=["cache"])
    summary = http.get("/api/v2/summary.json").json()
    assert summary["status"]["indicator"] == "none"
    assert [c["status"] for c in summary["components"]] == ["under_maintenance"]
    assert [m["impact"] for m in summary["scheduled_maintenances"]] == ["none"]
    post(http, maintenance, status="resolved")
    for severity, component, indicator, _ in reversed(MEANING):
        incident = declare(http, title=severity, severity=severity, affected_services=["db"])
        summary = http.get("/api/v2/summary.json").json()
        statuses = {c["name"]: c["status"] for c in summary["components"]}
        assert (statuses["db"], summary["status"]["indicator"]) == (component, indicator)
        assert [i["impact"] for i in summary["incidents"]] == [indicator]
        post(http, incident, status="resolved")


def test_an_internal_update_shows_nowhere_and_moves_no_public_time(
        http: httpx.Client) -> None:
    """An update with no public message that keeps the status is a note for the team: no
    `incident_updates` entry, and no `updated_at` (incident, component, page) or
    `monitoring_at` of the public answers moves for it."""
    incident = declare(http, title="Errors", severity="high", affected_services=["api"],
                       public_message="Looking into it")
    post(http, incident, status="monitoring", public_message="Fixed, watching")
    window = declare(http, title="Disk swap", incident_type="maintenance",
                     affected_services=["db"], public_message="Swapping disks")
    before = {path: http.get(path).json() for path in DOCUMENTED}
    for incident_id in (incident, window):
        post(http, incident_id, message="internal only: the on-call swapped shifts")
        assert http.put(f"/api/v1/incidents/{incident_id}", headers=WRITER,
                        json={"internal_notes": "internal only"}).status_code == 200
    after = {path: http.get(path).json() for path in DOCUMENTED}
    assert after == before
    summary = after["/api/v2/summary.json"]
    [shown] = summary["incidents"]
    assert [u["body"] for u in shown["incident_updates"]] == [
        "Fixed, watching", "Looking into it"]
    [maintenance] = summary["scheduled_maintenances"]
    assert [u["body"] for u in maintenance["incident_updates"]] == ["Swapping disks"]
    # A public change moves them again; a status move without a message is one too.
    post(http, incident, status="identified")
    moved = http.get("/api/v2/summary.json").json()
    [shown] = moved["incidents"]
    assert [u["status"] for u in shown["incident_updates"]] == [
        "identified", "monitoring", "investigating"]
    assert shown["updated_at"] > summary["incidents"][0]["updated_at"]
    assert moved["page"]["updated_at"] > summary["page"]["updated_at"]
    api = next(c for c in moved["components"] if c["name"] == "api")
    assert api["updated_at"] > next(
        c for c in summary["components"] if c["name"] == "api")["updated_at"]


def test_open_maintenances_are_read_without_walking_the_past_ones(
        http: httpx.Client, services: Services) -> None:
    """The upcoming and active maintenances come from a query of the open ones alone (one
    for the summary): a store with years of completed maintenance costs them nothing."""
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    past = [declare(http, title=f"Past {n}", incident_type="maintenance",
                    affected_services=["db"]) for n in range(3)]
    for incident_id in past:
        post(http, incident_id, status="resolved", public_message="Done")
    upcoming = declare(http, title="Upgrade", incident_type="maintenance",
                       affected_services=["db"], start_time=soon)
    active = declare(http, title="Swap", incident_type="maintenance", affected_services=["db"])
    expected = http.get("/api/v2/summary.json").json()  # the read models have it all now
    asked: list[ListFilters] = []
    read: list[str] = []
    queries = copy.copy(services.queries)

    def listing(filters: ListFilters, **options: Any) -> Page:
        page = services.queries.list_incidents(filters, **options)
        asked.append(filters)
        read.extend(i["id"] for i in page.items)
        return page

    queries.list_incidents = listing  # type: ignore[method-assign]
    page = StatusPage(queries, services.service_queries, services.settings.base_url,
                      lambda: datetime.now(UTC))
    summary = page.summary()
    assert [m["id"] for m in summary["scheduled_maintenances"]] == [upcoming, active]
    assert summary["scheduled_maintenances"] == expected["scheduled_maintenances"]
    assert [f.incident_type for f in asked].count(("maintenance",)) == 1
    assert [m["id"] for m in page.maintenances(which="upcoming")] == [upcoming]
    assert [m["id"] for m in page.maintenances(which="active")] == [active]
    assert not set(past) & set(read)
