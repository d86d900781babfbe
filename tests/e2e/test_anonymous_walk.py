"""An anonymous caller walks every route of the app and learns nothing hidden.

A public incident holds a unique marker in its internal notes (at creation and changed by
PUT) and in the internal messages of its status updates; a private incident and a deleted
one hold it everywhere (a published postmortem too), and a resolved public incident holds
it in its draft postmortem. Then every route of the app's own route table is called without a
token (a route without a case here fails the test), with each incident's id where the path
takes one, and an unknown id: the marker appears in no answer's body or headers, and the
hidden incidents' ids appear nowhere but in answers to requests that carry them, which must
then be the answer to an unknown id, word for word (the id only echoed back).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from infra.settings import Settings
from tests.alertmanager_payloads import alert, payload
from tests.conftest import READER, WRITER, LiveServer, make_settings
from tests.receivers import SmtpReceiver

STATIC = Path(__file__).parents[2] / "api" / "static"
ID = "{incident_id}"
INTEGRATION = "{integration_id}"  # asked as written: an anonymous caller names no integration
SUBSCRIBER = "{subscriber_id}"  # likewise


# Alertmanager's webhook payload (version 4): it takes a writer token.
ALERTMANAGER_NOTIFICATION = payload(alert("anonymous", "0123456789abcdef"))


@dataclass(frozen=True)
class Call:
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    stream: bool = False
    path: str | None = None  # a path of its own (a file under a mount)


def _moment(offset_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).isoformat()


# Every route of the app (method, path; a mount as MOUNT) and the calls made of it. A path
# with `{incident_id}` is called once per incident id.
def cases(marker: str, before: str) -> dict[tuple[str, str], list[Call]]:
    listing = [Call(), Call({"q": marker}), Call({"status": "investigating"}),
               Call({"service": "api"}), Call({"limit": 1})]
    feed = [Call(), Call({"include_resolved": "false"}), Call({"service": "api"})]
    return {
        ("GET", "/openapi.json"): [Call()],
        ("GET", "/docs"): [Call()],
        ("GET", "/docs/oauth2-redirect"): [Call()],
        ("GET", "/redoc"): [Call()],
        ("GET", "/healthz"): [Call()],
        ("GET", "/readyz"): [Call()],
        ("GET", "/api/v1/incidents"): listing,
        ("POST", "/api/v1/incidents"): [Call(json={"title": "anonymous"})],
        ("GET", "/api/v1/incidents/status/summary"): [Call()],
        ("GET", "/api/v1/incidents/rss/feed"): feed,
        ("GET", "/api/v1/incidents/atom/feed"): feed,
        ("GET", "/api/v1/incidents/feed.json"): feed,
        ("GET", "/badge.svg"): [Call(), Call({"service": "api"}), Call({"service": "nowhere"})],
        ("GET", f"/api/v1/incidents/{ID}/rss"): [Call()],
        ("GET", f"/api/v1/incidents/{ID}/atom"): [Call()],
        ("GET", f"/api/v1/incidents/{ID}"): [Call(), Call({"as_of": _moment(60)}),
                                             Call({"as_of": before})],
        ("PUT", f"/api/v1/incidents/{ID}"): [Call(json={"title": "anonymous"})],
        ("DELETE", f"/api/v1/incidents/{ID}"): [Call()],
        ("POST", f"/api/v1/incidents/{ID}/updates"): [Call(json={"message": "anonymous"})],
        ("PUT", f"/api/v1/incidents/{ID}/postmortem"): [
            Call(json={"body": "anonymous", "published": True})],
        ("POST", "/api/v1/postmortems/preview"): [Call(json={"body": f"{marker} preview"})],
        ("GET", f"/api/v1/incidents/{ID}/timeline"): [Call()],
        ("GET", "/api/v1/events"): [Call(), Call({"after": 0, "limit": 1000})],
        ("GET", "/api/v1/events/stream"): [Call({"after": 0}, stream=True)],
        ("GET", "/"): [Call()],
        ("GET", f"/incidents/{ID}"): [Call()],
        ("GET", "/dashboard/sign-in"): [Call()],
        ("GET", "/dashboard"): [Call(), Call({"status": "investigating"})],
        ("GET", "/dashboard/new"): [Call()],
        ("GET", f"/dashboard/incidents/{ID}"): [Call()],
        ("GET", "/dashboard/session"): [Call()],
        ("GET", "/dashboard/fragments/cards"): [Call()],
        ("GET", "/dashboard/fragments/overview"): [Call()],
        ("GET", f"/dashboard/fragments/incidents/{ID}"): [Call()],
        ("GET", f"/dashboard/fragments/incidents/{ID}/forms"): [Call()],
        ("MOUNT", "/static"): [Call(path=f"/static/{p.name}") for p in sorted(STATIC.iterdir())],
        ("GET", "/metrics"): [Call()],
        ("GET", "/api/v1/audit/head"): [Call()],
        ("GET", "/api/v1/integrations"): [Call()],
        ("POST", "/api/v1/integrations"): [Call(json={"kind": "webhook",
                                                      "url": "https://example.com/hook"})],
        ("GET", f"/api/v1/integrations/{INTEGRATION}"): [Call()],
        ("PATCH", f"/api/v1/integrations/{INTEGRATION}"): [Call(json={"enabled": False})],
        ("DELETE", f"/api/v1/integrations/{INTEGRATION}"): [Call()],
        ("GET", f"/api/v1/integrations/{INTEGRATION}/deliveries"): [Call()],
        ("POST", f"/api/v1/integrations/{INTEGRATION}/replay"): [Call(json={})],
        ("POST", f"/api/v1/integrations/{INTEGRATION}/rotate-secret"): [Call()],
        ("POST", f"/api/v1/integrations/{INTEGRATION}/test"): [Call()],
        ("POST", "/api/v1/integrations/alertmanager"): [Call(json=ALERTMANAGER_NOTIFICATION)],
        ("GET", "/api/v1/services"): [Call(), Call({"days": 365}), Call({"days": 1})],
        ("GET", "/history"): [Call(), Call({"cursor": "bm90LWEtY3Vyc29y"})],
        ("GET", "/api/v2/summary.json"): [Call()],
        ("GET", "/api/v2/status.json"): [Call()],
        ("GET", "/api/v2/components.json"): [Call()],
        ("GET", "/api/v2/incidents.json"): [Call()],
        ("GET", "/api/v2/incidents/unresolved.json"): [Call()],
        ("GET", "/api/v2/scheduled-maintenances.json"): [Call()],
        ("GET", "/api/v2/scheduled-maintenances/upcoming.json"): [Call()],
        ("GET", "/api/v2/scheduled-maintenances/active.json"): [Call()],
        ("GET", "/dashboard/integrations"): [Call()],
        ("GET", "/dashboard/fragments/integrations"): [Call()],
        ("GET", "/api/v1/reports/lifecycle"): [Call(), Call({"service": f"{marker}-service"}),
                                               Call({"severity": "urgent"})],
        ("GET", "/dashboard/reports"): [Call(), Call({"service": "api"})],
        ("GET", "/dashboard/fragments/reports"): [Call(), Call({"service": "api"})],
        ("POST", "/api/v1/subscribers"): [Call(json={"email": "walker@example.com",
                                                    "services": ["api"]})],
        ("GET", "/api/v1/subscribers"): [Call()],
        ("DELETE", f"/api/v1/subscribers/{SUBSCRIBER}"): [Call()],
        ("POST", "/api/v1/subscribers/confirm"): [Call(json={"token": marker})],
        ("POST", "/api/v1/subscribers/unsubscribe"): [Call(json={"token": marker}),
                                                      Call(params={"token": marker})],
        ("POST", "/subscribe"): [Call(json={"email": "walker@example.com"})],
        ("GET", "/subscribe/confirm"): [Call(), Call({"token": "unknown"})],
        ("POST", "/subscribe/confirm"): [Call()],
        ("GET", "/subscribe/unsubscribe"): [Call(), Call({"token": "unknown"})],
        ("POST", "/subscribe/unsubscribe"): [Call({"token": "unknown"})],
    }


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD aside), a mount as MOUNT."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = str(route.path)
        if isinstance(route.original_route, Mount):
            found.add(("MOUNT", path))
        else:
            found |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return found


@dataclass(frozen=True)
class Answer:
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str

    def text(self) -> str:
        return "\n".join([f"{k}: {v}" for k, v in self.headers] + [self.body])

    def with_id(self, incident_id: str) -> Answer:
        """The answer with `incident_id` written as `{id}` (the Date header left out: it
        tells the second, not the incident; and X-Request-Id, new and random per answer)."""
        def swap(text: str) -> str:
            return text.replace(incident_id, "{id}")
        return Answer(swap(self.url), self.status,
                      tuple((k, swap(v)) for k, v in self.headers
                            if k not in ("date", "x-request-id")),
                      swap(self.body))


def read_stream(client: httpx.Client, url: str, params: dict[str, Any],
                until: bytes) -> Answer:
    """A live stream read until `until` came and a second more passed quietly (at most
    20 s in all)."""
    body = b""
    deadline = time.monotonic() + 20
    with client.stream("GET", url, params=params,
                       timeout=httpx.Timeout(10.0, read=1.0)) as response:
        chunks = response.iter_raw()
        while time.monotonic() < deadline:
            try:
                body += next(chunks)
            except httpx.ReadTimeout:
                if until in body:
                    break
            except StopIteration:
                break
        headers = tuple(response.headers.multi_items())
        return Answer(str(response.url), response.status_code, headers,
                      body.decode("utf-8", "replace"))


@dataclass
class World:
    marker: str
    public: str
    hidden: list[str]  # the private and the deleted incident
    unknown: str
    before: str  # a moment when the hidden incidents existed and were not yet deleted
    last_public_event: int  # of the public incident
    team_note: int  # the public incident's last event: a note for the team


def declare(http: httpx.Client, **fields: Any) -> str:
    response = http.post("/api/v1/incidents", json=fields, headers=WRITER)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


def write(http: httpx.Client, method: str, url: str, **fields: Any) -> int:
    """The write's store position."""
    response = http.request(method, url, json=fields or None, headers=WRITER)
    assert response.status_code in (200, 201, 204), response.text
    return int(response.headers["store-position"])


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    """With a mail server, so that subscribing works (and subscribers exist to be hidden)."""
    return make_settings(database_url, SMTP_URL=smtp.url)


@pytest.fixture
def world(http: httpx.Client, live_server: LiveServer) -> World:
    marker = f"MARKER{uuid.uuid4().hex}"
    # A confirmed subscriber whose address carries the marker (so it must appear nowhere).
    store = live_server.services.subscribers.store
    confirmation = store.subscribe(f"{marker}@example.com", ["api"])
    assert confirmation is not None
    assert store.confirm(confirmation.token)
    everywhere = {"title": f"{marker} title", "description": f"{marker} description",
                  "public_message": f"{marker} public", "internal_notes": f"{marker} notes",
                  "affected_services": ["api", f"{marker}-service"],
                  "affected_regions": [f"{marker}-region"]}
    public = declare(http, title="Checkout errors", public_message="We are looking into it",
                     internal_notes=f"{marker} notes at declaration",
                     affected_services=["api"], affected_regions=["eu"])
    private = declare(http, **everywhere, is_public=False)
    deleted = declare(http, **everywhere)
    positions: dict[str, tuple[int, int]] = {}  # the last public event, the team's note
    for incident in (public, private, deleted):
        url = f"/api/v1/incidents/{incident}"
        write(http, "PUT", url, internal_notes=f"{marker} notes changed")
        write(http, "POST", f"{url}/updates", message=f"{marker} internal message",
              public_message="Still looking")
        identified = write(http, "POST", f"{url}/updates", status="identified",
                           message=f"{marker} cause found")
        # A note for the team: the public learns nothing of it, not even that it was written.
        note = write(http, "POST", f"{url}/updates", message=f"{marker} internal only")
        positions[incident] = (identified, note)
    for incident in (private, deleted):
        url = f"/api/v1/incidents/{incident}"
        write(http, "POST", f"{url}/updates", status="resolved", message=f"{marker} fixed")
        write(http, "PUT", f"{url}/postmortem", body=f"# {marker} postmortem", published=True)
    drafted = declare(http, title="Resolved, its postmortem a draft")
    write(http, "POST", f"/api/v1/incidents/{drafted}/updates", status="resolved")
    write(http, "PUT", f"/api/v1/incidents/{drafted}/postmortem", body=f"{marker} draft",
          published=False)
    write(http, "PUT", f"/api/v1/incidents/{private}", title=f"{marker} retitled")
    time.sleep(0.01)
    before = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    write(http, "DELETE", f"/api/v1/incidents/{deleted}")
    last_public_event, team_note = positions[public]
    # As the reader sees them, so the marker is known to be there to be hidden.
    assert marker in http.get(f"/api/v1/incidents/{public}", headers=READER).text
    assert marker in http.get(f"/api/v1/incidents/{drafted}", headers=READER).text
    assert private in http.get("/api/v1/incidents", headers=READER).text
    return World(marker, public, [private, deleted], "incident-" + uuid.uuid4().hex,
                 before, last_public_event, team_note)


Asked = tuple[str, str, int]  # method, path, which call


def walk(client: httpx.Client, world: World
         ) -> Iterator[tuple[Asked, str | None, Answer]]:
    """Every call of every case: (which call, the incident id it carries, its answer)."""
    frame = f"id: {world.last_public_event}\n".encode()
    for (method, path), calls in cases(world.marker, world.before).items():
        verb = "GET" if method == "MOUNT" else method
        ids: list[str | None] = ([world.public, *world.hidden, world.unknown]
                                 if ID in path else [None])
        for incident_id in ids:
            url = path.replace(ID, incident_id or "")
            for n, call in enumerate(calls):
                asked = (method, path, n)
                if call.stream:
                    yield asked, incident_id, read_stream(client, url, call.params, frame)
                    continue
                response = client.request(verb, call.path or url, params=call.params,
                                          json=call.json)
                yield asked, incident_id, Answer(str(response.url), response.status_code,
                                                 tuple(response.headers.multi_items()),
                                                 response.text)


def test_every_route_of_the_app_has_a_case(live_server: LiveServer) -> None:
    app = live_server.server.config.app
    assert isinstance(app, FastAPI)
    assert route_table(app) == set(cases("marker", _moment()))


def test_an_anonymous_caller_learns_nothing_hidden(live_server: LiveServer,
                                                   world: World) -> None:
    answers: dict[Asked, list[tuple[str | None, Answer]]] = {}
    with httpx.Client(base_url=live_server.url, timeout=30) as anonymous:
        for asked, carried, answer in walk(anonymous, world):
            assert answer.status < 500, answer
            answers.setdefault(asked, []).append((carried, answer))
    leaks = []
    for group in answers.values():
        unknown = next((a for i, a in group if i == world.unknown), None)
        for carried, answer in group:
            text = answer.text()
            if world.marker in text:
                leaks.append(f"marker in {answer.url}")
            for hidden in world.hidden:
                if hidden not in text:
                    continue
                if carried != hidden:
                    leaks.append(f"hidden id {hidden} in {answer.url}")
                elif unknown is None or answer.with_id(hidden) != unknown.with_id(
                        world.unknown):
                    leaks.append(f"{answer.url} is not the answer to an unknown id")
            if carried in world.hidden and unknown is not None and \
                    answer.with_id(carried) != unknown.with_id(world.unknown):
                leaks.append(f"{answer.url} tells a hidden incident from an unknown one")
    assert leaks == []
    shown = [a for _, group in answers.items() for i, a in group if i == world.public]
    # The walk saw the public incident (so the hidden ones were looked for where it shows).
    assert any(a.status == 200 and "Checkout errors" in a.body for a in shown)
    stream = next(a for group in answers.values() for _, a in group
                  if a.url.split("?")[0].endswith("/events/stream"))
    assert f"id: {world.last_public_event}\n" in stream.body
    assert f"id: {world.team_note}\n" not in stream.body
