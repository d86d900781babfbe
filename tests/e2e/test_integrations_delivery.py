"""Integrations delivering from a running server (its deliverers run in the same process,
as `serve` runs them) to real receivers on loopback: every matching event once, in store
order, as stored or as an anonymous reader sees it; receivers that fail and come back;
one failing integration beside a healthy one; PagerDuty and mail end to end; replay,
pause and resume."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from domain.visibility import Audience
from infra.bootstrap import Services
from infra.settings import Settings
from tests.conftest import TOKENS, WRITER, delivering, make_settings
from tests.receivers import HttpReceiver, SmtpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
BASE = "/api/v1/integrations"
SERVICES = ("api", "db", "web")


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    return make_settings(database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
                         DELIVERY_RETRY_INITIAL_SECONDS="0.2",
                         DELIVERY_RETRY_MAX_SECONDS="1", SMTP_URL=smtp.url,
                         EMAIL_FROM="Status <status@example.com>")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    yield from delivering(settings)


@pytest.fixture
def receivers() -> Iterator[Callable[[], HttpReceiver]]:
    started: list[HttpReceiver] = []

    def make() -> HttpReceiver:
        receiver = HttpReceiver().start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def add(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post(BASE, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def webhook(http: httpx.Client, receiver: HttpReceiver, **body: Any) -> dict[str, Any]:
    created = add(http, kind="webhook", url=receiver.url, **body)
    receiver.secret = created["secret"]
    return created


def declare(http: httpx.Client, **fields: Any) -> str:
    body = {"title": f"Incident {random.randrange(10**6)}", **fields}
    response = http.post("/api/v1/incidents", json=body, headers=WRITER)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


def post_update(http: httpx.Client, incident_id: str, **fields: Any) -> None:
    response = http.post(f"/api/v1/incidents/{incident_id}/updates", json=fields,
                         headers=WRITER)
    assert response.status_code == 201, response.text


def change(http: httpx.Client, incident_id: str, **fields: Any) -> None:
    response = http.put(f"/api/v1/incidents/{incident_id}", json=fields, headers=WRITER)
    assert response.status_code == 200, response.text


class Commands:
    """Random but valid commands: incidents declared (some private), moved through the
    active states, resolved and reopened, their details and internal notes changed."""

    def __init__(self, http: httpx.Client, seed: int) -> None:
        self.http = http
        self.rng = random.Random(seed)
        self.status: dict[str, str] = {}

    def one(self) -> None:
        rng = self.rng
        if len(self.status) < 3 or rng.random() < 0.2:
            services = rng.sample(SERVICES, rng.randint(1, 2))
            incident = declare(self.http, is_public=rng.random() > 0.25,
                               severity=rng.choice(["critical", "high", "medium", "low"]),
                               affected_services=services, internal_notes="initial notes",
                               public_message="We are investigating")
            self.status[incident] = "investigating"
            return
        incident = rng.choice(list(self.status))
        roll = rng.random()
        if roll < 0.15:
            change(self.http, incident, internal_notes=f"notes {rng.random()}")
        elif roll < 0.25:
            change(self.http, incident, public_message=f"Public words {rng.random()}")
        elif self.status[incident] == "resolved":
            self.status[incident] = rng.choice(["investigating", "identified"])
            post_update(self.http, incident, status=self.status[incident],
                        public_message="Reopened", message="internal reason")
        else:
            self.status[incident] = rng.choice(
                ["identified", "monitoring", "resolved", "investigating"])
            post_update(self.http, incident, status=self.status[incident],
                        public_message=f"Now {self.status[incident]}",
                        message="internal detail")

    def run(self, count: int, pause: float = 0.0) -> None:
        for _ in range(count):
            self.one()
            if pause:
                time.sleep(pause)


def items_of(raw: bytes) -> list[bytes]:
    """The exact bytes of each document in an `{"items": [...]}` answer."""
    text = raw.decode()
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    found: list[bytes] = []
    while text[index] != "]":
        _, end = decoder.raw_decode(text, index)
        found.append(text[index:end].encode())
        index = end + 1 if text[end] == "," else end
    return found


def anonymous_documents(http: httpx.Client, incidents: list[str]) -> dict[str, bytes]:
    """Event id -> the document an anonymous reader gets from the incident's timeline."""
    found: dict[str, bytes] = {}
    for incident in incidents:
        response = http.get(f"/api/v1/incidents/{incident}/timeline")
        if response.status_code == 404:
            continue
        assert response.status_code == 200
        for document in items_of(response.content):
            found[json.loads(document)["id"]] = document
    return found


def stored_after(services: Services, after: int) -> list[bytes]:
    return [e.document for e in services.event_log.read(after, 100_000)]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def ids_of(documents: list[bytes]) -> list[str]:
    return [json.loads(d)["id"] for d in documents]


def test_200_commands_reach_each_receiver_once_in_store_order(
        http: httpx.Client, services: Services,
        receivers: Callable[[], HttpReceiver]) -> None:
    declare(http, title="Stored before any integration")
    internal, public, filtered = receivers(), receivers(), receivers()
    webhook(http, internal, include_internal=True)
    webhook(http, public)
    webhook(http, filtered, event_types=["resolved", "created"], services=["db"],
            min_severity="high")
    start = services.event_log.last_position()
    commands = Commands(http, seed=200)
    commands.run(200)

    stored = stored_after(services, start)
    internal.wait_for(len(stored))
    assert [r.body for r in internal.delivered()] == stored

    anonymous = anonymous_documents(http, list(commands.status))
    expected_public = [anonymous[i] for i in ids_of(stored) if i in anonymous]
    assert len(expected_public) < len(stored)  # private incidents, internal-only changes
    public.wait_for(len(expected_public))
    chosen = [d for d in stored if _matches_filters(services, d)]
    expected_filtered = [anonymous[i] for i in ids_of(chosen) if i in anonymous]
    assert expected_filtered
    filtered.wait_for(len(expected_filtered))
    time.sleep(0.5)  # anything more (a repeat) would show now
    assert [r.body for r in public.delivered()] == expected_public
    assert [r.body for r in filtered.delivered()] == expected_filtered
    for receiver in (internal, public, filtered):
        assert all(r.verified for r in receiver.received)
        assert len(set(receiver.ids())) == len(receiver.ids())
    for document in (r.body for r in public.delivered()):
        assert b"internal" not in document
        assert b"notes" not in document


def _matches_filters(services: Services, document: bytes) -> bool:
    event = json.loads(document)
    if event["type"].rpartition(".")[2] not in ("created", "resolved"):
        return False
    incident = services.queries.get_incident(event["subject"], audience=Audience.READER)
    assert incident is not None
    return "db" in incident["affected_services"] and incident["severity"] in ("high", "critical")


def test_a_receiver_down_for_30_s_gets_everything_in_order_once_it_is_back(
        http: httpx.Client, services: Services,
        receivers: Callable[[], HttpReceiver]) -> None:
    receiver = receivers()
    created = webhook(http, receiver, include_internal=True)
    receiver.stop()  # connections refused
    start = services.event_log.last_position()
    commands = Commands(http, seed=300)
    writer = threading.Thread(target=commands.run, args=(300, 0.1))
    writer.start()
    time.sleep(10)
    receiver.mode = "fail"  # back, but answering 500
    receiver.start()
    time.sleep(5)
    receiver.mode = "hang"  # accepting, never answering
    time.sleep(15)
    receiver.mode = "ok"
    receiver.released.set()
    writer.join()

    stored = stored_after(services, start)
    receiver.wait_for(len(stored), timeout=120)
    time.sleep(0.5)
    assert [r.body for r in receiver.delivered()] == stored
    assert all(r.verified for r in receiver.received)
    assert len(set(receiver.ids())) == len(stored)
    attempts = _all_attempts(http, created["id"])
    failed = [a for a in attempts if a["outcome"] == "failed"]
    errors = " ".join(a["error"] for a in failed)
    assert "cannot connect" in errors
    assert "HTTP 500" in errors
    assert "no answer within 10 s" in errors
    assert max(a["attempt"] for a in failed) > 1
    delivered = [a for a in attempts if a["outcome"] == "delivered"]
    assert sorted(a["event_id"] for a in delivered) == sorted(ids_of(stored))
    shown = http.get(f"{BASE}/{created['id']}", headers=ADMIN).json()
    assert shown["lag"] == 0
    assert shown["failing_since"] is None


def _all_attempts(http: httpx.Client, integration_id: str) -> list[dict[str, Any]]:
    attempts: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"{BASE}/{integration_id}/deliveries", params=params,
                        headers=ADMIN).json()
        attempts += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return attempts


def test_a_failing_integration_never_holds_back_another(
        http: httpx.Client, services: Services,
        receivers: Callable[[], HttpReceiver]) -> None:
    failing, healthy = receivers(), receivers()
    failing.mode = "fail"
    slow = webhook(http, failing, include_internal=True)
    fast = webhook(http, healthy, include_internal=True)
    start = services.event_log.last_position()
    commands = Commands(http, seed=30)
    writer = threading.Thread(target=commands.run, args=(150, 0.2))  # about 30 s
    writer.start()
    lags: list[int] = []
    held: list[int] = []
    while writer.is_alive():
        lags.append(http.get(f"{BASE}/{fast['id']}", headers=ADMIN).json()["lag"])
        held.append(http.get(f"{BASE}/{slow['id']}", headers=ADMIN).json()["lag"])
        time.sleep(0.5)
    writer.join()
    stored = stored_after(services, start)
    healthy.wait_for(len(stored))
    # "Near zero" in events: the healthy one is at most a few events behind at any time,
    # while the failing one holds everything since it started failing.
    assert len(lags) >= 20
    assert max(lags) <= 5, lags
    assert max(held) >= len(stored) - 5
    assert http.get(f"{BASE}/{slow['id']}", headers=ADMIN).json()["failing_since"] is not None
    failing.mode = "ok"
    failing.wait_for(len(stored))
    time.sleep(0.3)
    for receiver in (failing, healthy):
        assert [r.body for r in receiver.delivered()] == stored


def test_pagerduty_follows_an_incident_with_its_dedup_key(
        http: httpx.Client, receivers: Callable[[], HttpReceiver]) -> None:
    receiver = receivers()
    add(http, kind="pagerduty", url=receiver.url, routing_key="R0UTINGKEY")
    incident = declare(http, title="Checkout down", severity="critical",
                       affected_services=["checkout"])
    post_update(http, incident, status="identified", public_message="Found it")
    post_update(http, incident, status="resolved", public_message="Fixed")
    post_update(http, incident, status="investigating", public_message="Back again")
    sent = [r.json() for r in receiver.wait_for(4)]
    assert [(s["event_action"], s["dedup_key"]) for s in sent] == [
        ("trigger", incident), ("acknowledge", incident), ("resolve", incident),
        ("trigger", incident)]
    assert sent[0]["payload"]["severity"] == "critical"
    assert sent[0]["payload"]["source"] == "checkout"
    assert sent[0]["payload"]["summary"] == "Checkout down"


def test_mail_is_sent_per_event_and_threaded_by_incident(
        http: httpx.Client, smtp: SmtpReceiver) -> None:
    add(http, kind="email", to=["ops@example.com"], event_types=["created", "update_added"])
    incident = declare(http, title="Mail outage", public_message="Mail is slow")
    post_update(http, incident, status="monitoring", public_message="Recovering")
    (recipients, first), (_, second) = smtp.wait_for(2)
    assert recipients == ["ops@example.com"]
    assert first["Subject"] == "[Investigating] Mail outage"
    assert second["Subject"] == "[Monitoring] Mail outage"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]


def test_replay_pause_and_resume(http: httpx.Client, services: Services,
                                 receivers: Callable[[], HttpReceiver]) -> None:
    receiver = receivers()
    created = webhook(http, receiver, include_internal=True)
    path = f"{BASE}/{created['id']}"
    start = services.event_log.last_position()
    incident = declare(http, title="Replayed")
    receiver.wait_for(1)
    assert http.patch(path, json={"enabled": False}, headers=ADMIN).status_code == 200
    post_update(http, incident, status="identified", public_message="while paused")
    time.sleep(1.5)
    assert len(receiver.delivered()) == 1  # nothing while paused
    assert http.get(path, headers=ADMIN).json()["lag"] == 1
    assert http.patch(path, json={"enabled": True}, headers=ADMIN).status_code == 200
    receiver.wait_for(2)  # resumed where it stopped
    replayed = http.post(f"{path}/replay", json={"after": start}, headers=ADMIN)
    assert replayed.status_code == 202
    got = receiver.wait_for(4)
    time.sleep(0.3)
    stored = stored_after(services, start)
    assert [r.body for r in receiver.delivered()] == stored + stored
    assert [r.headers["webhook-id"] for r in got[2:]] == ids_of(stored)  # the same ids


def test_a_removed_integration_receives_and_records_nothing_more(
        http: httpx.Client, services: Services,
        receivers: Callable[[], HttpReceiver]) -> None:
    receiver = receivers()
    receiver.mode = "fail"
    receiver.delay = 2.0  # removed while an attempt is under way
    created = webhook(http, receiver)
    declare(http, title="Sent once")
    time.sleep(1.0)
    assert http.delete(f"{BASE}/{created['id']}", headers=ADMIN).status_code == 204
    receiver.mode = "ok"
    time.sleep(2.5)  # the attempt under way ended, and a follower still running retried
    declare(http, title="Not sent")
    time.sleep(1.5)
    assert receiver.delivered() == []
    assert len(receiver.received) == 1
    assert services.integrations.store.deliveries(created["id"], None, 10) == ([], None)
    assert services.deliverers.running() == []


def plain_text(mail: Any) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    text: str = part.get_content()
    return text


def test_a_postmortem_reaches_the_public_once_published_and_the_team_as_a_draft(
        http: httpx.Client, services: Services, receivers: Callable[[], HttpReceiver],
        smtp: SmtpReceiver) -> None:
    public = receivers()
    webhook(http, public, event_types=["postmortem_updated"])
    add(http, kind="email", to=["ops@example.com"], include_internal=True,
        event_types=["postmortem_updated"])
    incident = declare(http, title="Payments down")
    post_update(http, incident, status="resolved", public_message="Fixed")
    url = f"/api/v1/incidents/{incident}/postmortem"
    for body, published in (("SECRET draft", False), ("# Lessons learned", True)):
        answer = http.put(url, json={"body": body, "published": published}, headers=WRITER)
        assert answer.status_code == 200, answer.text
    (_, draft), (_, final) = smtp.wait_for(2)
    draft_text, final_text = (plain_text(m) for m in (draft, final))
    assert "Postmortem: Payments down" in draft_text
    assert "SECRET draft" in draft_text
    assert "# Lessons learned" in final_text
    # In store order: a draft delivered would be the first document received.
    received = public.wait_for(1)
    assert [r.json()["data"] for r in received] == [
        {"incident_id": incident, "body": "# Lessons learned", "published": True}]
    assert "SECRET" not in received[0].body.decode()
    assert "actor" not in received[0].json()
