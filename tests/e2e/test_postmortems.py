"""Postmortems over HTTP, on SQLite and PostgreSQL: `PUT .../postmortem` (a writer, once
resolved, If-Match, a valid body), who sees a draft and who a published one (API, public
page, timeline), the feeds once published, and the preview."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import feedparser  # type: ignore[import-untyped]
import httpx
import pytest

from tests.conftest import READER, TOKENS, WRITER
from tests.unit.test_postmortem import assert_inert

INCIDENTS = "/api/v1/incidents"
PROBLEM = "application/problem+json"
ATOM = "{http://www.w3.org/2005/Atom}"
TYPE = "com.example.incident.postmortem_updated"
HOSTILE = ("# Lessons learned\n\nThe cache **expired**.\n\n<script>alert('pm')</script>\n\n"
           "[harmless?](javascript:alert(1)) <img src=x onerror=alert(2)>\n\n"
           "[runbook](https://example.com/runbook)\n")


def create(http: httpx.Client, **fields: Any) -> str:
    response = http.post(INCIDENTS, json={"title": "Checkout is down", **fields},
                         headers=WRITER)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


def resolved(http: httpx.Client, **fields: Any) -> str:
    incident_id = create(http, **fields)
    answer = http.post(f"{INCIDENTS}/{incident_id}/updates", headers=WRITER,
                       json={"status": "resolved", "public_message": "Fixed"})
    assert answer.status_code == 201, answer.text
    return incident_id


def write(http: httpx.Client, incident_id: str, body: str, published: bool,
          **headers: str) -> httpx.Response:
    return http.put(f"{INCIDENTS}/{incident_id}/postmortem", headers={**WRITER, **headers},
                    json={"body": body, "published": published})


def events(http: httpx.Client, incident_id: str) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/events", params={"subject": incident_id}, headers=READER)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["items"]
    return found


def test_only_a_resolved_incident_takes_a_postmortem_from_a_writer(http: httpx.Client) -> None:
    incident_id = create(http)
    url = f"{INCIDENTS}/{incident_id}/postmortem"
    early = write(http, incident_id, "too early", False)
    assert early.status_code == 409
    assert early.headers["content-type"] == PROBLEM
    assert "resolved" in early.json()["detail"]
    body = {"body": "text", "published": True}
    assert http.put(url, json=body).status_code == 401
    assert http.put(url, json=body, headers=READER).status_code == 403
    assert http.put(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    unknown = http.put(f"{INCIDENTS}/incident-{'0' * 32}/postmortem", json=body,
                       headers=WRITER)
    assert unknown.status_code == 404
    http.post(f"{INCIDENTS}/{incident_id}/updates", headers=WRITER, json={"status": "resolved"})
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    assert http.put(url, json=body, headers=admin).status_code == 200
    # Post-incident review takes one too; a deleted incident none.
    assert http.post(f"{INCIDENTS}/{incident_id}/updates", headers=WRITER,
                     json={"status": "post_incident"}).status_code == 201
    assert write(http, incident_id, "in review", True).status_code == 200
    assert http.delete(f"{INCIDENTS}/{incident_id}", headers=WRITER).status_code == 204
    assert write(http, incident_id, "gone", True).status_code == 409
    assert [e["type"] for e in events(http, incident_id)].count(TYPE) == 2


@pytest.mark.parametrize("body", [
    {}, {"published": True}, {"body": ""}, {"body": None}, {"body": 5},
    {"body": "x" * 50_001}, {"body": "nul \x00 here"}, {"body": "x", "published": "yes"},
    {"body": "x", "published": 1}, {"body": "x", "published": None},
    {"body": "x", "updated_at": "2026-01-01T00:00:00Z"}, [], "text",
])
def test_a_bad_body_is_422_and_changes_nothing(http: httpx.Client, body: Any) -> None:
    incident_id = resolved(http)
    before = http.get(f"{INCIDENTS}/{incident_id}", headers=READER).json()
    answer = http.put(f"{INCIDENTS}/{incident_id}/postmortem", json=body, headers=WRITER)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert http.get(f"{INCIDENTS}/{incident_id}", headers=READER).json() == before
    assert TYPE not in [e["type"] for e in events(http, incident_id)]


def test_the_longest_body_is_taken(http: httpx.Client) -> None:
    incident_id = resolved(http)
    answer = write(http, incident_id, "x" * 50_000, False)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["postmortem"]["body"]) == 50_000


def test_if_match_repeats_and_the_actor(http: httpx.Client) -> None:
    incident_id = resolved(http)
    version = http.get(f"{INCIDENTS}/{incident_id}", headers=READER).json()["version"]
    stale = write(http, incident_id, "draft", False, **{"If-Match": f'"{version - 1}"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == f'"{version}"'
    first = write(http, incident_id, "draft", False, **{"If-Match": f'"{version}"'})
    assert first.status_code == 200, first.text
    assert first.headers["etag"] == f'"{version + 1}"'
    assert "idempotent-replayed" not in first.headers
    postmortem = first.json()["postmortem"]
    assert postmortem == {"body": "draft", "published": False,
                          "updated_at": first.json()["updated_at"]}
    # The same again records nothing, and answers as the first did.
    again = write(http, incident_id, "draft", False)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # Still the version the first made, so the old If-Match now fails.
    assert write(http, incident_id, "draft", True,
                 **{"If-Match": f'"{version}"'}).status_code == 412
    published = write(http, incident_id, "draft", True, **{"If-Match": f'"{version + 1}"'})
    assert published.status_code == 200
    assert published.json()["version"] == version + 2
    stored = [e for e in events(http, incident_id) if e["type"] == TYPE]
    assert [(e["data"], e["actor"]) for e in stored] == [
        ({"incident_id": incident_id, "body": "draft", "published": False}, "writer"),
        ({"incident_id": incident_id, "body": "draft", "published": True}, "writer")]
    # A command answers what a read then shows.
    read = http.get(f"{INCIDENTS}/{incident_id}", headers=READER)
    assert read.json() == published.json()
    assert read.headers["etag"] == published.headers["etag"]


def public_page(http: httpx.Client, incident_id: str) -> str:
    page = http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    return page.text


def test_readers_see_a_draft_and_everyone_a_published_one(http: httpx.Client) -> None:
    incident_id = resolved(http)
    url = f"{INCIDENTS}/{incident_id}"
    assert http.get(url).json()["postmortem"] is None
    assert write(http, incident_id, "SECRET draft of the postmortem", False).status_code == 200
    assert http.get(url, headers=READER).json()["postmortem"]["body"] == (
        "SECRET draft of the postmortem")
    assert http.get(url).json()["postmortem"] is None
    for text in (public_page(http, incident_id), http.get(f"{url}/timeline").text,
                 http.get(f"{url}/rss").text, http.get(f"{INCIDENTS}/atom/feed").text):
        assert "SECRET" not in text
        assert "Postmortem" not in text

    assert write(http, incident_id, HOSTILE, True).status_code == 200
    shown = http.get(url).json()["postmortem"]
    assert shown["body"] == HOSTILE
    assert shown["published"] is True
    page = public_page(http, incident_id)
    section = page.split('<section class="postmortem"', 1)[1].split("</section>", 1)[0]
    assert "<h1>Lessons learned</h1>" in section
    assert "<strong>expired</strong>" in section
    assert '<a href="https://example.com/runbook" rel="nofollow noopener">' in section
    assert "&lt;script&gt;alert(&#39;pm&#39;)&lt;/script&gt;" in section \
        or "&lt;script&gt;alert('pm')&lt;/script&gt;" in section
    assert_inert(section.split('<div class="markdown">', 1)[1].split("</div>", 1)[0])
    public_events = [e for e in http.get(f"{url}/timeline").json()["items"]
                     if e["type"] == TYPE]
    assert [e["data"]["published"] for e in public_events] == [True]

    # Withdrawn: hidden again everywhere but from readers.
    assert write(http, incident_id, "SECRET withdrawn", False).status_code == 200
    assert http.get(url).json()["postmortem"] is None
    assert "Lessons learned" not in public_page(http, incident_id)
    assert "SECRET" not in http.get(f"{url}/timeline").text
    assert http.get(url, headers=READER).json()["postmortem"]["published"] is False


def test_a_private_incident_shows_its_postmortem_to_nobody_without_a_token(
        http: httpx.Client) -> None:
    incident_id = resolved(http, is_public=False)
    assert write(http, incident_id, "SECRET published", True).status_code == 200
    assert http.get(f"{INCIDENTS}/{incident_id}").status_code == 404
    assert http.get(f"/incidents/{incident_id}").status_code == 404
    assert http.get(f"{INCIDENTS}/{incident_id}/rss").status_code == 404
    assert "SECRET" not in http.get(f"{INCIDENTS}/rss/feed").text
    assert "SECRET" not in http.get(f"{INCIDENTS}/atom/feed").text
    assert http.get(f"{INCIDENTS}/{incident_id}",
                    headers=READER).json()["postmortem"]["published"] is True


def feed(http: httpx.Client, path: str) -> tuple[ET.Element, httpx.Response]:
    response = http.get(path)
    assert response.status_code == 200, response.text
    parsed = feedparser.parse(response.content, response_headers={
        "content-type": response.headers["content-type"],
        "content-location": str(response.request.url)})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return ET.fromstring(response.content), response


def postmortem_items(root: ET.Element, incident_id: str) -> list[tuple[str, str]]:
    """(title, HTML) of the postmortem items of an RSS or Atom feed."""
    found = []
    for item in root.iter("item"):
        if (item.findtext("link") or "").endswith(f"{incident_id}#postmortem"):
            assert item.findtext("guid") == item.findtext("link")
            found.append((item.findtext("title") or "", item.findtext("description") or ""))
    for entry in root.iter(f"{ATOM}entry"):
        link = entry.find(f"{ATOM}link")
        if link is not None and (link.get("href") or "").endswith(f"{incident_id}#postmortem"):
            content = entry.find(f"{ATOM}content")
            assert content is not None
            assert content.get("type") == "html"
            found.append((entry.findtext(f"{ATOM}title") or "", content.text or ""))
    return found


def test_the_feeds_carry_a_postmortem_once_published(http: httpx.Client) -> None:
    incident_id = resolved(http, title="Payments failing")
    other = resolved(http, title="Search slow")
    paths = [f"{INCIDENTS}/{incident_id}/rss", f"{INCIDENTS}/{incident_id}/atom",
             f"{INCIDENTS}/rss/feed", f"{INCIDENTS}/atom/feed"]
    etags = {p: feed(http, p)[1].headers["etag"] for p in paths}
    assert write(http, incident_id, "SECRET draft", False).status_code == 200
    for path in paths:  # a draft is no public change
        root, response = feed(http, path)
        assert response.headers["etag"] == etags[path]
        assert postmortem_items(root, incident_id) == []

    assert write(http, incident_id, HOSTILE, True).status_code == 200
    for path in paths:
        root, response = feed(http, path)
        assert response.headers["etag"] != etags[path]
        etags[path] = response.headers["etag"]
        [(title, html)] = postmortem_items(root, incident_id)
        assert title == "Payments failing - Postmortem"
        assert "<h1>Lessons learned</h1>" in html
        assert_inert(html)
        assert "SECRET" not in response.text
    # In the general feeds, right after its incident's item, which it moved to the top.
    rss, _ = feed(http, f"{INCIDENTS}/rss/feed")
    links = [i.findtext("link") or "" for i in rss.iter("item")]
    assert [link.split("/incidents/")[1] for link in links[:2]] == [
        incident_id, f"{incident_id}#postmortem"]
    assert any(link.endswith(other) for link in links)
    # The incident's own feed: newest first, so the postmortem leads.
    own, _ = feed(http, f"{INCIDENTS}/{incident_id}/atom")
    first = own.find(f"{ATOM}entry")
    assert first is not None
    assert first.findtext(f"{ATOM}title") == "Payments failing - Postmortem"
    published = first.findtext(f"{ATOM}published")

    # Changed: the same item (id and published), updated.
    assert write(http, incident_id, "# Lessons learned, revised", True).status_code == 200
    own, _ = feed(http, f"{INCIDENTS}/{incident_id}/atom")
    first = own.find(f"{ATOM}entry")
    assert first is not None
    assert first.findtext(f"{ATOM}published") == published
    assert (first.findtext(f"{ATOM}updated") or "") > (published or "")
    assert "revised" in (first.findtext(f"{ATOM}content") or "")

    # Withdrawn: gone from every feed.
    assert write(http, incident_id, "withdrawn", False).status_code == 200
    for path in paths:
        root, response = feed(http, path)
        assert response.headers["etag"] != etags[path]
        assert postmortem_items(root, incident_id) == []


def test_the_preview_renders_as_the_public_page_does(http: httpx.Client) -> None:
    url = "/api/v1/postmortems/preview"
    answer = http.post(url, json={"body": HOSTILE}, headers=WRITER)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    html = answer.json()["html"]
    assert "<h1>Lessons learned</h1>" in html
    assert_inert(html)
    assert http.post(url, json={"body": "x"}).status_code == 401
    assert http.post(url, json={"body": "x"}, headers=READER).status_code == 403
    for bad in ({}, {"body": "x" * 50_001}, {"body": "x", "published": True}, {"body": 1}):
        refused = http.post(url, json=bad, headers=WRITER)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"] == PROBLEM
