"""The Reports page and the response-target highlights in Chromium, with a clock moved by
hand: ten weeks of incidents at known times, then the charts drawn by the server (SVG, no
script or library), the figures beside them, the filters, and screenshots at desktop and
phone width (`make screenshots` writes them to docs/screenshots)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from infra.bootstrap import Services, bootstrap
from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS_ENV, sign_in
from tests.clock import Clock
from tests.conftest import LiveServer, make_settings

END = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday
FIRST_WEEK = datetime(2025, 12, 29, tzinfo=UTC)  # a Monday, nine weeks before END's
SEVERITIES = ("critical", "high", "medium", "low", "minor")


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(FIRST_WEEK)


@pytest.fixture(scope="module")
def browser_services(tmp_path_factory: pytest.TempPathFactory,
                     clock: Clock) -> Iterator[Services]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'store.db'}"
    built = bootstrap(make_settings(url), clock=clock)
    built.start_projections()
    yield built
    built.close()


def _post(api: httpx.Client, url: str, **fields: Any) -> str:
    answer = api.post(url, json=fields)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


@pytest.fixture(scope="module")
def story(api: httpx.Client, clock: Clock) -> None:
    """Per week n (0-9, the last END's): n % 3 + 1 incidents, each acknowledged after
    5 + 5n minutes and resolved after 1 + n/2 hours; week 4 has none. Then one critical
    incident nobody answered and one whose public heard nothing for two hours."""
    for week in range(10):
        monday = FIRST_WEEK + timedelta(weeks=week)
        count = 0 if week == 4 else week % 3 + 1
        for n in range(count):
            clock.at(monday + timedelta(days=n, hours=9))
            severity = SEVERITIES[(week + n) % 5]
            incident = _post(api, "/api/v1/incidents", title=f"Week {week} #{n}",
                             severity=severity, affected_services=["api" if n else "db"])
            clock.move(minutes=5 + 5 * week)
            _post(api, f"/api/v1/incidents/{incident}/updates", status="identified",
                  public_message="Found the cause")
            clock.at(monday + timedelta(days=n, hours=10 + week / 2))
            _post(api, f"/api/v1/incidents/{incident}/updates", status="resolved",
                  public_message="Fixed")
    clock.at(END - timedelta(hours=2))
    _post(api, "/api/v1/incidents", title="Checkout failing", severity="critical",
          affected_services=["checkout"])
    quiet = _post(api, "/api/v1/incidents", title="Search results stale", severity="low",
                  affected_services=["search"], public_message="Looking into it")
    clock.move(minutes=10)
    _post(api, f"/api/v1/incidents/{quiet}/updates", message="cache node restarted")
    clock.at(END)


def open_reports(page: Page, query: str = "") -> None:
    sign_in(page, "reader", "/dashboard/reports" + query)
    expect(page.locator("[data-chart]")).to_have_count(3)


@pytest.mark.usefixtures("story")
def test_the_reports_page_draws_the_figures(page: Page, api: httpx.Client) -> None:
    open_reports(page)
    report = api.get("/api/v1/reports/lifecycle",
                     params={"since": (FIRST_WEEK - timedelta(weeks=1)).isoformat()}).json()
    assert report["overall"]["count"] == 19
    # One bar segment per week and severity with incidents (within a week each incident
    # has a severity of its own here), titled with its count.
    segments = page.locator("[data-chart=per-week] svg rect")
    expect(segments).to_have_count(19)
    titles = segments.locator("title").all_text_contents()
    assert "Jan 19: 1 low" in titles
    assert not [t for t in titles if t.startswith("Jan 26")]  # week 4 had none
    assert sum(int(t.split(": ")[1].split()[0]) for t in titles) == 19
    # The trend: a point per week with acknowledged and resolved incidents (9 of the 12
    # weeks shown: two before the first, and week 4).
    expect(page.locator("[data-chart=trend] svg circle.chart-mtta")).to_have_count(9)
    expect(page.locator("[data-chart=trend] svg circle.chart-mttr")).to_have_count(9)
    # Time in status: investigating and identified (no incident was monitored).
    expect(page.locator("[data-chart=statuses] svg rect.bar")).to_have_count(2)
    expect(page.locator("[data-figure=resolved]")).to_have_text("17")
    ratio = report["overall"]["response_target_met_ratio"]
    expect(page.locator("[data-figure=met]")).to_have_text(f"{ratio:.0%}")
    expect(page.locator("tr[data-severity=critical] td").first).to_have_text(
        str(report["by_severity"]["critical"]["count"]))
    # Nothing but this origin was asked for, and no chart needed a script.
    assert page.locator("svg script").count() == 0


@pytest.mark.usefixtures("story")
def test_the_filters_narrow_the_report(page: Page) -> None:
    open_reports(page, "?service=checkout")
    expect(page.locator("#report-h")).to_contain_text("1 incident started")
    expect(page.locator("[data-figure=resolved]")).to_have_text("0")
    page.goto("/dashboard/reports?since=not-a-date")
    expect(page.locator(".errors")).to_contain_text("since")
    expect(page.locator("[data-chart]")).to_have_count(3)


@pytest.mark.usefixtures("story")
def test_the_dashboard_highlights_late_responses_and_overdue_updates(page: Page) -> None:
    sign_in(page, "reader")
    late = page.locator("tr.needs-attention", has_text="Checkout failing")
    expect(late.locator(".flag-late")).to_have_text("Response late")
    quiet = page.locator("tr.needs-attention", has_text="Search results stale")
    expect(quiet.locator(".flag-overdue")).to_have_text("Update overdue")
    expect(quiet.locator(".flag-late")).to_have_count(0)  # answered within 24 h
    expect(page.locator("tr", has_text="Week 9 #0").locator(".flag")).to_have_count(0)
    page.get_by_role("link", name="Checkout failing").click()
    expect(page.locator("[data-response]")).to_contain_text("none yet; due 2026-03-04 13:15")
    expect(page.locator(".incident-page .flag-late")).to_be_visible()


@pytest.mark.usefixtures("story")
def test_screenshots_of_the_reports_page(browser: Browser, server: LiveServer,
                                         tmp_path: Path) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(base_url=server.url, viewport=viewport,
                                      device_scale_factor=1, is_mobile=name == "phone")
        try:
            page = context.new_page()
            open_reports(page)
            expect(page.locator("[data-live-status]")).to_contain_text("Live")
            page.screenshot(path=folder / f"dashboard-reports-{name}.png", full_page=True)
        finally:
            context.close()
    for name in ("desktop", "phone"):
        shot = folder / f"dashboard-reports-{name}.png"
        assert shot.stat().st_mtime >= started - 1, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
