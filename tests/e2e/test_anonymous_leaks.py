"""What an anonymous caller can learn of what it may not see, on SQLite and PostgreSQL:
nothing. A hidden incident answers exactly as an unknown id (also as it stood in the
past); private activity leaves every public feed as it was; the store's head (which counts
every write, private ones too) is told to nobody without a token; a `store_position`
cookie of another store is ignored and expired rather than answered 400; and a write that
makes an incident private or deletes it sends public destinations (subscribers' mail,
public webhooks, Slack and email integrations) nothing, its new details least of all.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands.cloudevents import event_id as cloudevent_id
from domain.incident import Incident
from domain.values import Status
from infra.bootstrap import Services, bootstrap
from tests.conftest import READER, WRITER, LiveServer, make_settings
from tests.e2e.test_integrations_delivery import ADMIN, wait_until
from tests.e2e.test_subscribers import PUBLIC_BASE, confirm_through_mail, mails_to
from tests.receivers import HttpReceiver, Received, SmtpReceiver
from tests.servers import free_port

INCIDENTS = "/api/v1/incidents"
FEEDS = [f"{INCIDENTS}/rss/feed", f"{INCIDENTS}/atom/feed", f"{INCIDENTS}/rss/feed?service=api",
         f"{INCIDENTS}/atom/feed?include_resolved=false", f"{INCIDENTS}/feed.json"]
# Headers that differ between any two answers, whatever they answer.
PER_REQUEST = {"date", "x-request-id"}  # x-request-id: a new random one per answer


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A client without a token and without cookies."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = http.post(INCIDENTS, json={"title": "Checkout is down", **fields},
                         headers=WRITER)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def write(response: httpx.Response) -> None:
    assert response.status_code in (200, 201, 204), response.text


def unknown_like(incident_id: str) -> str:
    """An id of the same shape and length that names no incident."""
    tail = "zzzz" if not incident_id.endswith("zzzz") else "yyyy"
    return incident_id[:-4] + tail


def headers_of(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items() if k not in PER_REQUEST)


def assert_answers_as_unknown(client: httpx.Client, path: str, incident_id: str,
                              **params: str) -> None:
    """`path` (with `{}` for the id) answers for `incident_id` exactly as for an unknown
    id: status, headers and body (but for the id itself)."""
    unknown = unknown_like(incident_id)
    hidden = client.get(path.format(incident_id), params=params)
    missing = client.get(path.format(unknown), params=params)
    assert missing.status_code == 404, (path, missing.text)
    assert hidden.status_code == missing.status_code, (path, hidden.text)
    assert hidden.content.replace(incident_id.encode(), unknown.encode()) == missing.content, (
        path, hidden.text, missing.text)
    assert headers_of(hidden) == headers_of(missing), path


HIDDEN_PATHS = [f"{INCIDENTS}/{{}}", f"{INCIDENTS}/{{}}/timeline", f"{INCIDENTS}/{{}}/rss",
                f"{INCIDENTS}/{{}}/atom", "/incidents/{}"]


def hidden_incident(http: httpx.Client, case: str) -> tuple[dict[str, Any], str]:
    """An incident in the state `case` names, and an instant at which it stood otherwise
    (or the same way)."""
    incident = create(http, title=case, is_public=case in ("turned_private", "deleted"))
    url = f"{INCIDENTS}/{incident['id']}"
    if case == "turned_private":
        write(http.put(url, json={"is_public": False}, headers=WRITER))
    elif case == "deleted":
        write(http.delete(url, headers=WRITER))
    elif case == "private_then":
        write(http.put(url, json={"is_public": True}, headers=WRITER))
    return incident, incident["created_at"]


@pytest.mark.parametrize("case", ["private", "turned_private", "deleted", "private_then"])
def test_as_of_answers_as_an_unknown_id_for_what_may_not_be_seen(
    http: httpx.Client, anonymous: httpx.Client, case: str
) -> None:
    """Private all along, public then but private or deleted now, or public now but
    private then: as it stood then, the incident answers exactly as an unknown id."""
    incident, then = hidden_incident(http, case)
    assert_answers_as_unknown(anonymous, f"{INCIDENTS}/{{}}", incident["id"], as_of=then)
    # Before it existed, too.
    before = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert_answers_as_unknown(anonymous, f"{INCIDENTS}/{{}}", incident["id"], as_of=before)
    # A reader sees the past state (but of a deleted incident).
    seen = anonymous.get(f"{INCIDENTS}/{incident['id']}", headers=READER,
                         params={"as_of": then})
    assert seen.status_code == 200, seen.text
    assert seen.json()["title"] == case


@pytest.mark.parametrize("case", ["private", "turned_private", "deleted"])
def test_every_anonymous_path_answers_as_an_unknown_id_for_a_hidden_incident(
    http: httpx.Client, anonymous: httpx.Client, case: str
) -> None:
    incident, _ = hidden_incident(http, case)
    # Without a token, naming the hiding write's position (an anonymous reader who names
    # none is answered from the read tables as they stand, without waiting for it).
    anonymous.headers["Min-Position"] = http.cookies["store_position"]
    for path in HIDDEN_PATHS:
        assert_answers_as_unknown(anonymous, path, incident["id"])


def test_as_of_shows_what_is_public_then_and_now(
    http: httpx.Client, anonymous: httpx.Client
) -> None:
    incident, _ = hidden_incident(http, "private_then")
    latest = http.get(f"{INCIDENTS}/{incident['id']}").json()
    shown = anonymous.get(f"{INCIDENTS}/{incident['id']}",
                          params={"as_of": latest["updated_at"]})
    assert shown.status_code == 200, shown.text
    assert shown.json()["is_public"] is True
    assert "internal_notes" not in shown.json()


# ----------------------------------------------------------------------------------------
# feeds


def snapshot(client: httpx.Client, paths: list[str]) -> dict[str, tuple[Any, ...]]:
    """What a feed reader keeps of each feed: status, validators and the document."""
    taken = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        taken[path] = (response.headers["etag"], response.headers.get("last-modified"),
                       response.content)
    return taken


def save_past(services: Services, *incidents: Incident) -> None:
    """Stores aggregates whose events carry times in the past (so that a Last-Modified made
    of them would show at once) and waits for the read side."""
    services.commands.save(*incidents)
    assert services.barrier.wait(services.event_log.last_position(), timeout=30)


def private_activity(http: httpx.Client, services: Services, start: datetime,
                     shown: Incident | None = None) -> None:
    """A private incident's creation and updates, and internal-only edits of `shown`,
    both in the past (saved as aggregates) and now (over HTTP)."""
    hidden = Incident.declare(incident_id="incident-hidden-then", at=start, title="Hidden",
                              is_public=False, affected_services=("api",),
                              public_message="not yet public")
    hidden.add_update(at=start + timedelta(minutes=1), max_updates=100,
                      status=Status.IDENTIFIED, public_message="private news")
    hidden.change_details(at=start + timedelta(minutes=2), changes={"title": "Renamed"})
    changed = [hidden]
    if shown is not None:
        shown.change_details(at=start + timedelta(minutes=3),
                             changes={"internal_notes": "internal"})
        shown.add_update(at=start + timedelta(minutes=4), max_updates=100,
                         message="an internal message")
        changed.append(shown)
    save_past(services, *changed)

    now = create(http, title="Hidden now", is_public=False, affected_services=["api"],
                 public_message="not public")
    write(http.post(f"{INCIDENTS}/{now['id']}/updates", headers=WRITER,
                    json={"status": "identified", "public_message": "private update"}))
    write(http.put(f"{INCIDENTS}/{now['id']}", json={"title": "Hidden, renamed"},
                   headers=WRITER))
    if shown is not None:
        write(http.put(f"{INCIDENTS}/{shown.id}", json={"internal_notes": "more"},
                       headers=WRITER))
        write(http.post(f"{INCIDENTS}/{shown.id}/updates", json={"message": "internal"},
                        headers=WRITER))


def test_private_activity_leaves_every_public_feed_as_it_was(
    http: httpx.Client, anonymous: httpx.Client, services: Services
) -> None:
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    shown = Incident.declare(incident_id="incident-shown", at=hour_ago, title="Shown",
                             public_message="hello", affected_services=("api",))
    save_past(services, shown)
    paths = [*FEEDS, f"{INCIDENTS}/{shown.id}/rss", f"{INCIDENTS}/{shown.id}/atom"]
    before = snapshot(anonymous, paths)
    assert all(last_modified is not None for _, last_modified, _ in before.values())

    private_activity(http, services, hour_ago + timedelta(minutes=10), shown)

    assert snapshot(anonymous, paths) == before


def test_private_activity_leaves_an_empty_feed_as_it_was(
    http: httpx.Client, anonymous: httpx.Client, services: Services
) -> None:
    before = snapshot(anonymous, FEEDS)
    private_activity(http, services, datetime.now(UTC) - timedelta(hours=1))
    assert snapshot(anonymous, FEEDS) == before


# ----------------------------------------------------------------------------------------
# internal activity on a public incident


def public_answers(client: httpx.Client, incident_id: str) -> dict[str, tuple[Any, ...]]:
    """What an anonymous reader gets of a public incident (the incident, the list that
    holds it, its page): status, ETag and body of each."""
    taken = {}
    for path in (f"{INCIDENTS}/{incident_id}", INCIDENTS, f"/incidents/{incident_id}"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        taken[path] = (response.headers["etag"], response.content)
    return taken


def test_internal_activity_leaves_the_public_incident_as_it_was(
    http: httpx.Client, anonymous: httpx.Client
) -> None:
    """Internal notes, a note for the team (an update that says nothing public and keeps
    the status) and a draft postmortem change nothing the public gets of the incident, not
    even its `updated_at`, `version` or ETag; a reader sees when it last changed."""
    incident = create(http, public_message="Looking into it")
    url = f"{INCIDENTS}/{incident['id']}"
    write(http.post(f"{url}/updates", headers=WRITER,
                    json={"status": "resolved", "public_message": "Fixed"}))
    # Naming each write's position: an anonymous reader who names none may be answered
    # from read tables that have not reached it yet.
    anonymous.headers["Min-Position"] = http.cookies["store_position"]
    before = public_answers(anonymous, incident["id"])
    public = anonymous.get(url).json()

    write(http.put(url, json={"internal_notes": "the database again"}, headers=WRITER))
    write(http.post(f"{url}/updates", json={"message": "checked the replicas"},
                    headers=WRITER))
    last = http.put(f"{url}/postmortem", json={"body": "draft", "published": False},
                    headers=WRITER)
    write(last)
    anonymous.headers["Min-Position"] = http.cookies["store_position"]

    assert public_answers(anonymous, incident["id"]) == before
    kept = anonymous.get(url, headers={"If-None-Match": before[url][0]})
    assert kept.status_code == 304
    then = anonymous.get(url, params={"as_of": last.json()["updated_at"]})
    assert then.status_code == 200, then.text
    assert (then.json()["updated_at"], then.json()["version"]) == (
        public["updated_at"], public["version"])
    reader = http.get(url, headers=READER).json()
    assert reader["updated_at"] == last.json()["updated_at"] > public["updated_at"]
    assert reader["version"] == public["version"] + 3
    assert [u["message"] for u in reader["updates"]] == ["", "checked the replicas"]
    assert [u["public_message"] for u in public["updates"]] == ["Fixed"]

    # What the public sees changing moves its `updated_at`, version and ETag.
    published = http.put(f"{url}/postmortem", json={"body": "draft", "published": True},
                         headers=WRITER)
    write(published)
    anonymous.headers["Min-Position"] = http.cookies["store_position"]
    after = anonymous.get(url)
    assert after.headers["etag"] != before[url][0]
    assert (after.json()["updated_at"], after.json()["version"]) == (
        published.json()["updated_at"], public["version"] + 4)


# ----------------------------------------------------------------------------------------
# the store's head


def numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"[0-9]+", text)}


def positions_in(body: Any) -> list[str]:
    """The keys naming store positions anywhere in a JSON document."""
    if isinstance(body, dict):
        return [k for k in body if k in ("store_position", "position", "head")] + [
            p for v in body.values() for p in positions_in(v)]
    return []


def test_readiness_tells_store_positions_to_readers_only(database_url: str) -> None:
    services = bootstrap(make_settings(
        database_url, CLOUDEVENT_BROKER_URL=f"nats://127.0.0.1:{free_port()}"))
    services.start_projections()
    server = LiveServer(services)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            create(client)
            anonymous = httpx.get(f"{server.url}/readyz", timeout=30)
            assert anonymous.status_code == 200
            body = anonymous.json()
            assert body["status"] == "ready"
            assert positions_in(body) == []
            assert set(body["relay"]) == {"state", "broker", "lag", "last_error"}
            reader = client.get("/readyz", headers=READER).json()
            assert reader["store_position"] == services.event_log.last_position()
            assert {"position", "head", "lag"} <= set(reader["relay"])
    finally:
        server.stop()
        services.close()


def test_a_position_never_written_is_400_without_the_head(anonymous: httpx.Client,
                                                          http: httpx.Client) -> None:
    create(http)
    beyond = 123_456_789
    for response in (anonymous.get(INCIDENTS, params={"min_position": str(beyond)}),
                     anonymous.get(INCIDENTS, headers={"Min-Position": str(beyond)})):
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert numbers(response.json()["detail"]) == {beyond}


# ----------------------------------------------------------------------------------------
# a stale cookie


def expires_position_cookie(response: httpx.Response) -> bool:
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        morsel = cookie.get("store_position")
        if morsel is not None and morsel["max-age"] == "0" and morsel["path"] == "/":
            return True
    return False


def test_a_position_cookie_beyond_the_head_is_ignored_and_expired(
    http: httpx.Client, live_server: LiveServer, tmp_path: Path
) -> None:
    incident = create(http, affected_services=["api"])
    public_paths = ["/", INCIDENTS, f"{INCIDENTS}/status/summary", *FEEDS,
                    f"{INCIDENTS}/{incident['id']}/rss", f"{INCIDENTS}/{incident['id']}/atom",
                    f"{INCIDENTS}/{incident['id']}", f"/incidents/{incident['id']}"]
    for path in public_paths:
        response = httpx.get(f"{live_server.url}{path}", timeout=30,
                             headers={"Cookie": f"store_position={10**17}"})
        assert response.status_code == 200, (path, response.text)
        assert expires_position_cookie(response), path
        # A cookie the store has written is no reason to expire it.
        current = httpx.get(f"{live_server.url}{path}", timeout=30,
                            cookies={"store_position": "1"})
        assert current.status_code == 200, (path, current.text)
        assert not expires_position_cookie(current), path
    # Named explicitly, the same position is still refused.
    explicit = httpx.get(f"{live_server.url}{INCIDENTS}", timeout=30,
                         headers={"Min-Position": str(10**17)})
    assert explicit.status_code == 400

    # A browser that wrote to another instance on the same host (cookies ignore ports).
    other = bootstrap(make_settings(f"sqlite:///{tmp_path / 'other.db'}"))
    other.start_projections()
    other_server = LiveServer(other)
    other_server.start()
    try:
        with httpx.Client(timeout=30) as browser:
            for _ in range(5):
                write(browser.post(f"{other_server.url}{INCIDENTS}", headers=WRITER,
                                   json={"title": "elsewhere"}))
            assert int(browser.cookies["store_position"]) > 1
            page = browser.get(f"{live_server.url}/")
            assert page.status_code == 200, page.text
            assert "store_position" not in browser.cookies
            assert browser.get(f"{live_server.url}{INCIDENTS}").status_code == 200
    finally:
        other_server.stop()
        other.close()


# ----------------------------------------------------------------------------------------
# public destinations

SECRET_TITLE = "SECRET: customer ACME breach"
SECRET_MESSAGE = "ACME records were exposed"
SUBSCRIBER, TEAM = "someone@example.org", "team@example.com"


def message_ids(mails: list[Any]) -> list[str]:
    return [str(m["Message-ID"]).strip("<>").split("@")[0] for m in mails]


def mail_text(mail: EmailMessage) -> str:
    """A mail's headers and the decoded text of each of its parts."""
    parts = [part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"]
    return "\n".join([str(mail), *parts])


def bodies(received: list[Received]) -> str:
    return "\n".join(r.body.decode() for r in received)


def mailed(smtp: SmtpReceiver, address: str, event_id: str) -> bool:
    return event_id in message_ids(mails_to(smtp, address))


def posted(receiver: HttpReceiver, text: str) -> bool:
    return text in bodies(receiver.delivered())


@pytest.mark.parametrize("case", ["turned_private", "deleted"])
def test_public_destinations_get_nothing_of_an_incident_made_private_or_deleted(
        database_url: str, smtp: SmtpReceiver, case: str) -> None:
    """A public incident renamed and made private in one PUT, or deleted: confirmed
    subscribers (a real SMTP server) and public webhook, Slack and email integrations get
    no message about that write, and nothing of what it wrote; PagerDuty resolves the
    alert of a deleted incident, naming nothing but the incident."""
    services = bootstrap(make_settings(
        database_url, SMTP_URL=smtp.url, PUBLIC_BASE_URL=PUBLIC_BASE,
        EMAIL_FROM="Status <status@example.com>", INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true"))
    services.start_projections()
    services.start_delivery()
    server = LiveServer(services)
    server.start()
    hook, slack, pagerduty = HttpReceiver().start(), HttpReceiver().start(), HttpReceiver().start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for body in ({"kind": "webhook", "url": hook.url}, {"kind": "slack", "url": slack.url},
                         {"kind": "pagerduty", "url": pagerduty.url, "routing_key": "R0UTING"},
                         {"kind": "email", "to": [TEAM]}):
                added = http.post("/api/v1/integrations", json={"name": body["kind"], **body},
                                  headers=ADMIN)
                assert added.status_code == 201, added.text
                if body["kind"] == "webhook":
                    hook.secret = added.json()["secret"]
            assert http.post("/api/v1/subscribers",
                             json={"email": SUBSCRIBER, "services": []}).status_code == 202
            confirm_through_mail(http, smtp, SUBSCRIBER)

            incident = create(http, title="Checkout is down", affected_services=["api"],
                              public_message="Looking into it")
            url = f"{INCIDENTS}/{incident['id']}"
            if case == "turned_private":
                write(http.put(url, headers=WRITER, json={
                    "title": SECRET_TITLE, "public_message": SECRET_MESSAGE,
                    "affected_services": ["acme-vault"], "is_public": False}))
            else:
                write(http.delete(url, headers=WRITER))
            hiding = list(services.event_log.read_all(incident["id"]))[-1]
            assert hiding.type.endswith("updated" if case == "turned_private" else "deleted")
            # Every follower goes in store order: once the next incident reached a
            # destination, the hiding write was dealt with.
            marker = create(http, title="Search is slow", affected_services=["api"])
            created = [cloudevent_id(incident["id"], 1), cloudevent_id(marker["id"], 1)]
            for address in (TEAM, SUBSCRIBER):
                wait_until(partial(mailed, smtp, address, created[1]), 60,
                           f"the mail about the next incident to {address}")
            for receiver in (hook, slack, pagerduty):
                wait_until(partial(posted, receiver, marker["id"]), 60,
                           "the next incident at every receiver")
            time.sleep(0.5)  # anything more would show now

            with smtp.lock:
                mails = [mail_text(m) for _, m in smtp.messages]
            texts = [*mails, bodies(hook.delivered()), bodies(slack.delivered()),
                     bodies(pagerduty.delivered())]
            for text in texts:
                for secret in (SECRET_TITLE, SECRET_MESSAGE, "acme-vault", "Withdrawn",
                               json.loads(hiding.document)["id"]):
                    assert secret not in text, (secret, text)
            assert message_ids(mails_to(smtp, TEAM)) == created
            assert message_ids(mails_to(smtp, SUBSCRIBER))[1:] == created  # after the link
            assert hook.ids() == created
            assert len(slack.delivered()) == 2
            sent = [r.json() for r in pagerduty.delivered()]
            assert [(s["event_action"], s["dedup_key"]) for s in sent] == [
                ("trigger", incident["id"]),
                *([("resolve", incident["id"])] if case == "deleted" else []),
                ("trigger", marker["id"])]
            if case == "deleted":
                assert set(sent[1]) == {"routing_key", "event_action", "dedup_key"}
    finally:
        for receiver in (hook, slack, pagerduty):
            receiver.stop()
        server.stop()
        services.close()
