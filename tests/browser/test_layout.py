"""Hostile text stays inside the layout: a 10,000-character word wraps instead of widening the
page, and a name carrying a right-to-left override is isolated from the text around it, on
the status page, an incident's public page and the dashboard, in headless Chromium."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import DESKTOP, PHONE, after_writes, sign_in
from tests.conftest import LiveServer

WORD = "W" * 10_000
RLO = "\u202e"
# How far past the viewport the document may reach (rounding, a scroll bar).
MARGIN = 2


@pytest.fixture(scope="module")
def hostile(api: httpx.Client) -> dict[str, Any]:
    """An incident whose description and messages are one 10,000-character word, its title
    and a service and region one long word each, and whose first service, first region and
    update's author start with a right-to-left override."""
    tag = uuid.uuid4().hex[:8]
    rlo_service, next_service = f"{RLO}abc-{tag}", f"tail-{tag}"
    response = api.post("/api/v1/incidents", json={
        "title": f"{tag} {'T' * 190}",
        "description": WORD,
        "public_message": WORD,
        "internal_notes": WORD,
        "severity": "critical",
        "affected_services": [rlo_service, next_service, f"svc{'S' * 97}"],
        "affected_regions": [f"{RLO}region-{tag}", f"reg{'R' * 97}"],
    })
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()
    update = api.post(f"/api/v1/incidents/{incident['id']}/updates", json={
        "status": "identified", "public_message": WORD, "message": WORD,
        "author": f"{RLO}author-{tag}"})
    assert update.status_code == 201, update.text
    return {"id": incident["id"], "title": incident["title"], "rlo_service": rlo_service,
            "next_service": next_service}


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def viewport(request: pytest.FixtureRequest) -> ViewportSize:
    found: ViewportSize = request.param
    return found


@pytest.fixture
def sized(browser: Browser, server: LiveServer, viewport: ViewportSize) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport=viewport)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def assert_no_horizontal_overflow(page: Page, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    body = page.evaluate("document.body.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport + MARGIN, f"{where}: the page is {width}px wide in {viewport}px"
    assert body <= viewport + MARGIN, f"{where}: the body is {body}px wide in {viewport}px"


# Every text node on the page that holds a right-to-left override, with the element that holds
# it and that element's computed unicode-bidi; and, for each service named after an RLO
# service in the same line of text, the boxes of both names.
_BIDI = """([rlo, name, following]) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const holders = [];
    const found = [];
    while (walker.nextNode()) {
        const node = walker.currentNode;
        const parent = node.parentElement;
        if (parent.closest("textarea, script, style")) continue;
        if (node.textContent.includes(rlo)) {
            holders.push([parent.tagName, getComputedStyle(parent).unicodeBidi,
                          parent.textContent.trim() === node.textContent.trim(),
                          node.textContent.slice(0, 40)]);
        }
        const at = node.textContent.indexOf(name);
        if (at >= 0) found.push([node, at]);
    }
    // The line box where a text starts, or where it ends (a name may wrap).
    const box = (node, at, length, end) => {
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + length);
        const rects = [...range.getClientRects()].filter((r) => r.width > 0);
        const r = end ? rects[rects.length - 1] : rects[0];
        return [r.left, r.right, r.top, r.bottom];
    };
    const pairs = [];
    for (const [node, at] of found) {
        const block = node.parentElement.closest("p, dd, td, li, div");
        const rest = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
        rest.currentNode = node;
        let next = node, offset = node.textContent.indexOf(following, at);
        while (offset < 0 && (next = rest.nextNode())) offset = next.textContent.indexOf(following);
        if (offset < 0) continue;
        pairs.push({name: box(node, at, name.length, true),
                    next: box(next, offset, following.length, false)});
    }
    return {holders, pairs};
}"""


def assert_isolated(page: Page, hostile: dict[str, Any], where: str, *,
                    same_line: bool = True) -> None:
    """Each text holding a right-to-left override is the whole content of an element that
    isolates it (a <bdi>, or computed unicode-bidi isolate; block elements are isolates
    too, so the text must be alone in it), and the service listed after the RLO service is
    laid out after it (to its right on the same line, or on a later line), where an
    unisolated override would reverse the rest of the line and put it to the left."""
    expect(page.get_by_text(hostile["rlo_service"][1:], exact=False).first).to_be_attached()
    found = page.evaluate(_BIDI, [RLO, hostile["rlo_service"][1:], hostile["next_service"]])
    assert found["holders"], where
    for tag, bidi, alone, text in found["holders"]:
        assert alone, (where, tag, text)
        assert tag == "BDI" or "isolate" in bidi, (where, tag, bidi, text)
    assert found["pairs"], where
    on_one_line = 0
    for pair in found["pairs"]:
        name, after = pair["name"], pair["next"]
        if after[2] < name[3] - 1 and after[3] > name[2] + 1:  # the same line
            on_one_line += 1
            assert after[0] >= name[1] - 1, (where, pair)
        else:
            assert after[2] >= name[3] - 1, (where, pair)
    assert on_one_line or not same_line, (where, found["pairs"])


def test_the_incident_page_contains_a_long_word_and_an_rlo_name(
    hostile: dict[str, Any], sized: Page, api: httpx.Client
) -> None:
    sized.goto(after_writes(api, f"/incidents/{hostile['id']}"))
    expect(sized.get_by_role("heading", level=1)).to_contain_text(hostile["title"][:20])
    assert_no_horizontal_overflow(sized, "incident page")
    assert_isolated(sized, hostile, "incident page")


def test_the_status_page_contains_a_long_word_and_an_rlo_name(
    hostile: dict[str, Any], sized: Page, api: httpx.Client
) -> None:
    sized.goto(after_writes(api, "/"))
    expect(sized.locator("article.incident", has_text=hostile["title"][:20])).to_be_visible()
    assert_no_horizontal_overflow(sized, "status page")
    assert_isolated(sized, hostile, "status page")


def test_the_dashboard_contains_a_long_word_and_an_rlo_name(
    hostile: dict[str, Any], sized: Page
) -> None:
    sign_in(sized, "writer", f"/dashboard/incidents/{hostile['id']}")
    expect(sized.locator("[data-title]")).to_contain_text(hostile["title"][:20])
    expect(sized.locator("#update-form")).to_be_visible()
    assert_no_horizontal_overflow(sized, "dashboard incident")
    assert_isolated(sized, hostile, "dashboard incident")

    sized.goto(f"/dashboard?service={hostile['rlo_service']}")
    rows = sized.locator("table.incidents tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(hostile["title"][:20])
    assert_no_horizontal_overflow(sized, "dashboard")
    assert_isolated(sized, hostile, "dashboard", same_line=False)
