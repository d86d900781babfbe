"""Browser tests: Playwright (sync API) driving Debian's Chromium, headless, against a live
server. Without /usr/bin/chromium they are skipped loudly, or fail when CI is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from infra.bootstrap import Services, bootstrap
from tests.conftest import TOKENS, WRITER, LiveServer, make_settings

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Where the screenshots go: docs/screenshots when `make screenshots` says so, else a
# temporary folder (so `make test` leaves the working tree as it was).
SCREENSHOTS_ENV = "SCREENSHOTS_DIR"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
MISSING = (f"BROWSER TESTS NOT RUN: no Chromium at {CHROMIUM}. Install Debian's chromium "
           "(apt-get install -y chromium) to run them; CI (env CI set) fails instead.")
_skipped: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.path)).parents]
    if not mine:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(MISSING.replace("NOT RUN", "CANNOT RUN IN CI"))
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=MISSING))
    _skipped.append(f"{len(mine)} browser tests")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.section("BROWSER TESTS SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.write_line(f"{_skipped[0]} skipped. {MISSING}", red=True, bold=True)


@pytest.fixture(scope="module")
def browser_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One SQLite store per test module; tests in a module use their own incidents."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'store.db'}"
    built = bootstrap(make_settings(url))
    built.start_projections()
    yield built
    built.close()


@pytest.fixture(scope="module")
def server(browser_services: Services) -> Iterator[LiveServer]:
    live = LiveServer(browser_services)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """The JSON API as a writer (a cookie jar, so reads follow its writes)."""
    with httpx.Client(base_url=server.url, headers=WRITER, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    opened = browser.new_context(base_url=server.url, viewport=DESKTOP)
    opened.set_default_timeout(10_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def after_writes(api: httpx.Client, path: str) -> str:
    """`path` naming the position of the writes `api` made, as the `store_position` cookie
    does for a browser that wrote: an anonymous reader who names no position may be shown
    an answer kept from before them (stale while revalidating)."""
    position = api.cookies.get("store_position")
    if position is None:
        return path
    return f"{path}{'&' if '?' in path else '?'}min_position={position}"


def sign_in(page: Page, role: str, then: str = "/dashboard") -> None:
    """Signs in through the sign-in form, then lands on `then`."""
    page.goto("/dashboard/sign-in?next=" + then)
    page.get_by_label("API token").fill(TOKENS[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**" + then.split("?")[0] + "*")
