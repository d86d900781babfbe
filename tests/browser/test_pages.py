"""The status page and the dashboard, driven in headless Chromium against a live server.

One server per module: every test makes its own incidents (unique names) and asserts on
those, so the tests do not depend on each other's data."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import after_writes, sign_in
from tests.conftest import LiveServer

RSS = "/api/v1/incidents/rss/feed"
ATOM = "/api/v1/incidents/atom/feed"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/v1/incidents", json={"title": unique("Incident"), **fields})
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def add_update(api: httpx.Client, incident_id: str, **fields: Any) -> None:
    response = api.post(f"/api/v1/incidents/{incident_id}/updates", json=fields)
    assert response.status_code == 201, response.text


def test_the_status_page_shows_an_incident_created_through_the_api(
    api: httpx.Client, page: Page
) -> None:
    service = unique("checkout")
    title = f"Checkout <b>errors</b> & timeouts {service}"
    incident = create(api, title=title, severity="high", incident_type="outage",
                      affected_services=[service], public_message="Payments are failing")
    add_update(api, incident["id"], status="identified",
               public_message="A bad deploy; rolling back")

    page.goto(after_writes(api, "/"))

    expect(page.get_by_role("heading", level=1)).to_have_text("Major outage")
    card = page.locator("article.incident", has_text=title)  # escaped, shown as typed
    expect(card).to_be_visible()
    expect(card.locator(".timeline .update").first).to_contain_text("A bad deploy; rolling back")
    expect(card.locator(".timeline .update").last).to_contain_text("Payments are failing")
    expect(page.locator(".services li.service", has_text=service)).to_contain_text(
        "Major outage")
    assert page.locator('link[rel=alternate][type="application/rss+xml"]').get_attribute(
        "href") == RSS
    assert page.locator('link[rel=alternate][type="application/atom+xml"]').get_attribute(
        "href") == ATOM
    expect(page.get_by_role("link", name="RSS").first).to_have_attribute("href", RSS)

    card.get_by_role("link", name=title).click()
    page.wait_for_url(f"**/incidents/{incident['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator(".timeline")).to_contain_text("A bad deploy; rolling back")


def test_an_anonymous_visitor_never_sees_an_internal_note(
    api: httpx.Client, browser: Browser, server: LiveServer
) -> None:
    marker = unique("INTERNAL-MARKER")
    public = create(api, internal_notes=f"{marker} notes", public_message="Public words",
                    affected_services=[unique("svc")])
    add_update(api, public["id"], status="monitoring", message=f"{marker} update",
               public_message="Watching it")
    private = create(api, title=f"{marker} private title", is_public=False)

    anonymous = browser.new_context(base_url=server.url)
    page = anonymous.new_page()
    try:
        for path, status in (("/", 200), (f"/incidents/{public['id']}", 200),
                             (f"/incidents/{private['id']}", 404),
                             ("/incidents/incident-unknown", 404)):
            response = page.goto(path)
            assert response is not None, path
            assert response.status == status, path
            assert marker not in page.content(), path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        page.goto(f"/incidents/{public['id']}")
        expect(page.locator(".timeline")).to_contain_text("Watching it")
        # Without a token the dashboard sends the visitor to sign in, showing nothing.
        page.goto(f"/dashboard/incidents/{public['id']}")
        page.wait_for_url("**/dashboard/sign-in**")
        assert marker not in page.content()
        fragment = page.request.get(f"/dashboard/fragments/incidents/{public['id']}")
        assert fragment.status == 401
        assert marker not in fragment.text()
    finally:
        anonymous.close()

    # A reader does see them: the marker is really on the page when it may be.
    reader = browser.new_context(base_url=server.url)
    page = reader.new_page()
    try:
        sign_in(page, "reader", f"/dashboard/incidents/{public['id']}")
        expect(page.locator("dd.internal")).to_have_text(f"{marker} notes")
        expect(page.locator(".timeline")).to_contain_text(f"{marker} update")
    finally:
        reader.close()


def test_the_dashboard_cards_and_table_follow_filters_and_pages(
    api: httpx.Client, page: Page
) -> None:
    service = unique("search")
    titles = [f"{service} incident {n}" for n in range(5)]
    for n, title in enumerate(titles):
        create(api, title=title, severity="critical" if n % 2 == 0 else "low",
               affected_services=[service], is_public=n != 4)
    sign_in(page, "reader")

    summary = api.get("/api/v1/incidents/status/summary").json()
    expect(page.locator('[data-card="active"]')).to_have_text(str(summary["active"]))
    expect(page.locator('[data-card="investigating"]')).to_have_text(
        str(summary["by_status"]["investigating"]))
    expect(page.locator('[data-card="severity-critical"]')).to_have_text(
        str(summary["by_severity"]["critical"]))

    page.get_by_label("Services (comma-separated)").fill(service)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("[data-total]")).to_have_text("5")
    rows = page.locator("table.incidents tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text(titles[4])  # newest first, private ones included
    expect(rows.first).to_contain_text("Private")

    page.get_by_role("group", name="Severity").get_by_label("Critical").check()
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("[data-total]")).to_have_text("3")
    expect(rows).to_have_count(3)
    expect(page.get_by_label("Services (comma-separated)")).to_have_value(service)

    # Two per page: the cursor pages keep the filters.
    page.goto(page.url.replace("limit=10", "limit=2"))
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(titles[4])
    expect(rows.nth(1)).to_contain_text(titles[2])
    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(titles[0])
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    expect(rows.first).to_contain_text(titles[4])

    page.get_by_label("Text in title or description").fill(titles[2])
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(page.locator("[data-total]")).to_have_text("1")


def test_a_second_browser_sees_a_new_update_and_incident_live(
    api: httpx.Client, browser: Browser, server: LiveServer
) -> None:
    incident = create(api, title=unique("Live"))
    watching_incident = browser.new_context(base_url=server.url)
    watching_list = browser.new_context(base_url=server.url)
    try:
        one = watching_incident.new_page()
        sign_in(one, "reader", f"/dashboard/incidents/{incident['id']}")
        expect(one.locator("[data-live-status]")).to_contain_text("Live")
        two = watching_list.new_page()
        sign_in(two, "reader")
        expect(two.locator("[data-live-status]")).to_contain_text("Live")
        active_before = int(two.locator('[data-card="active"]').inner_text())

        add_update(api, incident["id"], status="identified", message="seen live, internally",
                   public_message="seen live, publicly")
        newcomer = create(api, title=unique("Appears live"))

        expect(one.locator(".timeline")).to_contain_text("seen live, internally")
        expect(one.locator("article .meta").first).to_contain_text("Identified")
        expect(two.locator("table.incidents")).to_contain_text(newcomer["title"])
        expect(two.locator('[data-card="active"]')).to_have_text(str(active_before + 1))
    finally:
        watching_incident.close()
        watching_list.close()


def test_a_writer_declares_changes_resolves_and_deletes_through_the_forms(
    api: httpx.Client, page: Page
) -> None:
    sign_in(page, "writer", "/dashboard/new")
    title = unique("Declared in the browser")
    page.get_by_label("Title").fill("   ")  # the API refuses it; the form says so by the field
    page.get_by_role("button", name="Declare incident").click()
    expect(page.locator('[data-error-for="title"]')).to_contain_text("at least 1 character")
    expect(page.get_by_label("Title")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Title").fill(title)
    page.get_by_label("Severity").select_option("high")
    page.get_by_label("Affected services").fill("api, web")
    page.get_by_label("Public message").fill("Looking into it")
    page.get_by_label("Internal notes").fill("pager fired")
    page.get_by_role("button", name="Declare incident").click()
    page.wait_for_url("**/dashboard/incidents/incident-*")
    incident_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("[data-title]")).to_have_text(title)
    expect(page.locator(".facts")).to_contain_text("api, web")

    details = page.locator("#incident-form")
    details.get_by_label("Affected services").fill("api, " + "x" * 101)  # over 100: refused
    details.get_by_role("button", name="Save details").click()
    expect(details.locator('[data-error-for="affected_services"]')).to_contain_text("100")
    expect(details.get_by_label("Affected services")).to_have_attribute("aria-invalid", "true")
    details.get_by_label("Affected services").fill("api, web")
    details.get_by_label("Title").fill(f"{title} (edited)")
    details.get_by_role("button", name="Save details").click()
    expect(page.locator("[data-title]")).to_have_text(f"{title} (edited)")

    update = page.locator("#update-form")
    update.get_by_label("New status").select_option("resolved")
    update.get_by_label("Public message").fill("Fixed and verified")
    update.get_by_role("button", name="Post update").click()
    expect(page.locator("article .meta").first).to_contain_text("Resolved")
    expect(page.locator(".timeline")).to_contain_text("Fixed and verified")

    body = api.get(f"/api/v1/incidents/{incident_id}").json()
    assert body["status"] == "resolved"
    assert body["title"] == f"{title} (edited)"
    assert body["affected_services"] == ["api", "web"]
    page.goto("/")
    expect(page.locator("section", has_text="Recently resolved")).to_contain_text(
        f"{title} (edited)")

    page.goto(f"/dashboard/incidents/{incident_id}")
    delete = page.locator("#delete-form")
    delete.get_by_role("button", name="Delete incident").click()
    expect(delete.locator('[data-error-for="confirm"]')).to_contain_text("Tick the box")
    delete.get_by_label("Yes, delete this incident").check()
    delete.get_by_role("button", name="Delete incident").click()
    page.wait_for_url("**/dashboard")
    assert api.get(f"/api/v1/incidents/{incident_id}").status_code == 404


def test_a_writer_schedules_maintenance_in_utc_and_the_status_page_shows_it(
    api: httpx.Client, page: Page
) -> None:
    sign_in(page, "writer", "/dashboard/new")
    title = unique("Database upgrade")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Type").select_option("maintenance")
    page.get_by_label("Maintenance window start (UTC)").fill("2099-03-29T01:30")
    page.get_by_label("Maintenance window end (UTC)").fill("2099-03-29T00:30")  # before it
    page.get_by_role("button", name="Declare incident").click()
    expect(page.locator('[data-error-for="scheduled_end"]')).to_contain_text("after")
    page.get_by_label("Maintenance window end (UTC)").fill("2099-03-29T03:30")
    page.get_by_role("button", name="Declare incident").click()
    page.wait_for_url("**/dashboard/incidents/incident-*")
    incident_id = page.url.rsplit("/", 1)[1]
    body = api.get(f"/api/v1/incidents/{incident_id}").json()
    assert (body["status"], body["scheduled_start"], body["scheduled_end"]) == (
        "scheduled", "2099-03-29T01:30:00Z", "2099-03-29T03:30:00Z")

    details = page.locator("#incident-form")  # moved while scheduled
    details.get_by_label("Maintenance window start (UTC)").fill("2099-03-29T02:00")
    details.get_by_role("button", name="Save details").click()
    expect(page.locator(".facts")).to_contain_text("2099-03-29 02:00 UTC")
    assert api.get(f"/api/v1/incidents/{incident_id}").json()["scheduled_start"] == \
        "2099-03-29T02:00:00Z"

    page.goto("/")
    section = page.get_by_role("region", name="Scheduled maintenance")
    expect(section).to_contain_text(title)
    expect(section).to_contain_text("2099-03-29 02:00 UTC")
    expect(page.get_by_role("region", name="Active incidents")).not_to_contain_text(title)


def test_a_service_with_only_a_maintenance_in_progress_is_under_maintenance(
    api: httpx.Client, page: Page
) -> None:
    service = unique("cache")
    create(api, incident_type="maintenance", severity="critical", affected_services=[service],
           public_message="Swapping the cache nodes")
    page.goto(after_writes(api, "/"))
    state = page.locator(".services li.service", has_text=service).locator(".state")
    expect(state).to_have_text("Under maintenance")
    expect(state).to_have_class("state state-maintenance")
    expect(state).to_have_css("color", "rgb(11, 79, 156)")
