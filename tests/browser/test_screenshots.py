"""Screenshots of the status page and the dashboard, desktop and phone width, saved under
docs/screenshots/ (`make screenshots` refreshes them). Its own server, with a fixed story."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS_ENV, after_writes, sign_in
from tests.conftest import LiveServer

NOW = datetime.now(UTC).replace(microsecond=0)


def _at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def story(api: httpx.Client) -> None:
    def create(**fields: object) -> str:
        response = api.post("/api/v1/incidents", json=fields)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def update(incident_id: str, **fields: object) -> None:
        response = api.post(f"/api/v1/incidents/{incident_id}/updates", json=fields)
        assert response.status_code == 201, response.text

    old = create(title="Login page slow for some users", severity="medium",
                 incident_type="degraded_performance", affected_services=["auth"],
                 affected_regions=["eu-west"], start_time=_at(30),
                 public_message="Some users see slow logins.")
    update(old, status="resolved", public_message="Resolved after a cache fix.")
    create(title="Scheduled database maintenance", severity="low",
           incident_type="maintenance", affected_services=["reporting"], start_time=_at(3),
           public_message="Reports may be delayed during maintenance.")
    create(title="Network upgrade in eu-west", severity="low", incident_type="maintenance",
           affected_services=["api"], affected_regions=["eu-west"],
           scheduled_start=_at(-20), scheduled_end=_at(-22),
           public_message="Brief connection resets are expected during the window.")
    api_down = create(
        title="API errors in us-east", severity="high", incident_type="outage",
        affected_services=["api", "webhooks"], affected_regions=["us-east"], start_time=_at(1),
        public_message="We are investigating elevated error rates on the API.",
        internal_notes="Pager fired at 09:12; LB health checks failing.")
    update(api_down, status="identified", public_message="A faulty deploy is the cause; "
           "rolling back.", message="Rollback of release 2024.06.2 started", author="on-call")
    create(title="Internal: billing export retry storm", severity="minor", is_public=False,
           affected_services=["billing"], start_time=_at(0.5))


@pytest.mark.usefixtures("story")
def test_screenshots_of_the_status_page_and_the_dashboard(
    browser: Browser, server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(base_url=server.url, viewport=viewport,
                                      device_scale_factor=1, is_mobile=name == "phone")
        try:
            page = context.new_page()
            page.goto(after_writes(api, "/"))
            expect(page.get_by_role("heading", level=1)).to_have_text("Major outage")
            page.screenshot(path=folder / f"status-{name}.png", full_page=True)

            sign_in(page, "writer")
            expect(page.locator("table.incidents tbody tr")).to_have_count(5)
            expect(page.locator("[data-live-status]")).to_contain_text("Live")
            page.screenshot(path=folder / f"dashboard-{name}.png", full_page=True)

            page.get_by_role("link", name="API errors in us-east").click()
            expect(page.locator("[data-title]")).to_have_text("API errors in us-east")
            expect(page.locator("#update-form")).to_be_visible()
            page.screenshot(path=folder / f"dashboard-incident-{name}.png",
                            full_page=True)
        finally:
            context.close()
    shots = [folder / f"{view}-{size}.png" for view in ("status", "dashboard",
                                                       "dashboard-incident")
             for size in ("desktop", "phone")]
    for shot in shots:  # written by this run, and PNG images
        assert shot.stat().st_mtime >= started - 1, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
