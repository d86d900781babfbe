"""The postmortem editor of the dashboard and the published postmortem on the public page,
in headless Chromium: the preview is the server's sanitised rendering, hostile Markdown
never runs (no dialog, no handler), and what is published is what the public sees."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.browser.conftest import DESKTOP, SCREENSHOTS_ENV, sign_in
from tests.conftest import LiveServer

HOSTILE = (
    "# What happened\n\n"
    "A cache node **expired** every key at 09:12 UTC.\n\n"
    "<script>window.pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"window.pwned = 'onerror'\">\n\n"
    "[a harmless link?](javascript:window.pwned='link')\n\n"
    "## What we change\n\n"
    "1. Stagger cache expiry\n2. Alert on hit-rate drops\n\n"
    "| When (UTC) | What |\n| --- | --- |\n| 09:12 | errors start |\n| 09:40 | fixed |\n\n"
    "See the [runbook](https://example.com/runbook).\n"
)


def resolved(api: httpx.Client, **fields: Any) -> str:
    title = f"Checkout errors {uuid.uuid4().hex[:6]}"
    created = api.post("/api/v1/incidents", json={"title": title, "severity": "high",
                                                  "affected_services": ["checkout"],
                                                  **fields})
    assert created.status_code == 201, created.text
    incident_id = str(created.json()["id"])
    answer = api.post(f"/api/v1/incidents/{incident_id}/updates",
                      json={"status": "resolved", "public_message": "Fixed"})
    assert answer.status_code == 201, answer.text
    return incident_id


def watch_for_scripts(page: Page) -> list[str]:
    """Dialogs opened by the page (none may be)."""
    dialogs: list[str] = []

    def opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", opened)
    return dialogs


def write_in_the_editor(page: Page, incident_id: str) -> None:
    sign_in(page, "writer", f"/dashboard/incidents/{incident_id}")
    editor = page.locator("#postmortem-form")
    expect(editor).to_be_visible()
    editor.get_by_label("Postmortem (Markdown)").fill(HOSTILE)
    preview = page.locator("#postmortem-preview")
    expect(preview.get_by_role("heading", name="What happened")).to_be_visible()
    expect(preview.locator("table td").first).to_have_text("09:12")


def test_a_writer_previews_and_publishes_a_postmortem_that_stays_inert(
    api: httpx.Client, page: Page
) -> None:
    dialogs = watch_for_scripts(page)
    active = api.post("/api/v1/incidents", json={"title": "Still active"}).json()["id"]
    sign_in(page, "writer", f"/dashboard/incidents/{active}")
    expect(page.locator("#update-form")).to_be_visible()
    expect(page.locator("#postmortem-form")).to_have_count(0)  # not before it is resolved

    incident_id = resolved(api)
    write_in_the_editor(page, incident_id)
    preview = page.locator("#postmortem-preview")
    # The raw HTML is shown as text; nothing of it is an element.
    expect(preview).to_contain_text("<script>window.pwned = 'script'</script>")
    expect(preview.locator("script, img, [onerror]")).to_have_count(0)
    link = preview.get_by_role("link", name="runbook")
    expect(link).to_have_attribute("rel", "nofollow noopener")
    expect(preview.locator("a[href^='javascript']")).to_have_count(0)

    editor = page.locator("#postmortem-form")
    editor.get_by_role("button", name="Save postmortem").click()  # a draft first
    view = page.locator("#postmortem")
    expect(view).to_contain_text("Draft, not public")
    assert api.get(f"/api/v1/incidents/{incident_id}").json()["postmortem"]["published"] \
        is False
    page.goto(f"/incidents/{incident_id}")
    expect(page.locator("#postmortem")).to_have_count(0)

    page.goto(f"/dashboard/incidents/{incident_id}")
    editor = page.locator("#postmortem-form")
    expect(editor.get_by_label("Postmortem (Markdown)")).to_have_value(HOSTILE)
    editor.get_by_label("Published").check()
    editor.get_by_role("button", name="Save postmortem").click()
    expect(page.locator("#postmortem")).to_contain_text("Published")

    page.goto(f"/incidents/{incident_id}")
    published = page.locator("#postmortem")
    expect(published.get_by_role("heading", name="What we change")).to_be_visible()
    expect(published.locator("ol li")).to_have_count(2)
    expect(published.locator("script, img, [onerror]")).to_have_count(0)
    assert page.evaluate("window.pwned === undefined")
    assert dialogs == []


def test_a_stale_editor_is_told_someone_changed_the_incident(
    api: httpx.Client, page: Page
) -> None:
    incident_id = resolved(api)
    write_in_the_editor(page, incident_id)
    changed = api.put(f"/api/v1/incidents/{incident_id}/postmortem",
                      json={"body": "written elsewhere", "published": False})
    assert changed.status_code == 200
    page.locator("#postmortem-form").get_by_role("button", name="Save postmortem").click()
    expect(page.locator("#postmortem-form .form-error")).to_contain_text("Someone changed")
    body = api.get(f"/api/v1/incidents/{incident_id}").json()["postmortem"]["body"]
    assert body == "written elsewhere"


def test_screenshots_of_the_postmortem_editor_and_the_published_postmortem(
    api: httpx.Client, browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    incident_id = resolved(api, title="Checkout errors in eu-west")
    context = browser.new_context(base_url=server.url, viewport=DESKTOP,
                                  device_scale_factor=1)
    try:
        page = context.new_page()
        write_in_the_editor(page, incident_id)
        page.locator("#postmortem-form").get_by_label("Published").check()
        page.locator("#postmortem-form").scroll_into_view_if_needed()
        page.locator("#postmortem-form").screenshot(
            path=folder / "dashboard-postmortem-editor-desktop.png")
        page.locator("#postmortem-form").get_by_role("button", name="Save postmortem").click()
        expect(page.locator("#postmortem")).to_contain_text("Published")
        page.goto(f"/incidents/{incident_id}")
        expect(page.locator("#postmortem")).to_be_visible()
        page.screenshot(path=folder / "incident-postmortem-desktop.png", full_page=True)
    finally:
        context.close()
    for name in ("dashboard-postmortem-editor-desktop.png", "incident-postmortem-desktop.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
