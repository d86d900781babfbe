"""POST /api/v1/integrations/alertmanager with Alertmanager's documented webhook payloads
(version 4, https://prometheus.io/docs/alerting/latest/configuration/#webhook_config):
one incident per alert group, updates when the firing alerts change, nothing for repeats,
resolved on `resolved`, a new incident when the group fires again; malformed bodies are
422 and record nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.bootstrap import Services, bootstrap
from infra.settings import SettingsError
from tests.alertmanager_payloads import alert, payload
from tests.conftest import LiveServer, make_settings
from tests.processes import ServeProcess

URL = "/api/v1/integrations/alertmanager"
TOKENS = "alertmanager:writer:am-secret,reader:reader-secret"
AM = {"Authorization": "Bearer am-secret"}
READER = {"Authorization": "Bearer reader-secret"}


A = alert("https://a.example.org", "1a30ba71cca2921f", service="checkout", region="eu-west")
B = alert("https://b.example.org", "2b41cb82ddb3a320", service="checkout", region="us-east")


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[Services, httpx.Client]]:
    services = bootstrap(make_settings(database_url, API_TOKENS=TOKENS))
    services.start_projections()
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield services, client
    finally:
        server.stop()
        services.close()


def send(http: httpx.Client, body: Any, expect: str) -> dict[str, Any]:
    answer = http.post(URL, json=body, headers=AM)
    assert answer.status_code == 200, answer.text
    receipt: dict[str, Any] = answer.json()
    assert receipt["outcome"] == expect, receipt
    return receipt


def events(services: Services) -> list[dict[str, Any]]:
    return [json.loads(e.document) for e in services.event_log.read(0, 10_000)]


def test_a_group_is_declared_updated_repeated_resolved_and_declared_again(
    served: tuple[Services, httpx.Client],
) -> None:
    services, http = served
    first = send(http, payload(A), "declared")["incident_id"]
    incident = http.get(f"/api/v1/incidents/{first}", headers=READER).json()
    assert incident["title"] == "BlackBox Probe Failure: https://a.example.org"
    assert incident["description"] == "Instance https://a.example.org has been down for over 5m."
    assert incident["severity"] == "critical"
    assert incident["incident_type"] == "outage"
    assert incident["affected_services"] == ["checkout"]
    assert incident["affected_regions"] == ["eu-west"]
    assert incident["is_public"] is False
    assert incident["status"] == "investigating"
    assert http.get(f"/api/v1/incidents/{first}").status_code == 404  # private by default

    # Alertmanager repeats the notification every repeat_interval: nothing is recorded.
    stored = len(events(services))
    assert send(http, payload(A), "unchanged")["incident_id"] == first
    assert len(events(services)) == stored

    # A second alert joins the group: one update.
    assert send(http, payload(A, B), "updated")["incident_id"] == first
    for _ in range(3):
        send(http, payload(A, B), "unchanged")
    incident = http.get(f"/api/v1/incidents/{first}", headers=READER).json()
    assert len(incident["updates"]) == 1
    assert incident["updates"][0]["message"].startswith("2 alerts firing:")
    assert incident["updates"][0]["author"] == "Alertmanager"
    # The first resolves, the second still fires: the firing set changed again.
    resolved_a = alert("https://a.example.org", "1a30ba71cca2921f", status="resolved",
                       service="checkout")
    send(http, payload(resolved_a, B), "updated")

    resolved_b = alert("https://b.example.org", "2b41cb82ddb3a320", status="resolved")
    send(http, payload(resolved_a, resolved_b), "resolved")
    send(http, payload(resolved_a, resolved_b), "unchanged")
    incident = http.get(f"/api/v1/incidents/{first}", headers=READER).json()
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] is not None
    assert [u["update_type"] for u in incident["updates"]] == [
        "status_update", "status_update", "resolution"]

    # The group fires again: a new incident.
    second = send(http, payload(A), "declared")["incident_id"]
    assert second != first
    send(http, payload(A), "unchanged")
    ours = [e for e in events(services)]
    assert [(e["subject"], e["type"].rsplit(".", 1)[1]) for e in ours] == [
        (first, "created"), (first, "update_added"), (first, "update_added"),
        (first, "update_added"), (first, "resolved"), (second, "created")]
    assert {e["actor"] for e in ours} == {"alertmanager"}  # the token's name


def test_groups_are_separate_incidents_and_an_unknown_resolved_group_records_nothing(
    served: tuple[Services, httpx.Client],
) -> None:
    services, http = served
    one = send(http, payload(A), "declared")["incident_id"]
    other = send(http, payload(A, group_key='{}:{alertname="Other"}'), "declared")
    assert other["incident_id"] != one
    resolved = alert("x", "ffff", status="resolved")
    assert send(http, payload(resolved, group_key="{}:{never}"), "unchanged") == {
        "outcome": "unchanged", "incident_id": None}
    assert len(events(services)) == 2


def test_an_operator_who_resolves_the_incident_first_gets_a_new_one_when_it_fires_again(
    served: tuple[Services, httpx.Client],
) -> None:
    _, http = served
    first = send(http, payload(A), "declared")["incident_id"]
    answer = http.post(f"/api/v1/incidents/{first}/updates", headers=AM,
                       json={"status": "resolved", "message": "fixed by hand"})
    assert answer.status_code == 201
    resolved = alert("https://a.example.org", "1a30ba71cca2921f", status="resolved")
    assert send(http, payload(resolved), "unchanged")["incident_id"] == first
    assert send(http, payload(A), "declared")["incident_id"] != first


def test_concurrent_deliveries_of_one_notification_record_once(
    served: tuple[Services, httpx.Client],
) -> None:
    services, http = served
    outcomes: list[str] = []

    def deliver(body: dict[str, Any]) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            answer = client.post(URL, json=body, headers=AM)
            assert answer.status_code == 200, answer.text
            outcomes.append(answer.json()["outcome"])

    for body, expected in ((payload(A), "declared"), (payload(A, B), "updated")):
        outcomes.clear()
        threads = [threading.Thread(target=deliver, args=(body,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == sorted([expected] + ["unchanged"] * 7)
    assert [e["type"].rsplit(".", 1)[1] for e in events(services)] == [
        "created", "update_added"]


def test_the_group_is_found_again_by_a_restarted_service(database_url: str) -> None:
    from api.alertmanager import AlertmanagerPayload
    from commands.alert_groups import Outcome

    def receive(body: dict[str, Any]) -> tuple[Outcome, str | None]:
        services = bootstrap(make_settings(database_url))
        try:
            received = services.alert_groups.receive(
                AlertmanagerPayload.model_validate(body).notification(public=False))
            return received.outcome, received.incident_id
        finally:
            services.close()

    outcome, first = receive(payload(A))
    assert outcome == Outcome.DECLARED
    assert receive(payload(A)) == (Outcome.UNCHANGED, first)
    assert receive(payload(A, B)) == (Outcome.UPDATED, first)
    resolved = alert("https://a.example.org", "1a30ba71cca2921f", status="resolved")
    assert receive(payload(resolved)) == (Outcome.RESOLVED, first)
    for _ in range(3):  # flapping: each firing is a new incident, found after a restart
        outcome, again = receive(payload(A))
        assert outcome == Outcome.DECLARED
        assert again != first
        assert receive(payload(resolved)) == (Outcome.RESOLVED, again)
    assert receive(payload(A, B))[0] == Outcome.DECLARED


def _malformed() -> list[tuple[str, Any]]:
    good = payload(A)

    def changed(path: list[Any], value: Any) -> dict[str, Any]:
        body = copy.deepcopy(good)
        target = body
        for step in path[:-1]:
            target = target[step]
        if value is _DROP:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return body

    return [
        ("version 3", changed(["version"], "3")),
        ("version as a number", changed(["version"], 4)),
        ("no version", changed(["version"], _DROP)),
        ("no groupKey", changed(["groupKey"], _DROP)),
        ("empty groupKey", changed(["groupKey"], "")),
        ("groupKey not text", changed(["groupKey"], ["x"])),
        ("unknown status", changed(["status"], "pending")),
        ("firing, but no alert fires", changed(["status"], "resolved")),
        ("no alerts", changed(["alerts"], [])),
        ("alerts not a list", changed(["alerts"], {"0": A})),
        ("an alert without fingerprint", changed(["alerts", 0, "fingerprint"], _DROP)),
        ("a label value not text", changed(["alerts", 0, "labels", "severity"], 5)),
        ("a label value too long", changed(["alerts", 0, "labels", "service"], "s" * 5000)),
        ("a NUL in a label", changed(["alerts", 0, "labels", "service"], "a\x00b")),
        ("startsAt not a time", changed(["alerts", 0, "startsAt"], "yesterday")),
        ("no commonLabels", changed(["commonLabels"], _DROP)),
        ("truncatedAlerts negative", changed(["truncatedAlerts"], -1)),
        ("a list", [good]),
        ("null", None),
    ]


_DROP = object()


def test_malformed_bodies_and_other_versions_are_refused_and_record_nothing(
    served: tuple[Services, httpx.Client],
) -> None:
    services, http = served
    for name, body in _malformed():
        answer = http.post(URL, json=body, headers=AM)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), name
    lone_surrogate = json.dumps(payload(alert("i", "f", service="\ud800"))).encode()
    assert b"\\ud800" in lone_surrogate
    for raw in (b"{", b"not json", lone_surrogate):
        answer = http.post(URL, content=raw, headers={**AM, "Content-Type": "application/json"})
        assert answer.status_code == 422, (raw, answer.text)
    for headers in ({}, {"Content-Type": "text/plain"}):
        answer = http.post(URL, content=b"" if not headers else b"version=4",
                           headers={**AM, **headers})
        assert answer.status_code == 422, (headers, answer.text)
    assert events(services) == []


def test_a_token_is_needed_and_a_reader_token_is_not_enough(
    served: tuple[Services, httpx.Client],
) -> None:
    services, http = served
    assert http.post(URL, json=payload(A)).status_code == 401
    assert http.post(URL, json=payload(A),
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.post(URL, json=payload(A), headers=READER).status_code == 403
    assert events(services) == []


def test_long_and_odd_labels_are_cut_to_an_incident_limits(
    served: tuple[Services, httpx.Client],
) -> None:
    _, http = served
    odd = alert("i", "f1", service="s" * 300, region="r" * 4000)
    odd["annotations"] = {"summary": "t" * 2000, "description": "d" * 60_000}
    many = [alert(f"i{n}", f"fp{n}", service=f"service-{n}") for n in range(80)]
    body = payload(odd, *many)
    body["commonAnnotations"] = odd["annotations"]
    incident_id = send(http, body, "declared")["incident_id"]
    incident = http.get(f"/api/v1/incidents/{incident_id}", headers=READER).json()
    assert len(incident["title"]) == 200
    assert len(incident["description"]) == 10_000
    assert incident["affected_services"][0] == "s" * 99 + "…"
    assert len(incident["affected_services"]) == 50
    assert incident["affected_regions"] == ["r" * 99 + "…"]


def test_alertmanager_public_makes_declared_incidents_public(database_url: str) -> None:
    with pytest.raises(SettingsError, match="ALERTMANAGER_PUBLIC"):
        make_settings(database_url, ALERTMANAGER_PUBLIC="sometimes")
    services = bootstrap(make_settings(database_url, API_TOKENS=TOKENS,
                                       ALERTMANAGER_PUBLIC="true"))
    services.start_projections()
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            incident_id = send(http, payload(A), "declared")["incident_id"]
            shown = http.get(f"/api/v1/incidents/{incident_id}")
            assert shown.status_code == 200
            assert shown.json()["is_public"] is True
            assert "internal_notes" not in shown.json()
    finally:
        server.stop()
        services.close()


@pytest.mark.postgres
def test_two_api_processes_agree_on_the_group(postgres_url: str, tmp_path: Path) -> None:
    """The same notifications delivered to two `serve` processes on one database at once
    (as retries of a notification can land on any of them): each change recorded once."""
    env = {"DATABASE_URL": postgres_url, "API_TOKENS": TOKENS,
           "RATE_LIMIT_WRITES_PER_MINUTE": "100000"}
    servers = [ServeProcess(env, tmp_path / f"serve-{n}.log") for n in range(2)]
    try:
        for body, expected in ((payload(A), "declared"), (payload(A, B), "updated"),
                               (payload(B), "updated"), (payload(A, B), "updated")):
            outcomes: list[str] = []

            def deliver(url: str, body: dict[str, Any] = body,
                        outcomes: list[str] = outcomes) -> None:
                answer = httpx.post(url + URL, json=body, headers=AM, timeout=60)
                assert answer.status_code == 200, answer.text
                outcomes.append(answer.json()["outcome"])

            threads = [threading.Thread(target=deliver, args=(server.url,))
                       for server in servers for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(outcomes) == sorted([expected] + ["unchanged"] * 5)
        stored = httpx.get(servers[0].url + "/api/v1/events", headers=READER,
                           params={"limit": 100}, timeout=60).json()["items"]
        assert [e["type"].rsplit(".", 1)[1] for e in stored] == [
            "created", "update_added", "update_added", "update_added"]
        assert len({e["subject"] for e in stored}) == 1
    finally:
        for server in servers:
            server.stop()


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*at, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*at, index))


def test_any_odd_value_anywhere_is_answered_without_a_server_error(
    served: tuple[Services, httpx.Client],
) -> None:
    """Every field of a documented payload, in turn, replaced by odd values: answered
    200 or 422 (problem+json), never 5xx; refused bodies record nothing."""
    services, http = served
    good = payload(A, B)
    odd: list[Any] = [None, 0, -1, 1e308, True, "", " ", "x" * 70_000, "\x00", "\u202e",
                      [], {}, ["a"], {"": ""}, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"]
    answered: dict[int, int] = {}
    for path in list(_paths(good))[1:]:
        for value in odd:
            body = copy.deepcopy(good)
            target = body
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            before = len(events(services))
            answer = http.post(URL, json=body, headers=AM)
            answered[answer.status_code] = answered.get(answer.status_code, 0) + 1
            assert answer.status_code in (200, 422), (path, value, answer.text)
            if answer.status_code == 422:
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert len(events(services)) == before, (path, value)
    assert answered[422] > answered.get(200, 0) > 0
