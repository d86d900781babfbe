"""What an anonymous caller can learn of what it may not see, on SQLite and PostgreSQL:
nothing. A hidden incident answers exactly as an unknown id (also as it stood in the
past); private activity leaves every public feed as it was; the store's head (which counts
every write, private ones too) is told to nobody without a token; and a `store_position`
cookie of another store is ignored and expired rather than answered 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.incident import Incident
from domain.values import Status
from infra.bootstrap import Services, bootstrap
from tests.conftest import READER, WRITER, LiveServer, make_settings
from tests.servers import free_port

INCIDENTS = "/api/v1/incidents"
FEEDS = [f"{INCIDENTS}/rss/feed", f"{INCIDENTS}/atom/feed", f"{INCIDENTS}/rss/feed?service=api",
         f"{INCIDENTS}/atom/feed?include_resolved=false"]
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
