"""The status page's 90-day bars and the history page in Chromium, with incidents at known
times on a clock of the test's own: a day's colour is its worst severity, its tooltip names
its incidents and shows on hover and on keyboard focus, on a desktop and on a phone (where
the last 30 days are shown); `/history` lists past public incidents by month, newest first,
a page at a time. Screenshots of both go to docs/screenshots with `make screenshots`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from commands.application import NewIncident, NewUpdate
from domain.values import IncidentType, Severity, Status
from infra.bootstrap import Services, bootstrap
from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS_ENV
from tests.clock import Clock
from tests.conftest import LiveServer, make_settings

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dataclass
class Story:
    services: Services
    clock: Clock
    ids: dict[str, str]

    def declare(self, title: str, when: datetime, **details: Any) -> str:
        self.clock.now = when
        written = self.services.commands.create(NewIncident(
            title=title, start_time=when, given=frozenset({"title"}), **details))
        self.ids[title] = written.incident_id
        return written.incident_id

    def move(self, title: str, when: datetime, status: Status) -> None:
        self.clock.now = when
        self.services.commands.add_update(self.ids[title], NewUpdate(
            status=status, public_message=f"Now {status.value}"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tell(story: Story) -> None:
    story.declare("Checkout errors across midnight", at("2026-03-07T23:00"),
                  severity=Severity.HIGH, affected_services=("api",))
    story.move("Checkout errors across midnight", at("2026-03-08T01:00"), Status.RESOLVED)
    story.declare("Database failover", at("2026-03-09T02:00"), severity=Severity.CRITICAL,
                  affected_services=("api", "db"))
    story.move("Database failover", at("2026-03-09T05:00"), Status.RESOLVED)
    story.declare("Slow dashboards", at("2026-03-10T10:00"), severity=Severity.LOW,
                  affected_services=("web",))
    story.declare("Storage upgrade", at("2026-03-05T10:00"),
                  incident_type=IncidentType.MAINTENANCE, affected_services=("db",))
    story.move("Storage upgrade", at("2026-03-05T12:00"), Status.RESOLVED)
    for hidden in ("Secret outage", "Deleted outage"):
        story.declare(hidden, at("2026-03-09T12:00"), severity=Severity.CRITICAL,
                      is_public=not hidden.startswith("Secret"),
                      affected_services=("api", f"{hidden.split()[0].lower()}-service"))
        story.move(hidden, at("2026-03-09T13:00"), Status.RESOLVED)
    story.services.commands.delete(story.ids["Deleted outage"])
    # 24 more past incidents over the months before, for the history's pages.
    for n in range(24):
        title = f"Past incident {n:02d}"
        started = NOW - timedelta(days=10 + 9 * n)
        story.declare(title, started, severity=Severity.MEDIUM, affected_services=("api",))
        story.move(title, started + timedelta(minutes=30), Status.RESOLVED)
    story.clock.now = NOW


@pytest.fixture(scope="module")
def browser_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """This module's own store, on a clock of its own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('bars') / 'store.db'}"
    clock = Clock(NOW)
    built = bootstrap(make_settings(url), clock=clock)
    story = Story(built, clock, {})
    tell(story)
    built.projector.catch_up()
    yield built
    built.close()


def day_cell(page: Page, service: str, date: str) -> Any:
    row = page.locator("li.service").filter(has=page.locator(".name", has_text=service))
    return row.locator("li.day").filter(has=page.locator(".sr-only", has_text=date))


def test_bars_colour_each_day_and_name_its_incidents(page: Page) -> None:
    page.goto("/")
    services = page.locator("li.service .name")
    expect(services).to_have_text(["api", "db", "web"])
    api = page.locator("li.service").first
    expect(api.locator("li.day")).to_have_count(90)
    expect(day_cell(page, "api", "2026-03-08")).to_have_class("day day-high")
    expect(day_cell(page, "api", "2026-03-07")).to_have_class("day day-high")
    failover = day_cell(page, "api", "2026-03-09")
    expect(failover).to_have_class("day day-critical")
    expect(day_cell(page, "api", "2026-03-10")).to_have_class("day day-none")
    expect(day_cell(page, "db", "2026-03-05")).to_have_class("day day-maintenance")
    expect(day_cell(page, "web", "2026-03-10")).to_have_class("day day-low")
    expect(page.locator("li.service .state")).to_have_text(
        ["Operational", "Operational", "Degraded performance"])

    tip = failover.locator(".tip")
    expect(tip).to_be_hidden()
    failover.hover()
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("2026-03-09")
    expect(tip).to_contain_text("Critical severity, 180 minutes affected")
    expect(tip).to_contain_text("Database failover")
    midnight = day_cell(page, "api", "2026-03-07").locator(".tip")
    day_cell(page, "api", "2026-03-07").hover()
    expect(midnight).to_contain_text("High severity, 60 minutes affected")
    expect(midnight).to_contain_text("Checkout errors across midnight")
    body = page.content()
    for hidden in ("Secret outage", "Deleted outage", "secret-service", "deleted-service"):
        assert hidden not in body


def test_the_days_are_reached_with_the_keyboard(page: Page) -> None:
    page.goto("/")
    for _ in range(40):  # from the top of the page, Tab until a day has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('day')"):
            break
    else:
        pytest.fail("no day of a bar is reached with Tab")
    focused = page.locator("li.day:focus")
    expect(focused.locator(".tip")).to_be_visible()
    expect(focused.locator(".tip")).to_contain_text("No incidents")
    day_cell(page, "api", "2026-03-08").focus()
    page.keyboard.press("Tab")
    expect(page.locator("li.day:focus .tip")).to_contain_text("Database failover")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("li.day:focus .tip")).to_contain_text("Checkout errors")


def test_on_a_phone_the_last_30_days_are_shown_and_the_tooltip_fits(
    browser: Browser, server: LiveServer
) -> None:
    context = browser.new_context(base_url=server.url, viewport=PHONE, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        page.goto("/")
        api = page.locator("li.service").first
        expect(api.locator("li.day:visible")).to_have_count(30)
        cell = day_cell(page, "api", "2026-03-09")
        cell.tap()
        tip = cell.locator(".tip")
        expect(tip).to_be_visible()
        expect(tip).to_contain_text("Database failover")
        box = tip.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
        width = cell.bounding_box()
        assert width is not None
        assert width["width"] >= 8  # wide enough to tap
    finally:
        context.close()


def test_history_by_month_newest_first_a_page_at_a_time(page: Page) -> None:
    page.goto("/history")
    expect(page.get_by_role("heading", level=1)).to_have_text("Incident history")
    titles = page.locator("ul.history h3")
    expect(titles).to_have_count(20)
    expect(titles.first).to_have_text("Database failover")
    expect(titles.nth(1)).to_have_text("Checkout errors across midnight")
    expect(titles.nth(2)).to_have_text("Storage upgrade")
    months = page.locator("section.month h2").all_inner_texts()
    assert months[0] == "March 2026"
    assert months == sorted(set(months), key=months.index)  # each month once
    dates = [datetime.strptime(m, "%B %Y") for m in months]
    assert dates == sorted(dates, reverse=True)
    page.get_by_role("link", name="Older incidents").click()
    expect(titles).to_have_count(7)
    expect(titles.last).to_have_text("Past incident 23")
    expect(page.get_by_role("link", name="Older incidents")).to_have_count(0)
    expect(page.get_by_role("link", name="Newest")).to_be_visible()
    body = page.content()
    for hidden in ("Secret outage", "Deleted outage"):
        assert hidden not in body
    response = page.goto("/history?cursor=bm90LWEtY3Vyc29y")
    assert response is not None
    assert response.status == 400
    expect(page.locator(".errors")).to_contain_text("does not exist")


def test_screenshots_of_the_bars_and_the_history(browser: Browser, server: LiveServer,
                                                 tmp_path: Path) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(base_url=server.url, viewport=viewport,
                                      device_scale_factor=1, is_mobile=name == "phone")
        try:
            page = context.new_page()
            page.goto("/")
            day_cell(page, "api", "2026-03-09").focus()
            page.locator("#services-heading").scroll_into_view_if_needed()
            page.screenshot(path=folder / f"status-bars-{name}.png")
            page.goto("/history")
            page.screenshot(path=folder / f"history-{name}.png", full_page=True)
        finally:
            context.close()
    for shot in ("status-bars", "history"):
        for size in ("desktop", "phone"):
            assert (folder / f"{shot}-{size}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
