"""A token's reads of the JSON list (api/reader_answers.py), over HTTP on SQLite and
PostgreSQL: kept and shared by every token holder at one position, answered without
routing once a reader was answered the URL (the same bytes and headers as the route),
never to an anonymous caller nor to an invalid token, private to the reader, and still
covering every write committed before it asked, whichever process took it, and the clock
(a response falls late without a write)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.answer_cache import PublicAnswers
from api.reader_answers import ReaderAnswers
from commands.application import NewIncident
from domain.visibility import Audience
from infra.bootstrap import Services, bootstrap
from infra.settings import Settings
from tests.clock import Clock
from tests.conftest import READER, TOKENS, WRITER, LiveServer

INCIDENTS = "/api/v1/incidents"
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}


def declare(http: httpx.Client, **fields: Any) -> str:
    created = http.post(INCIDENTS, headers=WRITER, json={"title": "t", **fields})
    assert created.status_code == 201, created.text
    incident_id: str = created.json()["id"]
    return incident_id


def app_state(server: LiveServer) -> Any:
    app: Any = server.server.config.app
    return app.state


def kept(server: LiveServer) -> tuple[PublicAnswers, ReaderAnswers]:
    state = app_state(server)
    return state.public_answers, state.reader_answers


def reader_renders(answers: PublicAnswers) -> int:
    """The readings of readers' answers (keys `(key, Audience.READER)`)."""
    return sum(count for key, count in answers.renders.items() if is_readers(key))


def is_readers(key: Hashable) -> bool:
    return isinstance(key, tuple) and len(key) == 2 and key[1] is Audience.READER


def heads(response: httpx.Response) -> dict[str, str]:
    """An answer's headers but those new in each answer."""
    return {k: v for k, v in response.headers.items() if k not in ("date", "x-request-id")}


def raw_heads(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """`heads`, as sent: in order, as spelt."""
    return [(k, v) for k, v in response.headers.raw
            if k.lower() not in (b"date", b"x-request-id")]


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
def script(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A client that only reads, so sends no `store_position` cookie (a script with a
    token and no cookie jar; `http` writes, and keeps the cookie its writes set)."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def test_a_readers_list_is_kept_shared_by_every_token_and_private(
        http: httpx.Client, script: httpx.Client, live_server: LiveServer) -> None:
    shown = declare(http, title="Public one")
    private = declare(http, title="Private one", is_public=False)
    first = script.get(INCIDENTS, headers=READER)
    assert ids(first) == [private, shown]
    assert first.headers["cache-control"] == "private, no-store"
    assert first.headers["vary"] == "Authorization, Cookie, Min-Position"
    assert "etag" not in first.headers
    assert "internal_notes" in first.text
    public, readers = kept(live_server)
    renders, served = reader_renders(public), readers.served
    assert renders >= 1
    # One reading at this position, for every token holder (any token sees the same).
    for headers in (READER, WRITER, ADMIN) * 7:
        again = script.get(INCIDENTS, headers=headers)
        assert again.content == first.content
        assert heads(again) == heads(first)
    assert reader_renders(public) == renders
    assert readers.served == served + 21  # all answered without routing
    # Never the anonymous caller's answer, nor the reader's to the anonymous caller.
    anonymous = script.get(INCIDENTS)
    assert ids(anonymous) == [shown]
    assert "internal_notes" not in anonymous.text
    assert anonymous.headers["cache-control"].startswith("public")
    assert private not in script.get(INCIDENTS).text
    assert ids(script.get(INCIDENTS, headers=READER)) == [private, shown]
    # A write moves the read models: the next token read (naming no position) shows it,
    # read once, then kept again.
    later = declare(http, title="Later", is_public=False)
    assert ids(script.get(INCIDENTS, headers=READER)) == [later, private, shown]
    assert reader_renders(public) == renders + 1
    assert ids(script.get(INCIDENTS, headers=ADMIN)) == [later, private, shown]
    assert reader_renders(public) == renders + 1
    assert later not in script.get(INCIDENTS).text


def test_answered_without_routing_a_reader_gets_what_the_route_sends(
        http: httpx.Client, script: httpx.Client, live_server: LiveServer) -> None:
    for n in range(5):
        declare(http, title=f"Incident {n}", is_public=n % 2 == 0,
                internal_notes="notes", severity="critical")
    page_one = f"{INCIDENTS}?limit=2"
    cursor = script.get(page_one, headers=READER).json()["next_cursor"]
    _, readers = kept(live_server)
    for path in (page_one, f"{INCIDENTS}?limit=2&cursor={cursor}", INCIDENTS,
                 f"{INCIDENTS}?status=investigating&severity=critical"):
        for asked in ({}, {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}):
            headers = {**READER, **asked}
            readers.urls.clear()  # the route answers (and remembers the URL)
            served = readers.served
            routed = script.get(path, headers=headers)
            assert routed.status_code == 200, routed.text
            assert readers.served == served
            fast = script.get(path, headers=headers)
            assert readers.served == served + 1, path  # answered without routing
            assert fast.content == routed.content, path
            assert raw_heads(fast) == raw_heads(routed), (path, asked)
    # What the fast path does not answer goes to the route: a position named, a bad
    # parameter (never remembered), a cookie naming a position.
    served = readers.served
    position = http.post(INCIDENTS, headers=WRITER, json={"title": "p"}).headers[
        "store-position"]
    asking: list[dict[str, Any]] = [
        {"headers": {**READER, "Min-Position": position}},
        {"headers": READER, "params": {"min_position": position}},
        {"headers": {**READER, "Cookie": f"store_position={position}"}}]
    for naming in asking:
        read = script.get(INCIDENTS, **naming)
        assert read.status_code == 200
        assert read.json()["items"][0]["title"] == "p"
    assert script.get(f"{INCIDENTS}?limit=0", headers=READER).status_code == 422
    assert script.get(f"{INCIDENTS}?limit=0", headers=READER).status_code == 422
    assert readers.served == served


def test_an_invalid_token_is_refused_on_a_url_kept_for_readers(
        http: httpx.Client, script: httpx.Client, live_server: LiveServer) -> None:
    private = declare(http, is_public=False)
    assert private in script.get(INCIDENTS, headers=READER).text
    _, readers = kept(live_server)
    served = readers.served
    for headers in ({"Authorization": "Bearer not-a-token"},
                    {"Authorization": f"Basic {TOKENS['reader']}"},
                    {"Authorization": "Bearer"},
                    {"Authorization": TOKENS["reader"]}):
        refused = script.get(INCIDENTS, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert private not in refused.text
    assert readers.served == served
    assert script.get(INCIDENTS, headers=READER).status_code == 200
    assert readers.served == served + 1


def test_a_token_read_shows_writes_made_through_another_process(
        http: httpx.Client, services: Services, follower_server: LiveServer) -> None:
    """A script with a token, naming no position, writes through one process and reads
    through another: every read shows the write answered before it, kept answer or not."""
    declare(http, title="Before")
    with httpx.Client(base_url=follower_server.url, timeout=30) as other:
        warm = other.get(INCIDENTS, headers=READER)
        assert ids(warm)
        assert other.get(INCIDENTS, headers=READER).content == warm.content
        _, readers = kept(follower_server)
        served = readers.served
        assert served >= 1
        for n in range(10):
            written = declare(http, title=f"Written elsewhere {n}", is_public=n % 2 == 0)
            assert ids(other.get(INCIDENTS, headers=READER))[0] == written, n
            assert ids(other.get(INCIDENTS, headers=WRITER))[0] == written, n
        assert readers.served >= served + 10  # the second read of each: no routing
        # A write straight into the store (through no API at all) counts as much.
        direct = services.commands.create(NewIncident(title="Straight into the store"))
        assert ids(other.get(INCIDENTS, headers=READER))[0] == direct.incident_id


def test_a_readers_kept_list_turns_late_when_a_response_falls_due(
        settings: Settings) -> None:
    """The response's derived fields count time: a kept answer holds until the first of
    them would change, not until the next write."""
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    built = bootstrap(settings, clock=clock)
    built.start_projections()
    server = LiveServer(built)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as writer, \
                httpx.Client(base_url=server.url, timeout=30) as http:
            incident = declare(writer, title="Due in 15 minutes", severity="critical")

            def flags() -> tuple[bool, bool]:
                (item,) = http.get(INCIDENTS, headers=READER).json()["items"]
                assert item["id"] == incident
                return item["response_breached"], item["update_overdue"]

            assert flags() == (False, False)
            clock.move(minutes=15)  # due at this moment: not late yet
            assert flags() == (False, False)
            public, _ = kept(server)
            renders = reader_renders(public)
            assert flags() == (False, False)
            assert reader_renders(public) == renders  # kept
            clock.move(microseconds=1)
            assert flags() == (True, False)  # late, without a write
            clock.move(minutes=15)
            assert flags() == (True, True)  # and the public heard nothing for 30 minutes
            assert flags() == (True, True)
            assert "response_breached" not in http.get(INCIDENTS).text
            _, readers = kept(server)
            assert readers.served >= 3  # the fast path, too, minds the clock
    finally:
        server.stop()
        built.close()
