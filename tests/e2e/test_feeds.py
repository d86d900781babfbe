"""The RSS 2.0 and Atom 1.0 feeds over HTTP, on SQLite and PostgreSQL.

Every feed fetched here goes through `fetch`, which parses it with a strict XML parser and
with feedparser (`bozo == 0`) and checks the rules a public feed validator applies (the
W3C / feedvalidator.org checks named in each helper below). No sleeps: reads wait for the
process's own writes, and times in the past are made by saving aggregates declared then.
"""

from __future__ import annotations

import contextlib
import html
import re
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import feedparser  # type: ignore[import-untyped]
import httpx
import pytest

from api import feeds_xml
from domain.incident import Incident
from domain.values import IncidentType, Severity, Status
from infra.bootstrap import Services, bootstrap
from tests.conftest import READER, WRITER, LiveServer, make_settings

INCIDENTS = "/api/v1/incidents"
GENERAL = {"rss": f"{INCIDENTS}/rss/feed", "atom": f"{INCIDENTS}/atom/feed"}
KINDS = ("rss", "atom")
ATOM = "{http://www.w3.org/2005/Atom}"
EXT = "{urn:product-status:incident}"
CONTENT_TYPES = {"rss": "application/rss+xml; charset=utf-8",
                 "atom": "application/atom+xml; charset=utf-8"}
LABELS = {"investigating": "Investigating", "identified": "Identified",
          "monitoring": "Monitoring", "resolved": "Resolved", "post_incident": "Post Incident"}

# The validator's own patterns (feedvalidator.org, validators.py).
RFC822 = re.compile(
    r"(((Mon)|(Tue)|(Wed)|(Thu)|(Fri)|(Sat)|(Sun)), *)?\d\d? +((Jan)|(Feb)|(Mar)|(Apr)|(May)|"
    r"(Jun)|(Jul)|(Aug)|(Sep)|(Oct)|(Nov)|(Dec)) +\d\d(\d\d)? +\d\d:\d\d(:\d\d)? +"
    r"(([+-]?\d\d\d\d)|(UT)|(GMT)|(EST)|(EDT)|(CST)|(CDT)|(MST)|(MDT)|(PST)|(PDT)|\w)$")
FULL_URI = re.compile(r"[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")
URN = re.compile(
    r"^urn:[a-zA-Z0-9][a-zA-Z0-9-]{1,31}:([a-zA-Z0-9()+,.:=@;$_!*'\-]|%[0-9A-Fa-f]{2})+$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RSS_CHANNEL = {"title", "link", "description", "language", "copyright", "managingEditor",
               "webMaster", "pubDate", "lastBuildDate", "category", "generator", "docs",
               "cloud", "ttl", "image", "rating", "textInput", "skipHours", "skipDays", "item"}
RSS_ITEM = {"title", "link", "description", "author", "category", "comments", "enclosure",
            "guid", "pubDate", "source"}
ATOM_FEED_META = {"author", "category", "contributor", "generator", "icon", "id", "link",
                  "logo", "rights", "subtitle", "title", "updated"}

# Text no feed may show: each visibility test hides one of these somewhere.
SECRET = "SECRET"


@dataclass
class Item:
    id: str  # RSS guid or Atom id
    title: str
    link: str
    text: str  # what a reader shows as the body (RSS description read as HTML)
    date: datetime  # RSS pubDate, Atom updated
    category: str
    status: str
    severity: str
    services: list[str]


@dataclass
class Feed:
    kind: str
    response: httpx.Response
    title: str
    updated: datetime
    items: list[Item]

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.items]

    @property
    def incident_ids(self) -> list[str]:
        return [i.link.rsplit("/", 1)[1].split("#")[0] for i in self.items]


# --------------------------------------------------------------------------------------
# reading and checking a feed
# --------------------------------------------------------------------------------------


def fetch(http: httpx.Client, kind: str, path: str | None = None,
          headers: dict[str, str] | None = None, ttl: int = 5, **params: Any) -> Feed:
    """GETs a feed (the general one of `kind` unless `path`), expects 200, and checks it."""
    response = http.get(path or GENERAL[kind], params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPES[kind]
    assert response.headers["cache-control"] == f"public, max-age={ttl * 60}"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    feed = check_rss(response, ttl) if kind == "rss" else check_atom(response)
    check_with_feedparser(feed)
    return feed


def parse_strictly(response: httpx.Response) -> ET.Element:
    """Well-formed XML 1.0 in UTF-8 (expat refuses anything else), declared as such."""
    body = response.content
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    body.decode("utf-8")  # strict: no lone surrogates, no invalid sequences
    root = ET.fromstring(body)
    # CharacterData: "&" and "<" in text as hexadecimal references, never named ones.
    assert b"&amp;" not in body
    assert b"&lt;" not in body
    return root


def rfc822(text: str | None) -> datetime:
    """InvalidRFC2822Date: the validator's pattern, a four-digit year, GMT, and a date
    email.utils reads whose weekday is the one written."""
    assert text is not None
    assert RFC822.match(text), text
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", text), text
    moment = parsedate_to_datetime(text)
    assert moment.strftime("%a") == text[:3], text
    return moment


def rfc3339(text: str | None) -> datetime:
    """InvalidRFC3339Date and W3DTFDateNonUTC: RFC 3339 with a time zone, in UTC (Z)."""
    assert text is not None
    assert RFC3339_UTC.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def names_itself(href: str | None, requested: httpx.URL) -> None:
    """MissingSelf / SelfDoesntMatchLocation: the feed's self link is where it was fetched,
    named as the feed names itself (RFC 4287: a URL of the same feed): by its parameters
    not at their default, by name, each service once and in order, and nothing else sent."""
    general = requested.path in GENERAL.values()
    defaults = {("include_resolved", "true"), ("max_items", "20" if general else "100")}
    taken = {(k, v) for k, v in requested.params.multi_items()
             if k in ("include_resolved", "max_items", "service")}
    named = httpx.URL(href or "")
    assert named.copy_with(query=None) == requested.copy_with(query=None), href
    assert named.params.multi_items() == sorted(taken - defaults), href


def no_duplicates(element: ET.Element, allowed: set[str]) -> None:
    """DuplicateElement: an element that may appear once appears at most once."""
    tags = [child.tag for child in element if child.tag not in allowed]
    assert len(tags) == len(set(tags)), tags


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(markup: str) -> str:
    """SecurityRisk (safeHtml): the RSS description is HTML, and ours holds no tag at
    all (so no script, meta, embed, object or on* attribute): only text, returned."""
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    assert parser.tags == [], markup
    return "".join(parser.text)


def extensions(element: ET.Element) -> tuple[str, str, list[str]]:
    status = element.findtext(f"{EXT}status")
    severity = element.findtext(f"{EXT}severity")
    assert status in LABELS
    assert severity in {s.value for s in Severity}
    return status, severity, [s.text or "" for s in element.findall(f"{EXT}service")]


def check_rss(response: httpx.Response, ttl: int) -> Feed:
    root = parse_strictly(response)
    assert root.tag == "rss"
    assert root.get("version") == "2.0"
    channels = root.findall("channel")
    assert len(channels) == 1
    assert len(root) == 1
    channel = channels[0]
    # MissingTitle / MissingLink / MissingDescription (title non-blank), DuplicateElement.
    assert (channel.findtext("title") or "").strip()
    assert channel.find("description") is not None
    assert FULL_URI.match(channel.findtext("link") or ""), channel.findtext("link")
    no_duplicates(channel, {"item", "category"})
    # UndefinedElement: anything outside RSS 2.0's vocabulary is in a namespace.
    for child in channel:
        assert child.tag in RSS_CHANNEL or child.tag.startswith("{"), child.tag
    assert channel.findtext("language") == "en-US"  # InvalidLanguage: ISO 639 "en"
    built = rfc822(channel.findtext("lastBuildDate"))
    assert channel.findtext("ttl") == str(ttl)  # InvalidInteger: a positive integer
    # MissingAtomSelfLink / SelfDoesntMatchLocation.
    selves = [link for link in channel.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(selves) == 1
    names_itself(selves[0].get("href"), response.request.url)
    assert selves[0].get("type") == "application/rss+xml"
    items = []
    for element in channel.findall("item"):
        no_duplicates(element, {"category", f"{EXT}service"})
        for child in element:
            assert child.tag in RSS_ITEM or child.tag.startswith("{"), child.tag
        title = element.findtext("title")
        assert title is not None  # MissingItemTitle (and so ItemMustContainTitleOrDescription)
        link = element.findtext("link") or ""
        assert FULL_URI.match(link), link  # InvalidFullLink
        guid = element.find("guid")
        assert guid is not None
        assert guid.text
        permalink = guid.get("isPermaLink")
        assert permalink in ("true", "false")  # InvalidBooleanAttribute
        if permalink == "true":
            assert FULL_URI.match(guid.text), guid.text  # InvalidHttpGUID
        else:
            assert not (len(guid.text) < 9 and guid.text.isdigit())  # NotSufficientlyUnique
        status, severity, services = extensions(element)
        items.append(Item(
            id=guid.text, title=title, link=link,
            text=read_html(element.findtext("description") or ""),
            date=rfc822(element.findtext("pubDate")),
            category=element.findtext("category") or "", status=status, severity=severity,
            services=services))
    ids = [i.id for i in items]
    assert len(ids) == len(set(ids))  # guids unique in the feed (DuplicateValue)
    return Feed("rss", response, channel.findtext("title") or "", built, items)


def check_atom(response: httpx.Response) -> Feed:
    root = parse_strictly(response)
    assert root.tag == f"{ATOM}feed"
    local = [child.tag.removeprefix(ATOM) for child in root]
    first_entry = local.index("entry") if "entry" in local else len(local)
    # MisplacedMetadata: no feed metadata after the first entry.
    assert all(tag == "entry" for tag in local[first_entry:])
    no_duplicates(root, {f"{ATOM}{t}" for t in ("entry", "link", "author", "category",
                                                 "contributor")})
    # MissingElement: feed id, title, updated, and an author for the entries.
    feed_id = root.findtext(f"{ATOM}id") or ""
    assert URN.match(feed_id), feed_id  # InvalidURN
    assert feed_id == feed_id.lower()  # canonical
    title = root.find(f"{ATOM}title")
    assert title is not None
    assert title.get("type") == "text"
    assert (title.text or "").strip()
    updated = rfc3339(root.findtext(f"{ATOM}updated"))
    assert (root.findtext(f"{ATOM}author/{ATOM}name") or "").strip()
    # MissingSelf / SelfDoesntMatchLocation, DuplicateAtomLink.
    links = root.findall(f"{ATOM}link")
    assert len({(lk.get("rel"), lk.get("type"), lk.get("hreflang")) for lk in links}) == len(links)
    selves = [lk for lk in links if lk.get("rel") == "self"]
    assert len(selves) == 1
    names_itself(selves[0].get("href"), response.request.url)
    assert selves[0].get("type") == "application/atom+xml"
    for link in links:
        assert FULL_URI.match(link.get("href") or ""), link.get("href")
    items = []
    for entry in root.findall(f"{ATOM}entry"):
        no_duplicates(entry, {f"{ATOM}{t}" for t in ("link", "author", "category",
                                                      "contributor")} | {f"{EXT}service"})
        entry_id = entry.findtext(f"{ATOM}id") or ""
        assert URN.match(entry_id), entry_id
        assert entry_id == entry_id.lower()
        entry_title = entry.find(f"{ATOM}title")
        assert entry_title is not None
        assert entry_title.get("type") == "text"
        entry_updated = rfc3339(entry.findtext(f"{ATOM}updated"))
        assert rfc3339(entry.findtext(f"{ATOM}published")) <= entry_updated
        # MissingTextualContent (no content: a summary) and MissingContentOrAlternate.
        summary = entry.find(f"{ATOM}summary")
        assert summary is not None
        assert summary.get("type") == "text"
        alternates = [lk for lk in entry.findall(f"{ATOM}link") if lk.get("rel") == "alternate"]
        assert len(alternates) == 1
        assert FULL_URI.match(alternates[0].get("href") or "")
        category = entry.find(f"{ATOM}category")
        assert category is not None
        assert category.get("term")
        status, severity, services = extensions(entry)
        items.append(Item(
            id=entry_id, title=entry_title.text or "", link=alternates[0].get("href") or "",
            text=summary.text or "", date=entry_updated, category=category.get("term") or "",
            status=status, severity=severity, services=services))
    ids = [i.id for i in items]
    assert len(ids) == len(set(ids))  # DuplicateEntries
    return Feed("atom", response, title.text or "", updated, items)


def check_with_feedparser(feed: Feed) -> None:
    """What most aggregators read with: no bozo, the version we claim, the same items, and
    the same text (plain text, or in the RSS description HTML that shows it as written)."""
    response = feed.response
    parsed = feedparser.parse(response.content, response_headers={
        "content-type": response.headers["content-type"],
        "content-location": str(response.request.url)})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == ("rss20" if feed.kind == "rss" else "atom10")
    assert len(parsed.entries) == len(feed.items)
    for entry, item in zip(parsed.entries, feed.items, strict=True):
        assert entry.id == item.id
        assert entry.link == item.link
        # Titles are plain text: never read as markup, whatever they hold.
        assert entry.title_detail.type == "text/plain"
        assert entry.title in (item.title, as_feedparser_reads(item.title))
        if feed.kind == "atom":
            assert entry.summary_detail.type == "text/plain"
            assert entry.summary in (item.text, as_feedparser_reads(item.text))
        else:
            assert entry.summary_detail.type == "text/html"
            assert html.unescape(entry.summary) == as_html_reads(item.text)


def as_feedparser_reads(text: str) -> str:
    """feedparser reads C1 controls as the Windows-1252 characters HTML maps them to
    (U+0085 shows as an ellipsis), a choice of its own: the XML holds U+0085."""
    return "".join(
        bytes([ord(c)]).decode("cp1252", errors="replace").replace("\ufffd", c)
        if 0x80 <= ord(c) <= 0x9F else c for c in text)


def as_html_reads(text: str) -> str:
    """Text as an HTML reader takes it: line ends as LF, and C1 controls as above."""
    return as_feedparser_reads(text.replace("\r\n", "\n").replace("\r", "\n"))


def incident_feed(http: httpx.Client, kind: str, incident_id: str, **params: Any) -> Feed:
    return fetch(http, kind, f"{INCIDENTS}/{incident_id}/{kind}", **params)


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"title": "Checkout is down", **fields}
    response = http.post(INCIDENTS, json=body, headers=WRITER)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def update(http: httpx.Client, incident_id: str, **fields: Any) -> dict[str, Any]:
    response = http.post(f"{INCIDENTS}/{incident_id}/updates", json=fields, headers=WRITER)
    assert response.status_code == 201, response.text
    updated: dict[str, Any] = response.json()
    return updated


def change(http: httpx.Client, incident_id: str, **fields: Any) -> dict[str, Any]:
    response = http.put(f"{INCIDENTS}/{incident_id}", json=fields, headers=WRITER)
    assert response.status_code == 200, response.text
    changed: dict[str, Any] = response.json()
    return changed


def delete(http: httpx.Client, incident_id: str) -> None:
    response = http.delete(f"{INCIDENTS}/{incident_id}", headers=WRITER)
    assert response.status_code == 204, response.text


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def newest_first(incidents: list[dict[str, Any]]) -> list[str]:
    """Ids by last public change, newest first (every change these tests make to a shown
    incident is public, so that is `updated_at`)."""
    return [i["id"] for i in sorted(incidents, key=lambda i: (at(i["updated_at"]), i["id"]),
                                    reverse=True)]


def save_declared(services: Services, *incidents: Incident) -> None:
    """Stores aggregates made here (with times in the past) and waits for the read side."""
    services.commands.save(*incidents)
    assert services.barrier.wait(services.event_log.last_position(), timeout=30)


@pytest.fixture
def serve(database_url: str) -> Iterator[Callable[..., tuple[httpx.Client, Services]]]:
    """Starts the API with other settings (on the same kind of store)."""
    started: list[tuple[httpx.Client, LiveServer, Services]] = []

    def start(**overrides: str) -> tuple[httpx.Client, Services]:
        services = bootstrap(make_settings(database_url, **overrides))
        services.start_projections()
        server = LiveServer(services)
        server.start()
        client = httpx.Client(base_url=server.url, timeout=30)
        started.append((client, server, services))
        return client, services

    yield start
    for client, server, services in reversed(started):
        client.close()
        server.stop()
        services.close()


# --------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------


def test_general_feeds_show_each_public_incident_newest_change_first(
    http: httpx.Client, services: Services
) -> None:
    base = services.settings.base_url
    db = create(http, title="Database connection issues", severity="high",
                incident_type="outage", affected_services=["database", "api"],
                public_message="We are investigating", internal_notes="pool exhausted")
    slow = create(http, title="Slow search", severity="low",
                  incident_type="degraded_performance", public_message="Searching is slow")
    db = update(http, db["id"], status="identified", public_message="Found the cause")
    quiet = create(http, title="Quiet one", description="No message yet")
    slow = update(http, slow["id"], status="monitoring")  # says nothing new in public
    incidents = {i["id"]: i for i in (db, slow, quiet)}
    expected_text = {db["id"]: "Found the cause", slow["id"]: "Searching is slow",
                     quiet["id"]: "No message yet"}
    for kind in KINDS:
        feed = fetch(http, kind)
        assert feed.incident_ids == newest_first(list(incidents.values()))
        assert feed.title == "Product Status - Incident Updates"
        assert feed.updated == max(i.date for i in feed.items)
        for item in feed.items:
            incident = incidents[item.link.rsplit("/", 1)[1]]
            assert item.title == f"{incident['title']} - {LABELS[incident['status']]}"
            assert item.text == expected_text[incident["id"]]
            assert item.link == f"{base}/incidents/{incident['id']}"
            assert item.category == incident["incident_type"]
            assert (item.status, item.severity) == (incident["status"], incident["severity"])
            assert item.services == incident["affected_services"]
            changed = at(incident["updated_at"])
            if kind == "rss":
                assert item.id == item.link  # a permanent, permalink guid
                assert item.date == changed.replace(microsecond=0)
            else:
                assert item.date == changed
                assert item.id.startswith("urn:uuid:")
    # The guid / id of an incident's item does not change as the incident does.
    before = {kind: fetch(http, kind) for kind in KINDS}
    update(http, quiet["id"], status="resolved", public_message="Fixed")
    for kind in KINDS:
        after = fetch(http, kind)
        assert sorted(after.ids) == sorted(before[kind].ids)
        assert after.incident_ids[0] == quiet["id"]
        assert after.ids[0] == before[kind].ids[before[kind].incident_ids.index(quiet["id"])]


def test_every_status_has_its_label(http: httpx.Client) -> None:
    incident = create(http, title="Labelled")
    seen = []
    for status in ("identified", "monitoring", "resolved", "post_incident"):
        update(http, incident["id"], status=status, public_message=f"now {status}")
        for kind in KINDS:
            seen.append(fetch(http, kind).items[0].title)
    assert seen == [f"Labelled - {LABELS[s]}" for s in
                    ("identified", "monitoring", "resolved", "post_incident") for _ in KINDS]
    assert fetch(http, "rss").items[0].status == "post_incident"


def test_an_incident_feed_has_an_item_per_public_entry_each_with_its_own_guid(
    http: httpx.Client, services: Services
) -> None:
    base = services.settings.base_url
    incident = create(http, title="API errors", public_message="Looking into it",
                      affected_services=["api"], severity="critical")
    iid = incident["id"]
    update(http, iid, status="identified", public_message="Found it", message="the LB")
    update(http, iid, message=f"{SECRET}: only an internal note")  # not an entry
    update(http, iid, status="monitoring")  # a status change alone is one
    first = {kind: incident_feed(http, kind, iid) for kind in KINDS}
    for kind, feed in first.items():
        assert [i.status for i in feed.items] == ["monitoring", "identified", "investigating"]
        assert [i.text for i in feed.items] == ["Status: Monitoring", "Found it",
                                                "Looking into it"]
        assert [i.title for i in feed.items] == [
            "API errors - Monitoring", "API errors - Identified", "API errors - Investigating"]
        assert feed.title == "API errors - Product Status"
        assert SECRET not in feed.response.text
        assert all(i.severity == "critical" and i.services == ["api"] for i in feed.items)
        if kind == "rss":
            assert feed.ids == [f"{base}/incidents/{iid}#update-{n}" for n in (3, 1, 0)]
            body = ET.fromstring(feed.response.content)
            assert {g.get("isPermaLink") for g in body.iter("guid")} == {"false"}
            assert [i.date for i in feed.items] == sorted(
                (i.date for i in feed.items), reverse=True)
    # New entries get new guids; the earlier ones keep theirs.
    update(http, iid, status="resolved", public_message="All good")
    for kind in KINDS:
        feed = incident_feed(http, kind, iid)
        assert feed.ids[1:] == first[kind].ids
        assert feed.ids[0] not in first[kind].ids
        assert feed.items[0].title == "API errors - Resolved"
        assert incident_feed(http, kind, iid, max_items=2).ids == feed.ids[:2]


@pytest.mark.parametrize("kind", KINDS)
def test_an_incident_feed_is_404_for_an_incident_no_feed_may_show(
    http: httpx.Client, kind: str
) -> None:
    hidden = [
        create(http, title="private", is_public=False)["id"],
        create(http, title="not in feeds", rss_enabled=False)["id"],
        "incident-unknown",
        "incident-%E2%98%83",
    ]
    deleted = create(http, title="deleted")["id"]
    delete(http, deleted)
    for incident_id in [*hidden, deleted]:
        for headers in (None, READER):  # a reader token sees no more in a feed
            response = http.get(f"{INCIDENTS}/{incident_id}/{kind}", headers=headers)
            assert response.status_code == 404, (incident_id, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    # Names nothing can have: refused, never a 500.
    for garbage in ("incident-%00", "%FF%FE", "x" * 2000):
        response = http.get(f"{INCIDENTS}/{garbage}/{kind}")
        assert 400 <= response.status_code < 500, (garbage, response.text)
    for query in ("service=%00", "service=%FF", "service=a%00b"):
        response = http.get(f"{GENERAL[kind]}?{query}")
        assert response.status_code in (200, 400, 422), (query, response.text)


# --------------------------------------------------------------------------------------
# hostile text
# --------------------------------------------------------------------------------------

CONTROLS = "".join(chr(c) for c in range(1, 32) if chr(c) not in "\t\n\r")
HOSTILE = ("<script>alert('x')</script> ]]> <![CDATA[ & &amp; &#x26; \"double\" 'single' "
           "\u202egnp.exe \u2067isolated \U0001f525\U0001f6a8 \u00e9\u0301 "
           f"{CONTROLS} tab\there\r\nline \x7f\x85\ufdd0\U0010fffd end")


def kept(text: str) -> str:
    """The text with only what XML 1.0 cannot carry removed (C0 controls but tab, LF and
    CR; lone surrogates; U+FFFE, U+FFFF)."""
    return "".join(c for c in text if not (
        (ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF
        or c in "\ufffe\uffff"))


def closed(text: str) -> str:
    """A title followed by the marks that end the text's right-to-left override (RLO) and
    isolate (RLI), so the status after it reads as written."""
    return text + "\u2069" * text.count("\u2067") + "\u202c" * text.count("\u202e")


def test_hostile_text_leaves_every_feed_valid_and_inert(
    http: httpx.Client, services: Services
) -> None:
    title = "Title " + HOSTILE
    incident = create(
        http, title=title, description="Description " + HOSTILE,
        public_message="Declared " + HOSTILE, affected_services=["svc <b>&</b> \u202e\x01"],
        internal_notes=f"{SECRET} " + HOSTILE)
    update(http, incident["id"], status="identified", public_message="Update " + HOSTILE,
           message=f"{SECRET} " + HOSTILE)
    feeds = [fetch(http, kind) for kind in KINDS] + [
        incident_feed(http, kind, incident["id"]) for kind in KINDS]
    shown_title = closed(kept(title.strip()))
    for feed in feeds:
        body = ET.fromstring(feed.response.content)
        assert not [e for e in body.iter() if e.tag.split("}")[-1] in ("script", "b")]
        assert SECRET not in feed.response.text
        assert feed.items[0].title == f"{shown_title} - Identified"
        assert feed.items[0].text == kept("Update " + HOSTILE)
        assert feed.items[0].services == [kept("svc <b>&</b> \u202e\x01")]
        # Only C0 controls were dropped: CR, tab, RTL marks, emoji and the rest are there.
        for kept_char in "\r\t\u202e\u2067\U0001f525\x7f\x85\ufdd0\U0010fffd":
            assert kept_char in feed.items[0].text
        assert "\x01" not in feed.response.text
    entries = feeds[2].items
    assert entries[-1].text == kept("Declared " + HOSTILE)


def test_text_that_cannot_be_stored_leaves_the_feeds_as_they_were(http: httpx.Client) -> None:
    """JSON can carry a lone surrogate ("\\ud800"): the API refuses it, nothing is stored."""
    create(http, title="Before")
    before = {kind: fetch(http, kind).response.content for kind in KINDS}
    for text in ("\\ud800", "a\\udfffb", "\\ud83d"):
        response = http.post(INCIDENTS, content=f'{{"title": "{text}"}}',
                             headers={**WRITER, "Content-Type": "application/json"})
        assert response.status_code == 422, response.text
    assert {kind: fetch(http, kind).response.content for kind in KINDS} == before


def test_a_nul_character_never_reaches_a_feed(http: httpx.Client) -> None:
    response = http.post(INCIDENTS, json={"title": "nul\x00here", "public_message": "a\x00b"},
                         headers=WRITER)
    if response.status_code == 422:
        return  # refused at the door: fine too
    assert response.status_code == 201, response.text
    for kind in KINDS:
        feed = fetch(http, kind)
        assert feed.items[0].title == "nulhere - Investigating"
        assert feed.items[0].text == "ab"


def test_the_renderer_drops_exactly_what_xml_cannot_carry() -> None:
    """Every code point, lone surrogates included, through an RSS item and back."""
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1))
    allowed = kept(everything)
    assert feeds_xml.clean(everything) == allowed
    assert len(everything) - len(allowed) == 29 + 2048 + 2
    item = feeds_xml.Item(
        title=everything, link="http://x.test/i", guid="http://x.test/i",
        guid_is_permalink=True, atom_id=feeds_xml.atom_id("x"), summary=everything,
        published=0, updated=0, incident_type="other", status="resolved", severity="low",
        services=(everything,))
    channel = feeds_xml.Channel(title="t", description="d", link="http://x.test",
                                self_url="http://x.test/feed", atom_id=feeds_xml.atom_id("f"),
                                updated=0, ttl_minutes=5)
    rss = ET.fromstring(feeds_xml.rss(channel, [item]))
    assert rss.findtext("channel/item/title") == allowed
    assert html.unescape(rss.findtext("channel/item/description") or "") == allowed
    assert rss.findtext(f"channel/item/{EXT}service") == allowed
    atom = ET.fromstring(feeds_xml.atom(channel, [item]))
    assert atom.findtext(f"{ATOM}entry/{ATOM}summary") == allowed


# --------------------------------------------------------------------------------------
# visibility
# --------------------------------------------------------------------------------------


def test_nothing_internal_or_hidden_ever_appears_in_a_feed(http: httpx.Client) -> None:
    shown = create(http, title="Shown", public_message="public words",
                   internal_notes=f"{SECRET}-notes-at-creation", affected_services=["api"])
    update(http, shown["id"], status="identified", public_message="more public words",
           message=f"{SECRET}-internal-message-with-public-one")
    update(http, shown["id"], message=f"{SECRET}-internal-message-alone")
    change(http, shown["id"], internal_notes=f"{SECRET}-notes-changed")
    hidden = [
        create(http, title=f"{SECRET}-private", is_public=False, affected_services=["api"]),
        create(http, title=f"{SECRET}-not-in-feeds", rss_enabled=False,
               affected_services=["api"]),
        create(http, title=f"{SECRET}-deleted", affected_services=["api"]),
        create(http, title=f"{SECRET}-made-private-later", affected_services=["api"]),
        create(http, title=f"{SECRET}-taken-out-of-feeds-later", affected_services=["api"]),
        create(http, title=f"{SECRET}-resolved-then-private", affected_services=["api"]),
    ]
    delete(http, hidden[2]["id"])
    change(http, hidden[3]["id"], is_public=False)
    change(http, hidden[4]["id"], rss_enabled=False)
    update(http, hidden[5]["id"], status="resolved", public_message=f"{SECRET}-resolved")
    change(http, hidden[5]["id"], is_public=False)
    update(http, hidden[0]["id"], status="identified", public_message=f"{SECRET}-update")
    for kind in KINDS:
        for headers in (None, READER):
            for params in ({}, {"include_resolved": "false"}, {"service": "api"},
                           {"max_items": 100}):
                feed = fetch(http, kind, headers=headers, **params)
                assert feed.incident_ids == [shown["id"]]
                assert SECRET not in feed.response.text
            feed = incident_feed(http, kind, shown["id"])
            assert len(feed.items) == 2
            assert SECRET not in feed.response.text
        for incident in hidden:
            assert http.get(f"{INCIDENTS}/{incident['id']}/{kind}").status_code == 404
    # Back in public view, it shows again (as it is now, with public text only).
    change(http, hidden[3]["id"], is_public=True, title="Public again")
    assert fetch(http, "rss").incident_ids[0] == hidden[3]["id"]


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------


def test_include_resolved_max_items_and_service(http: httpx.Client) -> None:
    made = []
    plan = [("investigating", ["api"]), ("identified", ["db"]), ("monitoring", ["api", "db"]),
            ("resolved", ["api"]), ("post_incident", ["web"]), ("investigating", []),
            ("resolved", ["db", "web"])]
    for n, (status, services) in enumerate(plan):
        incident = create(http, title=f"incident {n}", affected_services=services)
        if status in ("identified", "monitoring"):
            incident = update(http, incident["id"], status=status, public_message=status)
        if status in ("resolved", "post_incident"):
            incident = update(http, incident["id"], status="resolved", public_message="done")
        if status == "post_incident":
            incident = update(http, incident["id"], status="post_incident",
                              public_message="review")
        made.append(incident)

    def expected(include_resolved: bool = True, service: tuple[str, ...] = (),
                 max_items: int = 20) -> list[str]:
        kept_ids = newest_first([
            i for i in made
            if (include_resolved or i["status"] not in ("resolved", "post_incident"))
            and (not service or set(service) & set(i["affected_services"]))])
        return kept_ids[:max_items]

    cases: list[dict[str, Any]] = [
        {}, {"include_resolved": False}, {"max_items": 1}, {"max_items": 3},
        {"service": ("api",)}, {"service": ("api", "web")}, {"service": ("nowhere",)},
        {"include_resolved": False, "service": ("db",)},
        {"include_resolved": False, "service": ("db",), "max_items": 1},
        {"include_resolved": True, "service": ("web",), "max_items": 100},
    ]
    for case in cases:
        params: dict[str, Any] = {
            k: str(v).lower() if isinstance(v, bool) else list(v) if isinstance(v, tuple) else v
            for k, v in case.items()}
        for kind in KINDS:
            feed = fetch(http, kind, **params)
            assert feed.incident_ids == expected(**case), (kind, case)
    assert expected(service=("nowhere",)) == []
    assert len(expected(include_resolved=False)) == 4


def test_a_service_matches_by_its_whole_name(http: httpx.Client) -> None:
    odd = 'we "quote" \\ back, ü 🔥 %_'
    named = create(http, title="Odd name", affected_services=[odd, "api"])
    other = create(http, title="Near names", affected_services=["ap", "api-gateway", "API"])
    for kind in KINDS:
        assert fetch(http, kind, service=odd).incident_ids == [named["id"]]
        assert fetch(http, kind, service="api").incident_ids == [named["id"]]
        assert fetch(http, kind, service=["ap", odd]).incident_ids == [other["id"],
                                                                       named["id"]]
        for near in ("a", "pi", "Api", "we", '"quote"', "%", "_"):
            assert fetch(http, kind, service=near).incident_ids == [], near
        assert fetch(http, kind, service=odd).items[0].services == [odd, "api"]


BAD_QUERIES = ["max_items=0", "max_items=101", "max_items=-1", "max_items=abc", "max_items=",
               "include_resolved=maybe", "service=", "service=" + "x" * 101]


def test_bad_parameters_are_422(http: httpx.Client) -> None:
    incident = create(http, title="Fine")
    paths = [*GENERAL.values(), *(f"{INCIDENTS}/{incident['id']}/{kind}" for kind in KINDS)]
    for path in paths:
        queries = BAD_QUERIES[:5] if "/feed" not in path else BAD_QUERIES
        for query in queries:
            response = http.get(f"{path}?{query}")
            assert response.status_code == 422, (path, query, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            name = query.split("=")[0]
            field = next(e["field"] for e in response.json()["errors"])
            assert field.startswith(f"query.{name}"), (path, query, field)


def test_feeds_are_404_when_turned_off(
    serve: Callable[..., tuple[httpx.Client, Services]]
) -> None:
    client, _ = serve(INCIDENT_RSS_ENABLED="false")
    incident = create(client, title="Not in any feed")
    paths = [*GENERAL.values(), f"{GENERAL['rss']}?max_items=0",
             *(f"{INCIDENTS}/{incident['id']}/{kind}" for kind in KINDS)]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"{INCIDENTS}/{incident['id']}").status_code == 200


def test_links_come_from_public_base_url_and_ttl_from_the_setting(
    serve: Callable[..., tuple[httpx.Client, Services]]
) -> None:
    client, _ = serve(PUBLIC_BASE_URL="https://status.example.com/", RSS_TTL_MINUTES="7")
    incident = create(client, title="Elsewhere")
    update(client, incident["id"], status="identified", public_message="seen")
    page = f"https://status.example.com/incidents/{incident['id']}"
    for kind in KINDS:
        response = client.get(GENERAL[kind], params={"max_items": 5})
        body = ET.fromstring(response.content)
        links = [e.text or e.get("href") or "" for e in body.iter()
                 if e.tag in ("link", f"{ATOM}link", "guid")]
        self_url = f"https://status.example.com{GENERAL[kind]}?max_items=5"
        assert self_url in links
        assert all(link.startswith("https://status.example.com") for link in links), links
        assert page in links
        assert response.headers["cache-control"] == "public, max-age=420"
        if kind == "rss":
            assert body.findtext("channel/ttl") == "7"
        entries = client.get(f"{INCIDENTS}/{incident['id']}/{kind}")
        assert f"{page}#update-1".encode() in entries.content
        assert entries.headers["cache-control"] == "public, max-age=420"


def test_a_feed_names_the_host_it_was_asked_on_to_that_host_only(
    serve: Callable[..., tuple[httpx.Client, Services]]
) -> None:
    """Without PUBLIC_BASE_URL a feed names itself on the host it was asked on, which is
    then part of what it is kept by: no one is answered a feed naming another's host.
    With it, the host asked on changes nothing."""
    elsewhere = {"Host": "elsewhere.example"}
    for overrides in ({}, {"PUBLIC_BASE_URL": "https://status.example.com"}):
        client, services = serve(**overrides)
        incident = create(client, title="Hosted")
        assert services.barrier.wait(services.event_log.last_position(), timeout=30)
        paths = [*GENERAL.values(), f"{INCIDENTS}/feed.json",
                 f"{INCIDENTS}/{incident['id']}/rss"]
        # Anonymous (no position named): answered from a kept answer where one holds.
        with httpx.Client(base_url=client.base_url, timeout=30) as anonymous:
            for path in paths:
                odd = anonymous.get(path, headers=elsewhere)
                plain = anonymous.get(path)
                assert odd.status_code == plain.status_code == 200, (path, odd.text)
                assert b"elsewhere.example" not in plain.content, path
                if overrides:
                    assert odd.content == plain.content, path
                    assert odd.headers["etag"] == plain.headers["etag"]
                else:
                    assert b"http://elsewhere.example/api/v1/incidents/" in odd.content, path
                    assert odd.headers["etag"] != plain.headers["etag"]
                # Again, each URL now answered before routing (ServeKept knows it by host).
                for _ in range(2):
                    assert anonymous.get(path).content == plain.content, path
                    assert anonymous.get(path, headers=elsewhere).content == odd.content


# --------------------------------------------------------------------------------------
# caching
# --------------------------------------------------------------------------------------


def conditional(http: httpx.Client, path: str, **headers: str) -> httpx.Response:
    return http.get(path, headers=headers)


def all_feeds(incident_id: str) -> list[str]:
    return [*GENERAL.values(), f"{GENERAL['rss']}?service=api",
            *(f"{INCIDENTS}/{incident_id}/{kind}" for kind in KINDS)]


def test_etag_holds_while_nothing_public_changes_and_moves_when_it_does(
    http: httpx.Client
) -> None:
    shown = create(http, title="Shown", public_message="hello", affected_services=["api"])
    other = create(http, title="Other service", affected_services=["db"])
    private = create(http, title="Private", is_public=False, affected_services=["api"])
    paths = all_feeds(shown["id"])
    tags = {p: http.get(p).headers["etag"] for p in paths}
    assert len(set(tags.values())) == len(paths)  # each feed has its own

    def unchanged(*which: str) -> None:
        for path in which or paths:
            response = conditional(http, path, **{"If-None-Match": tags[path]})
            assert response.status_code == 304, path
            assert response.content == b""
            assert response.headers["etag"] == tags[path]
            assert response.headers["cache-control"] == "public, max-age=300"

    unchanged()
    # Internal notes and internal messages: not a public change.
    change(http, shown["id"], internal_notes="secret")
    update(http, shown["id"], message="internal only")
    unchanged()
    # Changes to incidents no feed of `shown` shows.
    change(http, private["id"], title="Private, renamed", public_message="still private")
    update(http, private["id"], status="identified", public_message="private update")
    unchanged()
    # The tag compares weakly, in lists, and * matches.
    for tag in (tags[paths[0]], f"W/{tags[paths[0]]}", f'"nope", {tags[paths[0]]}', "*"):
        assert conditional(http, paths[0], **{"If-None-Match": tag}).status_code == 304
    assert conditional(http, paths[0], **{"If-None-Match": '"nope"'}).status_code == 200
    update(http, other["id"], status="identified", public_message="db news")
    unchanged(f"{GENERAL['rss']}?service=api", *paths[-2:])
    for path in paths[:2]:  # the general feeds show `other`
        tags[path] = conditional(http, path, **{"If-None-Match": tags[path]}).headers["etag"]
    # A public update of `shown` moves every one of its feeds.
    update(http, shown["id"], status="identified", public_message="found it")
    for path in paths:
        response = conditional(http, path, **{"If-None-Match": tags[path]})
        assert response.status_code == 200, path
        assert response.headers["etag"] != tags[path]
        assert response.content
        tags[path] = response.headers["etag"]
    unchanged()
    # A change of a public detail too, and deleting it.
    change(http, shown["id"], title="Shown, renamed")
    assert all(conditional(http, p, **{"If-None-Match": tags[p]}).status_code == 200
               for p in paths)
    tags = {p: http.get(p).headers["etag"] for p in paths[:3]}
    delete(http, shown["id"])
    assert all(conditional(http, p, **{"If-None-Match": tags[p]}).status_code == 200
               for p in paths[:3])


def test_same_etag_same_bytes(http: httpx.Client) -> None:
    incident = create(http, title="Stable", public_message="same")
    for path in all_feeds(incident["id"]):
        first, second = http.get(path), http.get(path)
        assert first.headers["etag"] == second.headers["etag"]
        assert first.content == second.content


def test_last_modified_and_if_modified_since(http: httpx.Client, services: Services) -> None:
    hour_ago = datetime.now(UTC).replace(microsecond=250_000) - timedelta(hours=1)
    older = Incident.declare(incident_id="incident-older", at=hour_ago, title="Older",
                             public_message="first", affected_services=("api",))
    newer = Incident.declare(incident_id="incident-newer", at=hour_ago + timedelta(minutes=1),
                             title="Newer", severity=Severity.HIGH,
                             incident_type=IncidentType.OUTAGE, status=Status.IDENTIFIED)
    newer.add_update(at=hour_ago + timedelta(minutes=2), max_updates=100, status=Status.MONITORING,
                     public_message="watching")
    private = Incident.declare(incident_id="incident-private",
                               at=hour_ago + timedelta(minutes=3), title="Private",
                               is_public=False)
    save_declared(services, older, newer, private)
    # The private incident, declared last, is no public change: it moves no feed.
    newest = format_datetime(hour_ago + timedelta(minutes=2), usegmt=True)
    paths = {p: newest for p in GENERAL.values()}
    paths[f"{INCIDENTS}/incident-newer/rss"] = format_datetime(
        hour_ago + timedelta(minutes=2), usegmt=True)
    paths[f"{INCIDENTS}/incident-older/atom"] = format_datetime(hour_ago, usegmt=True)
    for path, last_modified in paths.items():
        response = http.get(path)
        etag = response.headers["etag"]
        # The newest public change of the read model (or of the incident), in whole seconds.
        assert response.headers["last-modified"] == last_modified, path
        since = parsedate_to_datetime(last_modified)
        for header, status in [
            (last_modified, 304),
            (format_datetime(since + timedelta(days=1), usegmt=True), 304),
            (format_datetime(since - timedelta(seconds=1), usegmt=True), 200),
            ("yesterday", 200),
            ("Mon, 99 Foo 2024 99:99:99 GMT", 200),
        ]:
            answer = conditional(http, path, **{"If-Modified-Since": header})
            assert answer.status_code == status, (path, header)
            if status == 304:
                assert answer.headers["last-modified"] == last_modified
                assert answer.headers["etag"] == etag
        # If-None-Match wins over If-Modified-Since, either way.
        assert conditional(http, path, **{"If-None-Match": '"other"',
                                          "If-Modified-Since": last_modified}).status_code == 200
        assert conditional(http, path, **{
            "If-None-Match": etag, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT",
        }).status_code == 304
    general = f"{INCIDENTS}/rss/feed"
    # Internal notes do not count as a change.
    change(http, "incident-older", internal_notes="nothing public")
    assert conditional(http, general, **{"If-Modified-Since": newest}).status_code == 304
    # A change within the last seconds carries no Last-Modified (a second-precision date
    # could not tell it from a later change in the same second); If-Modified-Since alone
    # then never answers 304 -- and so sees an incident that just left the feed.
    deleted_at = datetime.now(UTC)
    delete(http, "incident-older")
    response = conditional(http, general, **{"If-Modified-Since": newest})
    assert response.status_code == 200
    assert "incident-older" not in response.text
    if datetime.now(UTC) - deleted_at < timedelta(seconds=1.5):
        assert "last-modified" not in response.headers
    else:  # a very slow machine: by now the deletion's second may be over
        assert parsedate_to_datetime(response.headers["last-modified"]) > since


def test_a_fresh_change_has_no_last_modified_yet(http: httpx.Client) -> None:
    incident = create(http, title="Just now")
    created = at(incident["created_at"])
    tomorrow = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    for path in all_feeds(incident["id"]):
        asked = datetime.now(UTC)
        response = http.get(path)
        if "last-modified" in response.headers:  # only ever once its second is well over
            assert asked - created >= timedelta(seconds=1)
            continue
        assert conditional(http, path, **{"If-Modified-Since": tomorrow}).status_code == 200


# --------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------


def test_a_feed_costs_the_same_few_queries_whatever_it_shows(
    http: httpx.Client, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=1)
    small = Incident.declare(incident_id="incident-small", at=long_ago, title="small")
    big = Incident.declare(incident_id="incident-big", at=long_ago, title="big")
    for n in range(40):
        big.add_update(at=long_ago + timedelta(seconds=n + 1), max_updates=100,
                       public_message=f"update {n}")
    crowd = [Incident.declare(incident_id=f"incident-crowd-{n}", at=long_ago, title=f"c{n}")
             for n in range(60)]
    save_declared(services, small, big, *crowd)
    # Until the process has heard of the store's head and its read models reached it, a
    # request may first look where the read models are (one more query): not counted here.
    head = services.event_log.last_position()
    deadline = time.monotonic() + 30
    while services.followers.listener.head < head or services.barrier.position < head:
        assert time.monotonic() < deadline, "the read models never caught up"
        time.sleep(0.01)

    statements: list[str] = []
    real = services.database.transaction

    class CountingCursor:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        def execute(self, sql: str, params: Any = ()) -> CountingCursor:
            # Statements of the requests (not of the projector following the store).
            if threading.current_thread().name not in ("projector", "store-listener"):
                statements.append(sql)
            self.cursor.execute(sql, params)
            return self

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cursor, name)

    @contextlib.contextmanager
    def counting(**kwargs: Any) -> Iterator[CountingCursor]:
        with real(**kwargs) as cursor:
            yield CountingCursor(cursor)

    def no_aggregates(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a feed loaded an aggregate")

    monkeypatch.setattr(services.database, "transaction", counting)
    monkeypatch.setattr(services.commands.events, "get", no_aggregates)

    def cost(path: str, headers: dict[str, str] | None = None, **params: Any) -> int:
        statements.clear()
        response = http.get(path, params=params, headers=headers)
        assert response.status_code == (304 if headers else 200)
        return len(statements)

    # A feed read afresh: one query for a general feed, two for an incident's (its row,
    # its entries), whatever their size. Asked again while the read model stays where it
    # was: answered from memory, without a query (the process knows where the read model
    # is: api/answer_cache.py).
    for kind in (*KINDS, "json"):
        general = f"{INCIDENTS}/feed.json" if kind == "json" else GENERAL[kind]
        assert cost(general, max_items=1) == cost(general, max_items=100) == 1
        assert cost(general, max_items=100) == 0
        if kind == "json":
            continue
        one = cost(f"{INCIDENTS}/incident-small/{kind}")
        many = cost(f"{INCIDENTS}/incident-big/{kind}")
        assert one == many == 2
        assert cost(f"{INCIDENTS}/incident-big/{kind}") == 0
        tag = http.get(f"{INCIDENTS}/incident-big/{kind}").headers["etag"]
        assert cost(f"{INCIDENTS}/incident-big/{kind}", headers={"If-None-Match": tag}) == 0
        assert "big" in http.get(f"{INCIDENTS}/incident-big/{kind}").text
    # An empty feed also asks when the read model last changed.
    assert cost(GENERAL["rss"], service=["nowhere"]) == 2
