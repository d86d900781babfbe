"""The live event stream (`GET /api/v1/events/stream`) over a real server, on SQLite and on
PostgreSQL: order, resuming, visibility, heartbeats, slow clients, shutdown.

Every read of a stream is bounded by a deadline; heartbeats come every 0.2 s here, so a
read never blocks for long."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.datastructures import State

from api.sse import StreamConfig
from commands.application import NewIncident
from domain.visibility import Audience, event_for
from infra.bootstrap import Services, bootstrap
from infra.event_log import StoredCloudEvent
from infra.settings import Settings
from tests.conftest import READER, WRITER, LiveServer

STREAM = "/api/v1/events/stream"
CONFIG = StreamConfig(heartbeat=0.2, retry_ms=1500, queue_size=16, stall_timeout=1.0,
                      end_grace=0.5)
TIMEOUT = httpx.Timeout(10.0, read=5.0)
WAIT = 15.0  # seconds any one expectation may take


def public_document(document: bytes) -> bytes | None:
    return event_for(Audience.PUBLIC, document)


def app_state(server: LiveServer) -> State:
    app = server.server.config.app
    assert isinstance(app, FastAPI)
    return app.state


@pytest.fixture(autouse=True)
def quick_streams(live_server: LiveServer) -> None:
    app_state(live_server).event_stream = CONFIG


class Quiet(AssertionError):
    """Nothing (not even a heartbeat) came from the stream in time."""


@dataclass(frozen=True)
class Event:
    id: int
    data: bytes


class Sse:
    """A server-sent event parser over a streaming response (bytes, not text, so data
    compares byte for byte)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.chunks = response.iter_raw()
        self.buffer = b""
        self.comments: list[bytes] = []
        self.retry: int | None = None
        self.ended = False
        self.broken = False  # ended without the end of the chunked body

    def _line(self, deadline: float) -> bytes | None:
        while b"\n" not in self.buffer:
            if time.monotonic() > deadline:
                raise Quiet("no line from the stream in time")
            try:
                chunk = next(self.chunks)
            except StopIteration:
                self.ended = True
                return None
            except (httpx.RemoteProtocolError, httpx.ReadError):
                self.ended = self.broken = True
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def next(self, deadline: float) -> Event | None:
        """The next event, or None when the stream ended."""
        fields: dict[bytes, bytes] = {}
        data: list[bytes] = []
        while (line := self._line(deadline)) is not None:
            if not line:
                if data:
                    return Event(int(fields[b"id"]), b"\n".join(data))
                continue
            if line.startswith(b":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                data.append(value)
            elif name == b"retry":
                self.retry = int(value)
            else:
                fields[name] = value
        return None

    def take(self, count: int, within: float = WAIT) -> list[Event]:
        deadline = time.monotonic() + within
        events: list[Event] = []
        while len(events) < count:
            event = self.next(deadline)
            assert event is not None, f"the stream ended after {len(events)} of {count}"
            events.append(event)
        return events

    def until(self, position: int, within: float = WAIT) -> list[Event]:
        """Events up to and including the one with id `position`."""
        deadline = time.monotonic() + within
        events: list[Event] = []
        while not events or events[-1].id < position:
            event = self.next(deadline)
            assert event is not None, f"the stream ended before {position}"
            events.append(event)
        return events

    def rest(self, within: float = WAIT) -> list[Event]:
        """Every event until the stream ends (which it must, in time)."""
        deadline = time.monotonic() + within
        events: list[Event] = []
        while (event := self.next(deadline)) is not None:
            events.append(event)
        return events

    def idle_for(self, seconds: float) -> list[Event]:
        """Events that arrive within `seconds` (heartbeats keep lines coming)."""
        deadline = time.monotonic() + seconds
        events: list[Event] = []
        try:
            while (event := self.next(deadline)) is not None:
                events.append(event)
        except Quiet:
            pass
        return events


@contextmanager
def stream(server: LiveServer, headers: dict[str, str] | None = None,
           **params: Any) -> Iterator[Sse]:
    """An open stream, once the server answered its first bytes (the start is fixed)."""
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client, \
            client.stream("GET", STREAM, params=params, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        sse = Sse(response)
        deadline = time.monotonic() + WAIT
        while sse.retry is None:
            line = sse._line(deadline)
            assert line is not None, "the stream ended before its retry hint"
            if line.startswith(b"retry:"):
                sse.retry = int(line.partition(b":")[2])
        yield sse


def stored(services: Services) -> list[StoredCloudEvent]:
    return services.event_log.read(0, 100_000)


def create(http: httpx.Client, **fields: Any) -> str:
    body = {"title": "Checkout errors", "public_message": "Looking into it", **fields}
    response = http.post("/api/v1/incidents", json=body, headers=WRITER)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


def change(http: httpx.Client, incident_id: str, **fields: Any) -> None:
    response = http.put(f"/api/v1/incidents/{incident_id}", json=fields, headers=WRITER)
    assert response.status_code == 200, response.text


def post_update(http: httpx.Client, incident_id: str, status: str, message: str,
                public_message: str) -> None:
    response = http.post(f"/api/v1/incidents/{incident_id}/updates", headers=WRITER, json={
        "status": status, "message": message, "public_message": public_message})
    assert response.status_code == 201, response.text


def delete(http: httpx.Client, incident_id: str) -> None:
    response = http.delete(f"/api/v1/incidents/{incident_id}", headers=WRITER)
    assert response.status_code == 204, response.text


def position_of(services: Services, incident_id: str, type_suffix: str) -> int:
    return [e.position for e in stored(services)
            if e.subject == incident_id and e.type.endswith(type_suffix)][-1]


@dataclass(frozen=True)
class Story:
    public: str  # public throughout, with internal notes and internal messages
    private: str  # private throughout
    hidden_later: str  # public, then made private
    deleted: str  # public, then deleted
    shown_later: str  # private, then made public
    last: str  # public; its creation is the story's last event


def tell_story(http: httpx.Client) -> Story:
    public = create(http, internal_notes="SECRET-note-1")
    private = create(http, is_public=False, title="Private trouble",
                     internal_notes="SECRET-note-2")
    change(http, public, internal_notes="SECRET-note-3")  # nothing public left in it
    change(http, public, title="Checkout errors in EU")
    post_update(http, public, "identified", "SECRET-message-1", "Found the cause")
    post_update(http, private, "identified", "SECRET-message-2", "Private cause")
    post_update(http, public, "resolved", "SECRET-message-3", "Fixed")
    hidden_later = create(http, title="Briefly shown")
    change(http, hidden_later, is_public=False)
    change(http, hidden_later, title="Hidden now")
    deleted = create(http, title="Posted by mistake")
    delete(http, deleted)
    shown_later = create(http, is_public=False, title="Shown later")
    change(http, shown_later, is_public=True)
    last = create(http, title="Last one")
    return Story(public, private, hidden_later, deleted, shown_later, last)


def test_a_reader_receives_every_event_in_store_order_byte_for_byte(
    live_server: LiveServer, http: httpx.Client, services: Services
) -> None:
    with stream(live_server, READER) as live:
        assert live.retry == CONFIG.retry_ms
        tell_story(http)
        events = stored(services)
        received = live.take(len(events))
        assert live.idle_for(0.5) == []
    assert [(e.id, e.data) for e in received] == [(e.position, e.document) for e in events]
    with stream(live_server, READER, after=0) as replay:
        assert replay.take(len(events)) == received
    with stream(live_server, WRITER, after=events[4].position) as tail:
        assert tail.take(len(events) - 5) == received[5:]
    # Every stream that closed has stopped following the store.
    watch = app_state(live_server).services.store_watch
    deadline = time.monotonic() + WAIT
    while watch.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watch.waiting == 0


@pytest.mark.parametrize("how", ["header", "query", "header over after"])
def test_a_client_that_resumes_misses_nothing_and_sees_nothing_twice(
    live_server: LiveServer, http: httpx.Client, services: Services, how: str
) -> None:
    for n in range(3):
        incident = create(http, title=f"Incident {n}")
        post_update(http, incident, "identified", "internal", "public")
    with stream(live_server, READER, after=0) as first:
        before = first.take(4)
    for n in range(3):
        create(http, title=f"Later {n}")
    last_seen = str(before[-1].id)
    if how == "header":
        resumed = stream(live_server, {**READER, "Last-Event-ID": last_seen})
    elif how == "query":
        resumed = stream(live_server, READER, last_event_id=last_seen)
    else:  # EventSource reconnects to the same URL, with the header
        resumed = stream(live_server, {**READER, "Last-Event-ID": last_seen}, after=0)
    events = stored(services)
    with resumed as second:
        after = second.take(len(events) - len(before))
        assert second.idle_for(0.5) == []
    assert [e.id for e in before + after] == [e.position for e in events]
    assert [e.data for e in before + after] == [e.document for e in events]


def test_a_public_listener_sees_only_what_public_readers_may_see(
    live_server: LiveServer, http: httpx.Client, services: Services
) -> None:
    with stream(live_server) as live:
        story = tell_story(http)
        last = position_of(services, story.last, ".created")
        received = live.until(last)
    events = {e.position: e for e in stored(services)}
    hidden_at = position_of(services, story.hidden_later, ".updated")
    deleted_at = position_of(services, story.deleted, ".deleted")
    assert received, "nothing public arrived"
    for event in received:
        original = events[event.id]
        assert b"SECRET" not in event.data
        assert event.data == public_document(original.document)
        assert original.subject != story.private
        assert not (original.subject == story.hidden_later and event.id >= hidden_at)
        assert not (original.subject == story.deleted and event.id >= deleted_at)
    # The incident public throughout: every event with something public in it.
    expected = [p for p, e in events.items() if e.subject == story.public
                and public_document(e.document) is not None]
    assert [e.id for e in received if events[e.id].subject == story.public] == expected
    assert len(expected) == 5  # created, title, 2 update_added, resolved

    # Replayed later: exactly the events of the incidents public now.
    with stream(live_server, after=0) as replay:
        replayed = replay.until(last)
        assert replay.idle_for(0.5) == []
    now_public = {story.public, story.shown_later, story.last}
    assert [(e.id, e.data) for e in replayed] == [
        (p, document) for p, e in events.items()
        if e.subject in now_public and (document := public_document(e.document)) is not None
    ]


def test_an_incident_made_private_or_deleted_goes_silent_for_public_listeners(
    live_server: LiveServer, http: httpx.Client, services: Services
) -> None:
    shown = create(http, title="Shown")
    gone = create(http, title="Gone")
    with stream(live_server, after=0) as public:
        assert len(public.take(2)) == 2
        change(http, shown, is_public=False)
        delete(http, gone)
        change(http, shown, title="Still private", internal_notes="SECRET")
        post_update(http, shown, "identified", "SECRET", "private news")
        marker = create(http, title="Marker")
        received = public.until(position_of(services, marker, ".created"))
    assert [stored_event.subject for stored_event in stored(services)
            if stored_event.position in {e.id for e in received}] == [marker]


def test_heartbeats_arrive_while_the_store_is_idle(live_server: LiveServer) -> None:
    with stream(live_server) as idle:
        assert idle.idle_for(1.2) == []
        assert idle.comments.count(b": keep-alive") >= 3


def test_events_written_by_another_process_arrive(
    live_server: LiveServer, settings: Settings, services: Services
) -> None:
    other = bootstrap(settings)  # its commits tell this server's watch nothing
    try:
        with stream(live_server, READER) as live:
            written = other.commands.create(NewIncident(title="From elsewhere"))
            assert written.position is not None
            (event,) = live.take(1)
        assert event.id == written.position
        assert event.data == stored(services)[-1].document
    finally:
        other.close()


def test_a_client_that_stops_reading_is_dropped_while_others_keep_receiving(
    live_server: LiveServer, http: httpx.Client, services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="product_status.stream")
    # Well over what the sockets between a server and a client that reads nothing can
    # hold (a few MB on loopback), so the server has to notice.
    big = {"description": "d" * 10_000, "public_message": "p" * 10_000,
           "internal_notes": "i" * 10_000,
           "affected_services": [f"{n:03d}" + "s" * 96 for n in range(50)]}
    budget = loopback_buffering() * 3 // 2 + 1024 * 1024
    size = 0
    while size < budget:
        create(http, title="Big", **big)
        size += len(stored(services)[-1].document)
    backlog = stored(services)
    with stream(live_server, READER, after=0) as slow, \
            stream(live_server, READER, after=0) as reading:
        assert len(reading.take(len(backlog))) == len(backlog)
        deadline = time.monotonic() + WAIT
        while "dropped a live stream client" not in caplog.text:
            assert time.monotonic() < deadline, "the client that reads nothing was kept"
            time.sleep(0.05)
        news = create(http, title="After the drop")
        (latest,) = reading.take(1)
        assert latest.id == position_of(services, news, ".created")
        # The dropped client gets what was already on its way, in order, then the end.
        got = slow.rest()
    assert slow.ended
    assert 0 < len(got) < len(backlog)
    assert [(e.id, e.data) for e in got] == [
        (e.position, e.document) for e in backlog[:len(got)]]
    with stream(live_server, {**READER, "Last-Event-ID": str(got[-1].id)}) as resumed:
        rest = resumed.take(len(backlog) - len(got) + 1)
    assert [e.id for e in got + rest] == [e.position for e in stored(services)]


def loopback_buffering() -> int:
    """Bytes the kernel may hold between a server and a client that reads nothing: the
    sender's largest send buffer and the receiver's initial receive buffer."""
    try:
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        rmem_default = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 8 * 1024 * 1024
    return wmem_max + rmem_default


def test_streams_end_when_the_server_shuts_down(live_server: LiveServer) -> None:
    # What serve (and the test server) wire up: uvicorn waits for open responses.
    watch = app_state(live_server).services.store_watch
    watch.close_when(lambda: live_server.server.should_exit)
    with stream(live_server, READER) as live:
        started = time.monotonic()
        live_server.stop()
        assert live.rest(within=5.0) == []
        assert not live.broken
        assert time.monotonic() - started < 5.0
        assert not live_server.thread.is_alive()


def test_a_bad_last_event_id_or_token_is_refused(
    live_server: LiveServer, http: httpx.Client
) -> None:
    response = http.get(STREAM, headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert http.get(STREAM, params={"after": -1}).status_code == 422
    assert http.get(STREAM, headers={"Authorization": "Bearer nope"}).status_code == 401
