"""The dashboard's Integrations page, driven in headless Chromium: an admin adds a webhook
(its secret shown once), sends a test that a real receiver verifies, pauses, resumes and
replays it; readers are told they need an admin token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from infra.bootstrap import Services, bootstrap
from tests.browser.conftest import sign_in
from tests.conftest import TOKENS, make_settings
from tests.receivers import HttpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}


@pytest.fixture(scope="module")
def browser_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'store.db'}"
    built = bootstrap(make_settings(url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
                                    DELIVERY_RETRY_INITIAL_SECONDS="1"))
    built.start_projections()
    built.start_delivery()
    yield built
    built.close()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    started = HttpReceiver().start()
    yield started
    started.stop()


def test_an_admin_adds_tests_pauses_resumes_and_replays_a_webhook(
        page: Page, api: httpx.Client, receiver: HttpReceiver) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    sign_in(page, "admin", "/dashboard/integrations")
    expect(page.get_by_role("link", name="Integrations")).to_be_visible()
    form = page.locator("#integration-form")
    form.get_by_label("Kind").select_option("webhook")
    form.get_by_label("Name").fill(name)
    form.get_by_label("URL").fill(receiver.url)
    form.get_by_label("Event types").select_option(["created", "resolved"])
    form.get_by_role("button", name="Add integration").click()
    secret_line = page.locator("[data-secret]")
    expect(secret_line).to_contain_text("signing secret, shown only now: whsec_")
    secret = (secret_line.text_content() or "").rpartition(": ")[2]
    receiver.secret = secret

    card = page.locator("section.integration", has_text=name)
    expect(card.locator("[data-state]")).to_have_text("Delivering")
    expect(card).to_contain_text("created, resolved events")
    expect(card.locator("[data-lag]")).to_have_text("0 events")
    listed = api.get("/api/v1/integrations", headers=ADMIN).json()["items"]
    [mine] = [i for i in listed if i["name"] == name]
    assert mine["event_types"] == ["com.example.incident.created",
                                   "com.example.incident.resolved"]
    assert secret not in page.content().replace(secret_line.inner_html(), "")

    card.get_by_role("button", name="Send a test").click()
    expect(page.locator("[data-report]")).to_have_text("Test delivered (answer 204).")
    [got] = receiver.delivered()
    assert got.verified is True  # signed with the secret the page showed
    expect(card.locator("table.deliveries")).to_contain_text("Delivered")

    card.get_by_role("button", name="Pause").click()
    expect(card.locator("[data-state]")).to_have_text("Paused")
    assert api.get(f"/api/v1/integrations/{mine['id']}", headers=ADMIN).json()["enabled"] is False
    card.get_by_role("button", name="Resume").click()
    expect(card.locator("[data-state]")).to_have_text("Delivering")

    card.get_by_label("Replay after position").fill("0")
    card.get_by_role("button", name="Replay").click()
    expect(page.locator("[data-report]")).to_have_text(
        "Replaying what was stored after position 0.")
    assert api.get(f"/api/v1/integrations/{mine['id']}", headers=ADMIN).json()["position"] == 0


def test_a_failing_integration_shows_since_when_and_its_failed_attempts(
        page: Page, api: httpx.Client, receiver: HttpReceiver) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    receiver.mode = "fail"
    added = api.post("/api/v1/integrations", headers=ADMIN, json={
        "kind": "slack", "name": name, "url": receiver.url, "services": [name]})
    assert added.status_code == 201, added.text
    sign_in(page, "admin", "/dashboard/integrations")
    card = page.locator("section.integration", has_text=name)
    expect(card.locator("[data-state]")).to_have_text("Delivering")
    created = api.post("/api/v1/incidents", json={"title": f"{name} incident",
                                                  "affected_services": [name]})
    assert created.status_code == 201
    expect(card.locator("[data-state]")).to_have_text("Failing")  # the page looks again
    expect(card.locator("[data-failing-since]")).to_be_visible()
    expect(card.locator("[data-lag]")).to_have_text("1 event")
    expect(card.locator("table.deliveries")).to_contain_text("HTTP 500")
    receiver.mode = "ok"
    receiver.wait_for(1)
    expect(card.locator("[data-state]")).to_have_text("Delivering")
    expect(card.locator("[data-lag]")).to_have_text("0 events")


def test_a_bad_destination_is_shown_on_its_field(page: Page) -> None:
    sign_in(page, "admin", "/dashboard/integrations")
    form = page.locator("#integration-form")
    form.get_by_label("Kind").select_option("email")
    form.get_by_label("Recipients").fill("not-an-address")
    form.get_by_role("button", name="Add integration").click()
    expect(form.locator('[data-error-for="to"]')).to_contain_text("not a mail address")
    form.get_by_label("Kind").select_option("slack")
    form.get_by_label("Recipients").fill("")
    form.get_by_role("button", name="Add integration").click()
    expect(form.locator('[data-error-for="url"]')).to_contain_text("required")


def test_a_reader_is_told_integrations_need_an_admin(page: Page) -> None:
    sign_in(page, "reader", "/dashboard/integrations")
    expect(page.get_by_role("link", name="Integrations")).to_be_hidden()
    expect(page.locator("[data-fragment]")).to_contain_text("need an admin token")
