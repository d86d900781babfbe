"""Every stored event names who issued its command (CloudEvents extension `actor`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from commands.application import NewIncident
from infra.audit_chain import verify
from infra.bootstrap import Services, bootstrap
from tests.conftest import LiveServer, make_settings
from tests.e2e.test_metrics import samples, value
from tests.processes import run_cli

TOKENS = "ci:writer:ci-secret,writer:writer-secret,reader:reader-secret"
CI = {"Authorization": "Bearer ci-secret"}
WRITER = {"Authorization": "Bearer writer-secret"}
READER = {"Authorization": "Bearer reader-secret"}


@pytest.fixture
def named(database_url: str) -> Iterator[tuple[Services, httpx.Client]]:
    services = bootstrap(make_settings(database_url, API_TOKENS=TOKENS))
    services.start_projections()
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield services, client
    finally:
        server.stop()
        services.close()


def _events(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/events", params=params, headers=READER)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_each_event_names_the_token_that_issued_its_command(
    named: tuple[Services, httpx.Client],
) -> None:
    services, http = named
    first = http.post("/api/v1/incidents", headers=CI, json={"title": "by ci"}).json()
    url = f"/api/v1/incidents/{first['id']}"
    resolved = http.post(f"{url}/updates", headers=WRITER, json={
        "status": "resolved", "message": "fixed", "author": "Alice (on call)"})
    assert resolved.status_code == 201
    assert http.put(url, headers=CI, json={"severity": "high"}).status_code == 200
    services.commands.create(NewIncident(title="the service's own"))

    stored = _events(http)
    assert [(e["type"].rsplit(".", 1)[1], e["actor"]) for e in stored] == [
        ("created", "ci"), ("update_added", "writer"), ("resolved", "writer"),
        ("updated", "ci"), ("created", "system")]
    added = stored[1]
    assert added["data"]["author"] == "Alice (on call)"  # the client's free text stays

    assert [e["type"] for e in _events(http, actor="ci")] == [
        "com.example.incident.created", "com.example.incident.updated"]
    assert [e["actor"] for e in _events(http, actor="writer", type="resolved")] == ["writer"]
    assert [e["subject"] for e in _events(http, actor="system")] != []
    assert _events(http, actor="nobody") == []
    page = http.get("/api/v1/events", params={"actor": "ci", "limit": 1}, headers=READER).json()
    rest = _events(http, actor="ci", after=page["next_after"])
    assert [e["actor"] for e in page["items"] + rest] == ["ci", "ci"]
    assert http.get("/api/v1/events", params={"actor": "x" * 65},
                    headers=READER).status_code == 422

    timeline = http.get(f"{url}/timeline", headers=READER).json()["items"]
    assert [e["actor"] for e in timeline] == ["ci", "writer", "writer", "ci"]
    public = http.get(f"{url}/timeline").json()["items"]
    assert public
    assert all("actor" not in e for e in public)  # token names are not public
    assert verify(services.event_log).finding is None


def test_the_command_line_filters_by_actor(named: tuple[Services, httpx.Client]) -> None:
    services, http = named
    http.post("/api/v1/incidents", headers=CI, json={"title": "one"})
    http.post("/api/v1/incidents", headers=WRITER, json={"title": "two"})
    env = {"DATABASE_URL": services.settings.database_url or ""}
    lines = run_cli("events", "--actor", "ci", env=env).stdout.splitlines()
    assert [json.loads(line)["data"]["title"] for line in lines] == ["one"]


def test_a_made_token_acts_under_its_name(named: tuple[Services, httpx.Client]) -> None:
    services, http = named
    env = {"DATABASE_URL": services.settings.database_url or "", "API_TOKENS": TOKENS}
    made = run_cli("tokens", "create", "deploy-bot", "--role", "writer", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    created = http.post("/api/v1/incidents", json={"title": "deployed"},
                        headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201
    assert [e["data"]["title"] for e in _events(http, actor="deploy-bot")] == ["deployed"]


def test_events_stored_are_counted_by_type(named: tuple[Services, httpx.Client]) -> None:
    _, http = named
    name = "product_status_events_stored_total"
    before = samples(http.get("/metrics", headers=READER).text)
    incident = http.post("/api/v1/incidents", headers=CI, json={"title": "counted"}).json()
    http.post(f"/api/v1/incidents/{incident['id']}/updates", headers=CI,
              json={"status": "resolved"})
    after = samples(http.get("/metrics", headers=READER).text)
    for kind, added in (("created", 1), ("update_added", 1), ("resolved", 1)):
        full = f"com.example.incident.{kind}"
        assert value(after, name, type=full) - value(before, name, type=full) == added


def test_an_altered_actor_is_found(named: tuple[Services, httpx.Client]) -> None:
    services, http = named
    created = http.post("/api/v1/incidents", headers=CI, json={"title": "mine"})
    position = int(created.headers["Store-Position"])
    with services.database.transaction(write=True) as cursor:
        cursor.execute("UPDATE audit_chain SET actor = ? WHERE position = ?",
                       ("someone-else", position))
    finding = verify(services.event_log).finding
    assert finding is not None
    assert (finding.kind, finding.position) == ("altered", position)
