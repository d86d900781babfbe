"""Public subscribers end to end, from a running server to a real SMTP server (aiosmtpd):
double opt-in through the link in the mail, every matching public change once and in
order per subscriber, one-click unsubscribe with the headers of a received message, and
erasure that leaves the address in no table, no event and no log line."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from infra.bootstrap import Services
from infra.settings import Settings
from tests.conftest import TOKENS, delivering, make_settings
from tests.e2e.test_integrations_delivery import (
    Commands,
    anonymous_documents,
    declare,
    post_update,
    wait_until,
)
from tests.receivers import SmtpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
BASE = "/api/v1/subscribers"
PUBLIC_BASE = "https://status.example.com"
LINK = re.compile(r"https://status\.example\.com/subscribe/confirm\?token=\S+")


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    return make_settings(database_url, SMTP_URL=smtp.url, PUBLIC_BASE_URL=PUBLIC_BASE,
                         EMAIL_FROM="Status <status@example.com>")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    yield from delivering(settings)


def mails_to(smtp: SmtpReceiver, address: str) -> list[EmailMessage]:
    with smtp.lock:
        return [m for rcpt, m in smtp.messages if address in rcpt]


def local(url: str) -> str:
    """A link of PUBLIC_BASE_URL, as a path of the server under test."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_BASE
    return f"{parts.path}?{parts.query}"


def confirm_through_mail(http: httpx.Client, smtp: SmtpReceiver, address: str) -> str:
    """Opens the link of the address's confirmation and presses the page's button; returns
    the token."""
    wait_until(lambda: len(mails_to(smtp, address)) == 1, 60, f"a confirmation to {address}")
    mail = mails_to(smtp, address)[0]
    body = mail.get_content()
    found = LINK.search(body)
    assert found is not None, body
    page = http.get(local(found.group(0)))
    assert page.status_code == 200
    token = parse_qs(urlsplit(found.group(0)).query)["token"][0]
    assert f'name="token" value="{token}"' in page.text
    assert 'action="/subscribe/confirm"' in page.text
    pressed = http.post("/subscribe/confirm", data={"token": token})
    assert pressed.status_code == 200, pressed.text
    assert "Subscribed" in pressed.text
    return token


def subscribe(http: httpx.Client, address: str, services: list[str]) -> httpx.Response:
    return http.post(BASE, json={"email": address, "services": services})


def received_ids(smtp: SmtpReceiver, address: str) -> list[str]:
    """The event id of each incident mail to the address, in arrival order."""
    return [str(m["Message-ID"]).strip("<>").split("@")[0] for m in mails_to(smtp, address)
            if m["List-Unsubscribe"] is not None]


def expected_ids(http: httpx.Client, services: Services, after: int,
                 incidents: list[str], chosen: set[str]) -> list[str]:
    public = anonymous_documents(http, incidents)
    affected = {}
    for incident in incidents:
        answer = http.get(f"/api/v1/incidents/{incident}")
        if answer.status_code == 200:
            affected[incident] = set(answer.json()["affected_services"])
    wanted = []
    for stored in services.event_log.read(after, 100_000):
        event_id = json.loads(stored.document)["id"]
        if event_id in public and (not chosen or affected[stored.subject] & chosen):
            wanted.append(event_id)
    return wanted


def wait_for_mails(smtp: SmtpReceiver, address: str, count: int) -> None:
    wait_until(lambda: len(received_ids(smtp, address)) >= count, 120,
               f"{count} mails to {address}")


def every_table_text(services: Services) -> str:
    """Every row of every table of the database, as text (the event store included)."""
    database = services.database
    found: list[str] = []
    with database.transaction() as cursor:
        if database.dialect == "sqlite":
            tables = [r[0] for r in cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
            for table in tables:
                for row in cursor.execute(f'SELECT * FROM "{table}"').fetchall():
                    found.extend(v.decode("utf-8", "replace") if isinstance(v, bytes)
                                 else str(v) for v in row)
        else:
            tables = [r[0] for r in cursor.execute(
                "SELECT table_schema || '.\"' || table_name || '\"' FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()]
            for table in tables:
                for row in cursor.execute(f"SELECT t::text FROM {table} t").fetchall():
                    found.append(str(row[0]))
    return "\n".join(found)


# The test's own SMTP server and HTTP client log what they send and receive.
HARNESS = ("mail.log", "httpx", "httpcore")


def app_line(record: logging.LogRecord) -> str:
    """A log line of the service, with its details (empty for the test's own tools)."""
    if record.name.startswith(HARNESS):
        return ""
    return logging.Formatter("%(name)s %(message)s %(exc_text)s").format(record)


def raw_event_store(services: Services) -> bytes:
    return b"\n".join(e.document for e in services.event_log.read(0, 1_000_000))


def test_subscribe_confirm_receive_unsubscribe_and_erase(
        http: httpx.Client, services: Services, smtp: SmtpReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    everyone, api_only, billing = ("all@example.org", "api.person@example.org",
                                   "billing@example.org")
    # Known or not, the answer is the same; a second sign-up within the hour sends nothing.
    first = subscribe(http, everyone, [])
    again = subscribe(http, everyone, ["api"])
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert subscribe(http, api_only, ["api"]).status_code == 202
    assert subscribe(http, billing, ["billing"]).status_code == 202
    confirm_through_mail(http, smtp, api_only)
    confirm_through_mail(http, smtp, billing)
    everyone_token = confirm_through_mail(http, smtp, everyone)
    # Used: the token confirms once; and a confirmation token cannot unsubscribe.
    assert http.post(f"{BASE}/confirm", json={"token": everyone_token}).status_code == 400
    assert http.post(f"{BASE}/unsubscribe", json={"token": everyone_token}).status_code == 400
    time.sleep(0.5)
    assert len(mails_to(smtp, everyone)) == 1, "exactly one confirmation"
    listed = http.get(BASE, headers=ADMIN).json()["items"]
    assert {i["email"]: (i["confirmed"], i["services"]) for i in listed} == {
        everyone: (True, []), api_only: (True, ["api"]), billing: (True, ["billing"])}

    start = services.event_log.last_position()
    commands = Commands(http, seed=11)
    private = declare(http, is_public=False, affected_services=["api"], title="Hidden")
    post_update(http, private, status="identified", public_message="not for mail")
    commands.run(48)
    incidents = [*commands.status, private]
    wanted = {address: expected_ids(http, services, start, incidents, chosen)
              for address, chosen in ((everyone, set()), (api_only, {"api"}),
                                      (billing, {"billing"}))}
    assert wanted[everyone]
    assert wanted[api_only]
    assert not wanted[billing], "no incident affects billing"
    for address, ids in wanted.items():
        wait_for_mails(smtp, address, len(ids))
    time.sleep(1.0)
    for address, ids in wanted.items():
        assert received_ids(smtp, address) == ids, address  # each once, in store order
    for _, mail in smtp.messages:
        text = mail.as_string()
        for secret in ("internal detail", "initial notes", "Hidden", "not for mail"):
            assert secret not in text

    # One click with the headers of a received message: no more mail.
    mail = mails_to(smtp, api_only)[-1]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(mail["List-Unsubscribe"]).strip("<>")
    assert url in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    clicked = http.post(local(url), content=b"List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert clicked.status_code == 200
    assert http.post(local(url), content=b"List-Unsubscribe=One-Click", headers={
        "Content-Type": "application/x-www-form-urlencoded"}).status_code == 400
    before = {a: len(mails_to(smtp, a)) for a in (everyone, api_only)}
    later = declare(http, affected_services=["api"], title="After the click")
    wait_until(lambda: len(mails_to(smtp, everyone)) == before[everyone] + 1, 60,
               "the next mail to the one still subscribed")
    time.sleep(1.0)
    assert len(mails_to(smtp, api_only)) == before[api_only]

    # Erasure: the address is in no table, no event, no log line.
    everyone_id = next(i["id"] for i in listed if i["email"] == everyone)
    assert http.delete(f"{BASE}/{everyone_id}", headers=ADMIN).status_code == 204
    assert http.delete(f"{BASE}/{everyone_id}", headers=ADMIN).status_code == 404
    post_update(http, later, status="resolved", public_message="Fixed")
    time.sleep(1.0)
    assert len(mails_to(smtp, everyone)) == before[everyone] + 1
    tables = every_table_text(services)
    assert "billing@example.org" in tables  # the search does find addresses
    for gone in (everyone, api_only):
        assert gone not in tables
        assert gone.encode() not in raw_event_store(services)
    events = http.get("/api/v1/events", headers=ADMIN)
    for address in (everyone, api_only, billing):
        assert address not in events.text
        assert not [r for r in caplog.records if address in app_line(r)]


def test_answers_are_the_same_for_known_and_unknown_addresses(
        http: httpx.Client, smtp: SmtpReceiver) -> None:
    answers = [subscribe(http, "same@example.org", []) for _ in range(3)]
    answers.append(subscribe(http, "other@example.org", ["web"]))
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    smtp.wait_for(2)
    time.sleep(0.5)
    assert len(mails_to(smtp, "same@example.org")) == 1


@pytest.mark.parametrize("body", [
    {"email": "not-an-address", "services": []},
    {"email": "a@example.org", "services": "api"},
    {"email": "a@example.org", "services": [""]},
    {"services": []},
    {"email": "a@example.org", "extra": 1},
    {"email": "a\r\nBcc: b@example.org", "services": []},
])
def test_bad_sign_ups_are_refused_and_send_nothing(
        http: httpx.Client, smtp: SmtpReceiver, body: dict[str, Any]) -> None:
    answer = http.post(BASE, json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert http.get(BASE, headers=ADMIN).json() == {"items": []}


def test_bad_tokens_are_400(http: httpx.Client) -> None:
    for path in ("confirm", "unsubscribe"):
        assert http.post(f"{BASE}/{path}", json={"token": "x" * 43}).status_code == 400
    assert http.post(f"{BASE}/unsubscribe?token=abc", content=b"List-Unsubscribe=Other",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}
                     ).status_code == 400
    assert http.post(f"{BASE}/unsubscribe", content=b"{nope").status_code == 400
    assert http.post("/subscribe/confirm", data={"token": "nope"}).status_code == 400
    assert http.get("/subscribe/confirm").status_code == 422


def test_admin_only_list_and_erase(http: httpx.Client) -> None:
    assert http.get(BASE).status_code == 401
    assert http.delete(f"{BASE}/whatever").status_code == 401
    assert http.delete(f"{BASE}/whatever", headers=ADMIN).status_code == 404
