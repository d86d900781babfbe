"""Answers for a crowd (api/answer_cache.py), the JSON Feed and the badges, over HTTP on
SQLite and PostgreSQL: anonymous reads are kept per read-model position and shared, answer
304 to their ETag, tell CDNs how long to keep them and what they vary by, and still show a
writer its own write at once."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from api.answer_cache import Answer, Answers, PublicAnswers
from infra.bootstrap import bootstrap
from infra.settings import Settings
from tests.conftest import READER, WRITER, LiveServer, make_settings

INCIDENTS = "/api/v1/incidents"
JSON_FEED = f"{INCIDENTS}/feed.json"
RSS = f"{INCIDENTS}/rss/feed"
ATOM_FEED = f"{INCIDENTS}/atom/feed"
ATOM = "{http://www.w3.org/2005/Atom}"
SVG = "{http://www.w3.org/2000/svg}"
DEADLINE = 30.0
SERVICES = "/api/v1/services"
STATUSPAGE = tuple(f"/api/v2/{name}.json" for name in (
    "summary", "status", "components", "incidents", "incidents/unresolved",
    "scheduled-maintenances", "scheduled-maintenances/upcoming",
    "scheduled-maintenances/active"))
ANONYMOUS_READS = ("/", INCIDENTS, f"{INCIDENTS}/status/summary", JSON_FEED, RSS,
                   "/badge.svg", "/badge.svg?service=api", SERVICES, f"{SERVICES}?days=7",
                   *STATUSPAGE, "/history")
# The reads whose answer a reader's token changes (private incidents, internal fields).
TOKEN_READS = (INCIDENTS, f"{INCIDENTS}/status/summary", SERVICES, f"{SERVICES}?days=7")


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Feeds name their own URL: behind one address every process names the same.
    return make_settings(database_url, PUBLIC_BASE_URL="https://status.example.com")


def declare(http: httpx.Client, **fields: Any) -> str:
    created = http.post(INCIDENTS, headers=WRITER, json={"title": "t", **fields})
    assert created.status_code == 201, created.text
    incident_id: str = created.json()["id"]
    return incident_id


def public_answers(server: LiveServer) -> PublicAnswers:
    app: Any = server.server.config.app
    found: PublicAnswers = app.state.public_answers
    return found


def badge_text(response: httpx.Response) -> list[str]:
    """The badge's texts, from a strict XML parse of the SVG."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    assert int(root.attrib["width"]) > 0
    assert root.attrib["height"] == "20"
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_the_json_feed_has_the_required_fields_and_the_rss_feeds_items(
        http: httpx.Client) -> None:
    shown = declare(http, title="Checkout <errors> & more", public_message="Looking",
                    affected_services=["checkout"], severity="high")
    private = declare(http, title="Private one", is_public=False)
    deleted = declare(http, title="Deleted one")
    out_of_feeds = declare(http, title="Not in feeds", rss_enabled=False)
    assert http.delete(f"{INCIDENTS}/{deleted}", headers=WRITER).status_code == 204
    response = http.get(JSON_FEED)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/feed+json"
    feed = response.json()
    # JSON Feed 1.1: version, title and items are required; each item an id and content.
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str)
    assert feed["title"]
    assert feed["feed_url"] == "https://status.example.com" + JSON_FEED
    assert isinstance(feed["items"], list)
    for item in feed["items"]:
        assert isinstance(item["id"], str)
        assert item["id"]
        assert isinstance(item.get("content_text", item.get("content_html")), str)
        assert item["date_published"].endswith("Z")
    ids = [item["id"].rsplit("/", 1)[1] for item in feed["items"]]
    assert ids == [shown]
    for hidden in (private, deleted, out_of_feeds):
        assert hidden not in response.text
    item = feed["items"][0]
    assert item["title"] == "Checkout <errors> & more - Investigating"
    assert item["content_text"] == "Looking"
    assert item["_incident"] == {"status": "investigating", "severity": "high",
                                 "incident_type": item["_incident"]["incident_type"],
                                 "services": ["checkout"]}
    # The same items, in the same order, as the RSS feed, with the same options.
    rss = ET.fromstring(http.get(RSS).content)
    assert [g.text for g in rss.iter("guid")] == [i["id"] for i in feed["items"]]
    assert http.get(JSON_FEED, params={"service": "nowhere"}).json()["items"] == []
    assert http.get(JSON_FEED, params={"max_items": 0}).status_code == 422


def test_badges_are_valid_svg_and_count_only_public_incidents(http: httpx.Client) -> None:
    assert badge_text(http.get("/badge.svg")) == ["status", "operational"]
    # Private and deleted incidents never count, and a service only they name is unknown.
    declare(http, is_public=False, severity="critical", affected_services=["secret-svc"])
    deleted = declare(http, severity="critical", affected_services=["gone-svc"])
    assert http.delete(f"{INCIDENTS}/{deleted}", headers=WRITER).status_code == 204
    assert badge_text(http.get("/badge.svg")) == ["status", "operational"]
    for name in ("secret-svc", "gone-svc", "nowhere"):
        assert badge_text(http.get("/badge.svg", params={"service": name})) == [
            name, "unknown"]
    declare(http, severity="low", affected_services=["search"])
    assert badge_text(http.get("/badge.svg")) == ["status", "degraded"]
    assert badge_text(http.get("/badge.svg", params={"service": "search"})) == [
        "search", "degraded"]
    declare(http, severity="critical", affected_services=["api"])
    assert badge_text(http.get("/badge.svg")) == ["status", "major outage"]
    assert badge_text(http.get("/badge.svg", params={"service": "api"})) == [
        "api", "major outage"]
    assert badge_text(http.get("/badge.svg", params={"service": "checkout"})) == [
        "checkout", "unknown"]
    # A name is text, never markup.
    odd = '<script>alert(1)</script> & "x"'
    response = http.get("/badge.svg", params={"service": odd})
    assert badge_text(response) == [odd, "unknown"]
    assert b"<script>" not in response.content
    assert http.get("/badge.svg", params={"service": ""}).status_code == 422
    assert http.get("/badge.svg", params={"service": "x" * 101}).status_code == 422


def test_a_maintenance_in_progress_is_no_outage_anywhere_the_public_looks(
        http: httpx.Client) -> None:
    """Badges, the status page, the JSON summary and the Statuspage answers agree: a
    maintenance under way, however severe, puts its service under maintenance, and no
    outage shows."""
    declare(http, title="Cache swap", incident_type="maintenance", severity="critical",
            affected_services=["cache"])
    assert badge_text(http.get("/badge.svg")) == ["status", "under maintenance"]
    assert badge_text(http.get("/badge.svg", params={"service": "cache"})) == [
        "cache", "under maintenance"]
    page = http.get("/").text
    assert '<h1 id="overall">Service under maintenance</h1>' in page
    assert "<p>0 active incidents, 1 maintenance in progress." in page
    assert "Major outage" not in page
    assert '<span class="state state-maintenance">Under maintenance</span>' in page
    summary = http.get(f"{INCIDENTS}/status/summary").json()
    assert set(summary["active_by_severity"].values()) == {0}
    assert summary["maintenance"] == {"scheduled": 0, "in_progress": 1}
    assert summary["services"] == [{"name": "cache", "state": "maintenance"}]
    assert http.get("/api/v2/status.json").json()["status"]["indicator"] == "none"
    assert [c["status"] for c in http.get("/api/v2/components.json").json()[
        "components"]] == ["under_maintenance"]
    # An incident beside it is what the banner and the overall badge tell; the service
    # under maintenance stays so, and an incident of it outweighs its maintenance.
    declare(http, severity="low", affected_services=["search"])
    assert badge_text(http.get("/badge.svg")) == ["status", "degraded"]
    page = http.get("/").text
    assert '<h1 id="overall">Some systems are degraded</h1>' in page
    assert "<p>1 active incident, 1 maintenance in progress." in page
    assert badge_text(http.get("/badge.svg", params={"service": "cache"})) == [
        "cache", "under maintenance"]
    declare(http, severity="high", affected_services=["cache"])
    assert badge_text(http.get("/badge.svg", params={"service": "cache"})) == [
        "cache", "major outage"]
    assert badge_text(http.get("/badge.svg")) == ["status", "major outage"]


def heads(response: httpx.Response) -> dict[str, str]:
    """An answer's headers but those new in each answer."""
    return {k: v for k, v in response.headers.items() if k not in ("date", "x-request-id")}


def test_anonymous_reads_answer_304_and_tell_caches_how_long(http: httpx.Client) -> None:
    incident = declare(http, affected_services=["api"])
    for path in (*ANONYMOUS_READS, f"{INCIDENTS}/{incident}", f"/incidents/{incident}"):
        first = http.get(path)
        assert first.status_code == 200, path
        etag = first.headers["etag"]
        cache_control = first.headers["cache-control"]
        assert cache_control.startswith("public, max-age="), path
        vary = {v.strip() for v in first.headers["vary"].split(",")}
        assert {"Cookie", "Min-Position"} <= vary, path
        # Only where a token shows more does the answer vary by it.
        assert ("Authorization" in vary) == path.startswith(INCIDENTS + "/incident") or (
            path in TOKEN_READS), path
        again = http.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert http.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
        kept = http.get(path)  # answered without routing (ServeKept): the same answer
        assert kept.content == first.content
        assert heads(kept) == heads(first), path
        assert heads(again) == {k: v for k, v in heads(first).items()
                                if k not in ("content-length", "content-type")}, path
    for path in ("/", INCIDENTS, "/badge.svg", SERVICES, "/api/v2/summary.json"):
        cache_control = http.get(path).headers["cache-control"]
        assert "s-maxage=" in cache_control
        assert "stale-while-revalidate=" in cache_control
    # With a token: never stored by a shared cache, and never the anonymous answer.
    for path in (*TOKEN_READS, f"{INCIDENTS}/{incident}"):
        read = http.get(path, headers=READER)
        assert read.headers["cache-control"] == "private, no-store"
        assert "Authorization" in read.headers["vary"]
        # (the same bytes where no private incident shows yet: counts, services)
        assert read.content != http.get(path).content or path.endswith("summary") or (
            path.startswith(SERVICES))
    assert "internal_notes" in http.get(INCIDENTS, headers=READER).text
    assert "internal_notes" not in http.get(INCIDENTS).text
    private = declare(http, is_public=False)
    assert private in http.get(INCIDENTS, headers=READER).text
    assert private not in http.get(INCIDENTS).text
    assert http.get(f"{INCIDENTS}/{private}").status_code == 404
    hidden = declare(http, is_public=False, affected_services=["hidden-service"])
    assert "hidden-service" in http.get(SERVICES, headers=READER).text
    for path in (SERVICES, *STATUSPAGE):
        assert "hidden-service" not in http.get(path).text, path
        assert hidden not in http.get(path).text, path


@pytest.fixture
def still_server(settings: Settings) -> Iterator[tuple[httpx.Client, LiveServer]]:
    """A server whose clock stands still, so the status page's minute never turns."""
    moment = datetime.now(UTC)
    built = bootstrap(settings, clock=lambda: moment)
    built.start_projections()
    server = LiveServer(built)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, server
    finally:
        server.stop()
        built.close()


def test_one_answer_is_read_per_position_and_shared(
    still_server: tuple[httpx.Client, LiveServer]
) -> None:
    http, live_server = still_server
    declare(http, title="First")
    first = http.get("/")
    answers = public_answers(live_server)
    # The status page is kept per position and minute (its day bars count minutes).
    page = next(k for k in reversed(answers.answers.entries)
                if isinstance(k, tuple) and k[0] == "page" and not isinstance(k[1], str))
    renders = answers.renders[page]
    kept = answers.answers.get(page)
    assert kept is not None
    for _ in range(20):
        again = http.get("/")
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
    assert answers.renders[page] == renders
    assert answers.answers.get(page) is kept  # the same object, served to all
    # A write moves the read model: the next read reads again, once.
    declare(http, title="Second one")
    moved = http.get("/")
    assert "Second one" in moved.text
    assert moved.headers["etag"] != first.headers["etag"]
    assert answers.renders[page] == renders + 1
    http.get("/")
    assert answers.renders[page] == renders + 1


def self_link(response: httpx.Response) -> str:
    """The URL a feed names itself by: the JSON Feed's `feed_url`, the RSS channel's or
    the Atom feed's link `rel="self"`."""
    if response.headers["content-type"] == "application/feed+json":
        url: str = response.json()["feed_url"]
        return url
    root = ET.fromstring(response.content)
    links = [e.get("href", "") for e in root.iter(f"{ATOM}link") if e.get("rel") == "self"]
    assert len(links) == 1
    return links[0]


def test_a_feed_is_kept_by_its_validated_parameters_not_by_its_url(
        http: httpx.Client, live_server: LiveServer) -> None:
    """Parameters a feed does not take, and other spellings of those it takes, neither
    cost a reading nor show in the feed: it is kept, and names itself, by what its
    parameters mean (on PUBLIC_BASE_URL), so a crowd sending junk shares one answer."""
    incident = declare(http, title="Junk-proof", public_message="m", affected_services=["a"])
    http.get("/")  # the writer's read: the read models are past the write
    answers = public_answers(live_server)
    base = "https://status.example.com"
    one = f"{INCIDENTS}/{incident}"
    # Each feed, the spellings of one of its parameter sets, and the URL it names itself by.
    spellings: list[tuple[str, list[list[tuple[str, str]]], str]] = [
        (RSS, [[]], RSS),
        (ATOM_FEED, [[("include_resolved", "true"), ("max_items", "20")]], ATOM_FEED),
        (JSON_FEED, [[("min_position", "1")]], JSON_FEED),
        (RSS, [[("service", "b"), ("include_resolved", "0"), ("service", "a"),
                ("max_items", "05"), ("service", "b")],
               [("max_items", "5"), ("service", "a"), ("service", "b"),
                ("include_resolved", "false")]],
         f"{RSS}?include_resolved=false&max_items=5&service=a&service=b"),
        (f"{one}/rss", [[], [("max_items", "100")]], f"{one}/rss"),
        (f"{one}/atom", [[("max_items", "7")], [("max_items", "007")]],
         f"{one}/atom?max_items=7"),
        (f"{one}/atom", [[("max_items", "100")]], f"{one}/atom"),
    ]
    tags: dict[str, str] = {}
    with httpx.Client(base_url=live_server.url, timeout=30) as anonymous:
        for path, queries, named in spellings:
            before = sum(answers.renders.values())
            sent: list[httpx.Response] = []
            junk: list[str] = []
            for n in range(100):
                token = secrets.token_hex(6)
                junk += [f"x{token}", f"junk{token}"]
                query = [*queries[n % len(queries)], (f"x{token}", f"junk{token}")]
                sent.append(anonymous.get(path, params=tuple(query)))
            assert sum(answers.renders.values()) == before + 1, path
            first = sent[0]
            assert first.status_code == 200, first.text
            for response in sent:
                assert response.content == first.content, path
                assert response.headers["etag"] == first.headers["etag"]
            assert not [j for j in junk if j.encode() in first.content], path
            assert self_link(first) == base + named
            tags[named] = first.headers["etag"]
    # Other parameters, other bytes (if only the URL the feed names itself by): other ETags.
    assert len(set(tags.values())) == len(tags)


def test_answers_kept_per_minute_are_read_again_when_the_minute_turns(
        settings: Settings) -> None:
    """`/` and the services' day bars count minutes up to now: a quiet store does not keep
    them at the minute they were first read."""
    now = [datetime(2026, 3, 10, 12, 0, 10, tzinfo=UTC)]
    built = bootstrap(settings, clock=lambda: now[0])
    built.start_projections()
    server = LiveServer(built)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as writer:
            declare(writer, title="Ongoing", affected_services=["api"],
                    start_time="2026-03-10T11:00:00Z")
            position = writer.cookies["store_position"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.get("/", params={"min_position": position})  # the read models are there

            def today() -> tuple[int, str]:
                (api,) = http.get(SERVICES).json()["items"]
                return api["days"][-1]["minutes_affected"], http.get("/").headers["etag"]

            first = today()
            assert first[0] == 61  # 11:00 to the end of 12:00
            assert today() == first  # kept: the same answers within the minute
            now[0] = datetime(2026, 3, 10, 12, 30, 10, tzinfo=UTC)
            # The first readers of the new minute are answered the previous minute's
            # answers while the new ones are read (stale while revalidating); then the new.
            assert today() == first  # the previous minute's, while the new is read
            deadline = time.monotonic() + DEADLINE
            while (later := today()) != (91, later[1]) or later[1] == first[1]:
                assert later[0] in (61, 91), later  # the previous minute's, or the new
                assert time.monotonic() < deadline, later
                time.sleep(0.05)
            # (and the page's bar tooltip counts the minutes too: a new page)
            # The previous minute's answers are no longer kept: nobody is answered them.
            minutes = {k[-1] for k in public_answers(server).answers.entries
                       if isinstance(k, tuple) and k[0] in ("page", "services")
                       and isinstance(k[-1], datetime)}
            assert [m.minute for m in minutes] == [30], minutes
            assert today() == later  # and kept again
    finally:
        server.stop()
        built.close()


def test_a_writer_reads_its_write_at_once_and_every_process_agrees(
        http: httpx.Client, follower_server: LiveServer) -> None:
    declare(http, title="Before")
    with httpx.Client(base_url=follower_server.url, timeout=30) as other:
        warm = other.get("/")
        assert "Before" in warm.text
        assert other.get("/", headers={"If-None-Match": warm.headers["etag"]}).status_code == 304
        # The writer writes through one process and reads through the other, naming its
        # position (header, parameter or the cookie): the kept answer does not serve it.
        created = http.post(INCIDENTS, headers=WRITER, json={"title": "Just written"})
        position = created.headers["store-position"]
        for asked in ({"headers": {"Min-Position": position}},
                      {"params": {"min_position": position}},
                      {"cookies": {"store_position": position}}):
            fresh = httpx.get(follower_server.url + "/", timeout=30, **asked)  # type: ignore[arg-type]
            assert fresh.status_code == 200
            assert "Just written" in fresh.text, asked
            listed = httpx.get(follower_server.url + INCIDENTS, timeout=30, **asked)  # type: ignore[arg-type]
            assert created.json()["id"] in listed.text
            svg = httpx.get(follower_server.url + JSON_FEED, timeout=30, **asked)  # type: ignore[arg-type]
            assert created.json()["id"] in svg.text
        # Anyone else sees it soon too (the process hears of the store's growth).
        deadline = time.monotonic() + DEADLINE
        while "Just written" not in other.get("/").text:
            assert time.monotonic() < deadline, "the other process never saw the write"
            time.sleep(0.05)
    # Both processes at the same position: the same bytes and the same ETag (the other
    # process may take a moment to hear that the read models moved).
    for path in ANONYMOUS_READS:
        deadline = time.monotonic() + DEADLINE
        while True:
            mine, theirs = http.get(path), httpx.get(follower_server.url + path, timeout=30)
            if mine.content == theirs.content:
                break
            assert time.monotonic() < deadline, (path, mine.text, theirs.text)
            time.sleep(0.05)
        assert mine.headers["etag"] == theirs.headers["etag"], path


def test_an_anonymous_read_during_a_reading_takes_the_kept_answer(
    still_server: tuple[httpx.Client, LiveServer]
) -> None:
    """Stale while revalidating: once the read models moved, the first anonymous reader
    starts one reading in the background; it and everyone after it who names no position
    take the kept answer at once, while a reader naming the new position waits for it."""
    http, live_server = still_server
    declare(http, title="Warm")
    http.get("/")
    answers = public_answers(live_server)
    barrier = answers.barrier
    key = ("gated", 1)
    gate, started = threading.Event(), threading.Event()
    readings: list[int] = []

    def produce(body: bytes) -> Callable[[Answer | None], Answer]:
        def reading(_: Answer | None) -> Answer:
            readings.append(barrier.position)
            if body == b"new":
                started.set()
                assert gate.wait(DEADLINE)
            return Answer(barrier.position, f'"{body.decode()}"', None, body)
        return reading

    def ask(body: bytes, headers: list[tuple[bytes, bytes]]) -> Future[Answer | None]:
        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
                 "headers": headers}
        return pool.submit(asyncio.run, answers.get(Request(scope), key, produce(body)))

    with ThreadPoolExecutor(4) as pool:
        try:
            old = ask(b"old", []).result(DEADLINE)
            assert old is not None
            created = http.post(INCIDENTS, headers=WRITER, json={"title": "Moved"})
            written = int(created.headers["store-position"])
            deadline = time.monotonic() + DEADLINE
            while barrier.position < written:
                assert time.monotonic() < deadline, "the read models never moved"
                time.sleep(0.01)
            # The first anonymous reader starts the reading and is not kept waiting by it.
            first = ask(b"new", []).result(DEADLINE)
            assert first is not None
            assert first.body == b"old"
            assert started.wait(DEADLINE)
            # While it runs, anonymous readers take the kept answer; no second reading.
            for _ in range(5):
                during = ask(b"again", []).result(DEADLINE)
                assert during is not None
                assert during.body == b"old"
            # The writer names its position: it waits for the reading, and takes its answer.
            writer = ask(b"writer", [(b"min-position", str(written).encode())])
            assert not writer.done()
            gate.set()
            mine = writer.result(DEADLINE)
            assert mine is not None
            assert mine.body == b"new"
            assert mine.position >= written
            assert len(readings) == 2  # "old", then the one reading of "new"
            after = ask(b"after", []).result(DEADLINE)
            assert after is not None
            assert after.body == b"new"
        finally:
            gate.set()


def test_a_days_tooltip_names_five_incidents_then_counts_the_rest(http: httpx.Client) -> None:
    """A day of many incidents: the status page names five in its tooltip, and says how
    many more, rather than every title (each reader downloads every day's tooltip)."""
    titles = [f"Flap number {n}" for n in range(7)]
    for title in titles:
        declare(http, title=title, affected_services=["flappy"])
    page = http.get("/").text  # the cookie names the writes
    flappy = page[page.index('<span class="name"><bdi>flappy</bdi>'):]
    tip = flappy[flappy.index('<span class="tip-incidents">'):]
    tip = tip[:tip.index("</span>")]
    assert sum(title in tip for title in titles) == 5, tip
    assert tip.endswith("; and 2 more (see the history)"), tip


def test_a_costly_answer_is_read_again_at_a_pace_while_writes_land(
        still_server: tuple[httpx.Client, LiveServer]) -> None:
    """While writes land without pause, an anonymous read is answered the kept answer and
    the answer is read again in the background no sooner than PACE times its last
    reading's duration after that reading."""
    http, live_server = still_server
    declare(http, title="First")
    with httpx.Client(base_url=live_server.url, timeout=30) as anonymous:
        anonymous.get(SERVICES, params={"min_position": http.cookies["store_position"]})
        answers = public_answers(live_server)
        key = next(k for k in reversed(answers.answers.entries)
                   if isinstance(k, tuple) and k[0] == "services")
        # As if its last reading had just ended after taking a minute.
        answers._readings[key] = (time.monotonic(), 60.0)
        renders = answers.renders[key]
        kept = anonymous.get(SERVICES).content
        for n in range(5):
            declare(http, title=f"Write {n}", affected_services=[f"service-{n}"])
            assert anonymous.get(SERVICES).content == kept  # the kept one, not waited for
        assert answers.renders[key] == renders
        assert not answers.revalidating
        # A reader who names the writes' position waits for them and takes the new one.
        fresh = anonymous.get(SERVICES, params={"min_position": http.cookies["store_position"]})
        assert "service-4" in fresh.text
        assert answers.renders[key] == renders + 1


def test_a_large_answer_is_sent_gzip_coded_to_a_client_that_accepts_it(
        http: httpx.Client) -> None:
    for n in range(3):
        declare(http, title=f"Coded {n}", affected_services=[f"coded-{n}"])
    http.get("/")  # the cookie names the writes: the page is read at them
    with httpx.Client(base_url=str(http.base_url), timeout=30) as anonymous:
        for attempt in range(2):  # routed, then answered from the kept answer
            plain = anonymous.get("/", headers={"Accept-Encoding": "identity"})
            coded = anonymous.get("/", headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.8"})
            refused = anonymous.get("/", headers={"Accept-Encoding": "gzip;q=0"})
            assert "content-encoding" not in plain.headers, attempt
            assert "content-encoding" not in refused.headers, attempt
            assert coded.headers["content-encoding"] == "gzip", attempt
            assert coded.content == plain.content == refused.content  # (httpx decodes)
            assert coded.num_bytes_downloaded * 3 < plain.num_bytes_downloaded
            for answer in (plain, coded):
                assert "Accept-Encoding" in answer.headers["vary"]
            # Each coding its own strong ETag, and each 304s to its own only.
            assert coded.headers["etag"] != plain.headers["etag"]
            for answer, accept in ((plain, "identity"), (coded, "gzip")):
                again = anonymous.get("/", headers={
                    "Accept-Encoding": accept, "If-None-Match": answer.headers["etag"]})
                assert again.status_code == 304, (attempt, accept)
                assert again.headers["etag"] == answer.headers["etag"]
            assert anonymous.get("/", headers={
                "Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]
            }).status_code == 200
        # The coded bytes are the same in every process (no time in the gzip header).
        with anonymous.stream("GET", "/", headers={"Accept-Encoding": "gzip"}) as streamed:
            raw = b"".join(streamed.iter_raw())
        assert raw[:2] == b"\x1f\x8b"
        assert raw[4:8] == b"\0\0\0\0"  # MTIME
    # A small answer is not coded.
    assert "content-encoding" not in http.get("/badge.svg").headers


def test_a_status_page_of_megabytes_is_kept() -> None:
    """The status page of 200 services over 100,000 incidents is about 8 MB (0.8 MB
    coded): kept, not read again for every reader."""
    answers = Answers()
    big = Answer(1, '"big"', None, b"x" * 9_000_000, "text/html",
                 coded=Answer(1, '"big-gzip"', None, b"y" * 900_000, "text/html", encoded=True))
    answers.put("page", big)
    assert answers.get("page") is big
