"""`/openapi.json` describes exactly what is sent: each JSON answer is the model documented
for it (no field it does not list, every field it requires), the public one without a
token and the reader's one with a token; a command answers what a read of the incident
then shows."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from api import schemas, status_schemas, subscriber_schemas
from api.alertmanager import AlertReceipt
from infra.settings import Settings
from tests.conftest import READER, TOKENS, WRITER, make_settings
from tests.e2e.test_anonymous_walk import ALERTMANAGER_NOTIFICATION
from tests.receivers import SmtpReceiver


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    """With a mail server, so that subscribing answers as documented."""
    return make_settings(database_url, SMTP_URL=smtp.url)


def documented(spec: dict[str, Any], method: str, path: str, status: str) -> set[str]:
    """The names of the models documented for this answer."""
    answer = spec["paths"][path][method]["responses"][status]
    schema = answer["content"]["application/json"]["schema"]
    return {option["$ref"].rsplit("/", 1)[1] for option in schema.get("anyOf", [schema])}


def matching(body: Any, names: set[str], module: ModuleType = schemas) -> set[str]:
    """Of the documented models, those the body is an instance of."""
    found = set()
    for name in names:
        model: type[BaseModel] = getattr(module, name)
        try:
            model.model_validate(body)
        except ValidationError:
            continue
        found.add(name)
    return found


def test_every_answer_is_the_model_documented_for_its_caller(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    created = http.post("/api/v1/incidents", headers=WRITER, json={
        "title": "Queue backlog", "internal_notes": "SECRET", "affected_services": ["q"]})
    assert created.status_code == 201
    incident = created.json()
    url = f"/api/v1/incidents/{incident['id']}"
    added = http.post(f"{url}/updates", headers=WRITER,
                      json={"message": "SECRET", "public_message": "Draining"})
    changed = http.put(url, headers=WRITER, json={"severity": "high"})
    http.post("/api/v1/incidents", headers=WRITER, json={"title": "Private", "is_public": False})
    # A resolved incident with a published postmortem, and one with a draft.
    drafted = http.post("/api/v1/incidents", headers=WRITER, json={"title": "Drafted"}).json()
    for target, published in ((url, True), (f"/api/v1/incidents/{drafted['id']}", False)):
        http.post(f"{target}/updates", headers=WRITER, json={"status": "resolved"})
        postmortem = http.put(f"{target}/postmortem", headers=WRITER,
                              json={"body": "# Lessons", "published": published})
        assert postmortem.status_code == 200, postmortem.text
    preview = http.post("/api/v1/postmortems/preview", headers=WRITER, json={"body": "*x*"})
    for response, method, path in ((created, "post", "/api/v1/incidents"),
                                   (added, "post", "/api/v1/incidents/{incident_id}/updates"),
                                   (changed, "put", "/api/v1/incidents/{incident_id}"),
                                   (postmortem, "put",
                                    "/api/v1/incidents/{incident_id}/postmortem"),
                                   (preview, "post", "/api/v1/postmortems/preview")):
        names = documented(spec, method, path, str(response.status_code))
        assert len(matching(response.json(), names)) == 1, path

    reads = [
        ("/api/v1/incidents/{incident_id}", url, {}, "PublicIncident", "Incident"),
        ("/api/v1/incidents/{incident_id}", f"/api/v1/incidents/{drafted['id']}", {},
         "PublicIncident", "Incident"),
        ("/api/v1/incidents/{incident_id}", url, {"as_of": changed.json()["updated_at"]},
         "PublicIncident", "Incident"),
        ("/api/v1/incidents", "/api/v1/incidents", {}, "PublicIncidentPage", "IncidentPage"),
        ("/api/v1/incidents/status/summary", "/api/v1/incidents/status/summary", {},
         "Summary", "Summary"),
        ("/api/v1/incidents/{incident_id}/timeline", f"{url}/timeline", {}, "Timeline",
         "Timeline"),
    ]
    for path, target, params, public, reader in reads:
        names = documented(spec, "get", path, "200")
        anonymous = http.get(target, params=params)
        assert anonymous.status_code == 200, anonymous.text
        assert matching(anonymous.json(), names) == {public}, path
        assert "SECRET" not in anonymous.text
        read = http.get(target, params=params, headers=READER)
        assert matching(read.json(), names) == {reader}, path
    events = http.get("/api/v1/events", headers=READER)
    assert matching(events.json(), documented(spec, "get", "/api/v1/events", "200")) == {
        "EventPage"}
    for params in ({}, {"severity": "low"}):  # figures, and nothing to measure
        report = http.get("/api/v1/reports/lifecycle", params=params, headers=READER)
        assert report.status_code == 200, report.text
        assert matching(report.json(), documented(
            spec, "get", "/api/v1/reports/lifecycle", "200")) == {"LifecycleReport"}
    refused = http.get("/api/v1/reports/lifecycle", params={"since": "soon"}, headers=READER)
    assert refused.status_code == 422
    answers = spec["paths"]["/api/v1/reports/lifecycle"]["get"]["responses"]
    assert {"401", "422"} <= set(answers)
    assert "403" not in answers  # any token's role is at least reader
    assert "application/problem+json" in answers["422"]["content"]
    # The JSON Feed, documented under its own content type; a badge as an SVG string.
    feed_path = "/api/v1/incidents/feed.json"
    answer = spec["paths"][feed_path]["get"]["responses"]["200"]["content"]
    assert list(answer) == ["application/feed+json"]
    assert answer["application/feed+json"]["schema"]["$ref"].endswith("/JsonFeed")
    feed = http.get(feed_path)
    assert feed.headers["content-type"] == "application/feed+json"
    assert feed.json()["items"]
    assert "SECRET" not in feed.text
    schemas.JsonFeed.model_validate(feed.json())
    badge = spec["paths"]["/badge.svg"]["get"]["responses"]["200"]["content"]
    assert list(badge) == ["image/svg+xml"]
    assert http.get("/badge.svg").headers["content-type"] == "image/svg+xml"


def test_a_command_answers_what_a_read_then_shows(http: httpx.Client) -> None:
    created = http.post("/api/v1/incidents", headers=WRITER, json={
        "title": "Search slow", "internal_notes": "n", "start_time": "2024-01-01T12:00:00.5Z",
        "affected_regions": ["eu"]})
    url = f"/api/v1/incidents/{created.json()['id']}"
    assert http.get(url, headers=READER).json() == created.json()
    for method, target, body in (("POST", f"{url}/updates",
                                  {"status": "resolved", "message": "m"}),
                                 ("PUT", url, {"internal_notes": "more"}),
                                 ("PUT", f"{url}/postmortem", {"body": "# Why"}),
                                 ("PUT", f"{url}/postmortem", {"body": "# Why",
                                                               "published": True})):
        answer = http.request(method, target, headers=WRITER, json=body)
        read = http.get(url, headers=READER)
        assert read.json() == answer.json()
        assert read.headers["etag"] == answer.headers["etag"]


def test_the_alertmanager_receiver_answers_its_documented_receipt(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    path = "/api/v1/integrations/alertmanager"
    assert documented(spec, "post", path, "200") == {"AlertReceipt"}
    for expected in ("declared", "unchanged"):
        answer = http.post(path, headers=WRITER, json=ALERTMANAGER_NOTIFICATION)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == set(AlertReceipt.model_fields)
        assert AlertReceipt.model_validate(body).outcome == expected
    refused = http.post(path, headers=WRITER, json={**ALERTMANAGER_NOTIFICATION, "version": "3"})
    assert refused.status_code == 422
    assert "422" in spec["paths"][path]["post"]["responses"]


def test_subscribers_answer_their_documented_models(http: httpx.Client,
                                                    smtp: SmtpReceiver) -> None:
    spec = http.get("/openapi.json").json()
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    base = "/api/v1/subscribers"
    signed = http.post(base, json={"email": "doc@example.org", "services": ["api"]})
    listed = http.get(base, headers=admin)
    smtp.wait_for(1)
    token = smtp.messages[0][1].get_content().split("token=")[1].split()[0]
    confirmed = http.post(f"{base}/confirm", json={"token": token})
    for response, method, path, status in (
            (signed, "post", base, "202"), (listed, "get", base, "200"),
            (confirmed, "post", f"{base}/confirm", "200")):
        assert response.status_code == int(status), response.text
        names = documented(spec, method, path, status)
        assert len(matching(response.json(), names, subscriber_schemas)) == 1, path
        model = getattr(subscriber_schemas, names.pop())
        if response.json().get("items"):
            assert set(response.json()["items"][0]) == set(
                model.model_fields["items"].annotation.__args__[0].model_fields)
        else:
            assert set(response.json()) == set(model.model_fields)


def test_the_status_reads_answer_their_documented_models(http: httpx.Client) -> None:
    """`/api/v1/services` and `/api/v2/*`: the same model with and without a token (the
    v2 answers are public whoever asks), and no field it does not list."""
    spec = http.get("/openapi.json").json()
    http.post("/api/v1/incidents", headers=WRITER, json={
        "title": "Queue backlog", "internal_notes": "SECRET", "affected_services": ["q"]})
    http.post("/api/v1/incidents", headers=WRITER, json={
        "title": "Disk swap", "incident_type": "maintenance", "affected_services": ["q"]})
    reads = {
        "/api/v1/services": "ServiceList", "/api/v2/summary.json": "V2Summary",
        "/api/v2/status.json": "V2Status", "/api/v2/components.json": "V2Components",
        "/api/v2/incidents.json": "V2Incidents",
        "/api/v2/incidents/unresolved.json": "V2Incidents",
        "/api/v2/scheduled-maintenances.json": "V2Maintenances",
        "/api/v2/scheduled-maintenances/upcoming.json": "V2Maintenances",
        "/api/v2/scheduled-maintenances/active.json": "V2Maintenances",
    }
    for path, name in reads.items():
        assert documented(spec, "get", path, "200") == {name}, path
        model: type[BaseModel] = getattr(status_schemas, name)
        for headers in ({}, READER):
            answer = http.get(path, headers=headers)
            assert answer.status_code == 200, answer.text
            model.model_validate(answer.json())
            assert "SECRET" not in answer.text
