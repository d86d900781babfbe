"""The subscribers' pages in Chromium: the status page's form, the confirmation page the
mailed link opens, and the unsubscribe page of a received message; screenshots of each
(docs/screenshots when `make screenshots` runs)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from infra.bootstrap import Services, bootstrap
from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS_ENV, after_writes
from tests.conftest import TOKENS, LiveServer, make_settings
from tests.receivers import SmtpReceiver

ADDRESS = "reader@example.org"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def browser_services(tmp_path_factory: pytest.TempPathFactory,
                     smtp: SmtpReceiver) -> Iterator[Services]:
    url = f"sqlite:///{tmp_path_factory.mktemp('subscribe') / 'store.db'}"
    built = bootstrap(make_settings(url, SMTP_URL=smtp.url,
                                    PUBLIC_BASE_URL="https://status.example.com"))
    built.start_projections()
    built.start_delivery()
    yield built
    built.close()


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def shoot(page: Page, name: str, folder: Path) -> None:
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=folder / f"{name}-{size}.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def wait_for_mail(smtp: SmtpReceiver, count: int) -> list[str]:
    return [m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            for _, m in smtp.wait_for(count)]


def test_subscribe_confirm_and_unsubscribe_in_the_browser_with_screenshots(
        page: Page, api: httpx.Client, smtp: SmtpReceiver, server: LiveServer,
        tmp_path: Path, browser: Browser) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    incident = api.post("/api/v1/incidents", json={
        "title": "API errors", "affected_services": ["api", "webhooks"],
        "public_message": "Looking into it"}).json()["id"]

    page.goto(after_writes(api, "/"))
    form = page.locator("form[action='/subscribe']")
    form.get_by_label("Email address").fill(ADDRESS)
    form.get_by_label("api").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

    (body,) = wait_for_mail(smtp, 1)
    link = re.search(r"https://status\.example\.com/subscribe/confirm\?token=\S+", body)
    assert link is not None, body
    page.goto(local(link.group(0)))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    shoot(page, "subscribe-confirm", folder)
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscribed")
    shoot(page, "subscribe-confirmed", folder)

    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    (listed,) = api.get("/api/v1/subscribers", headers=admin).json()["items"]
    assert listed["email"] == ADDRESS
    assert listed["services"] == ["api"]
    assert listed["confirmed"] is True

    api.post(f"/api/v1/incidents/{incident}/updates",
             json={"status": "identified", "public_message": "Found it"})
    smtp.wait_for(2)
    mail = smtp.messages[1][1]
    unsubscribe = str(mail["List-Unsubscribe"]).strip("<>")
    page.goto(local(unsubscribe))
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe")
    shoot(page, "subscribe-unsubscribe", folder)
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribed")
    assert api.get("/api/v1/subscribers", headers=admin).json() == {"items": []}

    # The same link again: a clear page, no error from the server.
    page.goto(local(unsubscribe))
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Link not valid")


def test_a_bad_address_is_shown_on_the_form(page: Page, api: httpx.Client) -> None:
    page.goto("/")
    form = page.locator("form[action='/subscribe']")
    form.get_by_label("Email address").fill("x" * 65 + "@example.com")  # local part > 64
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#subscribe-error")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
