"""The integrations API as the contract lists it: paths, status codes, fields, defaults,
problems for bad input, and no secret in any list."""

from __future__ import annotations

import base64
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.conftest import READER, TOKENS, WRITER, make_settings
from tests.receivers import HttpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
BASE = "/api/v1/integrations"
PUBLIC_URL = "https://hooks.example.com/incidents"  # never contacted: private networks allowed


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Destinations are not checked here (tests/e2e/test_integrations_ssrf.py does that),
    # so no name is ever looked up.
    return make_settings(database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    started = HttpReceiver().start()
    yield started
    started.stop()


def add(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post(BASE, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if field is not None:
        assert any(e["field"].split(".")[0] == field for e in body["errors"]), body
    return body


def test_create_a_webhook_answers_201_with_location_defaults_and_a_secret(
        http: httpx.Client) -> None:
    head = http.get("/api/v1/events", headers=READER).json()["last_position"]
    response = http.post(BASE, json={"kind": "webhook", "name": "ops", "url": PUBLIC_URL},
                         headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{BASE}/{body['id']}"
    assert body["kind"] == "webhook"
    assert body["name"] == "ops"
    assert body["url"] == PUBLIC_URL
    assert body["enabled"] is True
    assert body["event_types"] == []
    assert body["services"] == []
    assert body["min_severity"] == "minor"
    assert body["include_internal"] is False
    assert body["position"] == head
    assert body["lag"] == 0
    for name in ("last_delivered_at", "failing_since", "next_attempt_at", "disabled_reason"):
        assert body[name] is None
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24

    shown = http.get(f"{BASE}/{body['id']}", headers=ADMIN)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert secret not in shown.text
    assert {k: v for k, v in shown.json().items()} == {
        k: v for k, v in body.items() if k != "secret"}
    listed = http.get(BASE, headers=ADMIN)
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()["items"]] == [body["id"]]
    assert secret not in listed.text


def test_each_kind_takes_its_own_settings(http: httpx.Client) -> None:
    slack = add(http, kind="slack", name="chat", url="https://hooks.slack.com/services/T/B/X")
    pager = add(http, kind="pagerduty", name="on-call", routing_key="R0UTINGKEY0123456789abcdef")
    mail = add(http, kind="email", name="stakeholders", to=["a@example.com", "b@example.org"])
    assert "secret" not in slack
    assert "secret" not in pager
    assert "secret" not in mail
    assert pager["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert mail["to"] == ["a@example.com", "b@example.org"]
    # The routing key is a credential: never shown whole.
    for response in (http.get(f"{BASE}/{pager['id']}", headers=ADMIN),
                     http.get(BASE, headers=ADMIN)):
        assert "R0UTINGKEY0123456789abcdef" not in response.text
    assert pager["routing_key"].endswith("cdef")
    assert "*" in pager["routing_key"]


def test_filters_take_short_or_full_type_names(http: httpx.Client) -> None:
    body = add(http, kind="webhook", url=PUBLIC_URL,
               event_types=["created", "com.example.incident.resolved", "created"],
               services=["api"], min_severity="high", include_internal=True)
    assert body["event_types"] == ["com.example.incident.created",
                                   "com.example.incident.resolved"]
    assert body["services"] == ["api"]
    assert body["min_severity"] == "high"
    assert body["include_internal"] is True
    assert body["name"] == "webhook"  # named after its kind when no name is given


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "carrier-pigeon", "url": PUBLIC_URL}, "kind"),
    ({"url": PUBLIC_URL}, "kind"),
    ({"kind": "webhook"}, "url"),
    ({"kind": "webhook", "url": "not a url"}, "url"),
    ({"kind": "webhook", "url": "ftp://example.com/x"}, "url"),
    ({"kind": "webhook", "url": "https://"}, "url"),
    ({"kind": "webhook", "url": "https://example.com:99999/"}, "url"),
    ({"kind": "slack"}, "url"),
    ({"kind": "pagerduty"}, "routing_key"),
    ({"kind": "pagerduty", "routing_key": ""}, "routing_key"),
    ({"kind": "email"}, "to"),
    ({"kind": "email", "to": []}, "to"),
    ({"kind": "email", "to": ["not-an-address"]}, "to"),
    ({"kind": "email", "to": ["a@example.com\r\nBcc: x@example.com"]}, "to"),
    ({"kind": "email", "to": ["a@example.com"], "url": PUBLIC_URL}, "url"),
    ({"kind": "webhook", "url": PUBLIC_URL, "routing_key": "abc"}, "routing_key"),
    ({"kind": "webhook", "url": PUBLIC_URL, "event_types": ["exploded"]}, "event_types"),
    ({"kind": "webhook", "url": PUBLIC_URL, "event_types": "created"}, "event_types"),
    ({"kind": "webhook", "url": PUBLIC_URL, "services": "api"}, "services"),
    ({"kind": "webhook", "url": PUBLIC_URL, "services": [""]}, "services"),
    ({"kind": "webhook", "url": PUBLIC_URL, "min_severity": "apocalyptic"}, "min_severity"),
    ({"kind": "webhook", "url": PUBLIC_URL, "include_internal": "yes"}, "include_internal"),
    ({"kind": "webhook", "url": PUBLIC_URL, "enabled": None}, "enabled"),
    ({"kind": "webhook", "url": PUBLIC_URL, "name": ""}, "name"),
    ({"kind": "webhook", "url": PUBLIC_URL, "secret": "whsec_AAAA"}, "secret"),
    ({"kind": "webhook", "url": PUBLIC_URL, "id": "integration-x"}, "id"),
])
def test_bad_settings_are_422_naming_the_field(http: httpx.Client, body: dict[str, Any],
                                               field: str) -> None:
    problem(http.post(BASE, json=body, headers=ADMIN), 422, field)
    assert http.get(BASE, headers=ADMIN).json()["items"] == []


def test_malformed_json_is_400(http: httpx.Client) -> None:
    problem(http.post(BASE, content=b"{", headers={**ADMIN, "Content-Type": "application/json"}),
            400)


def test_tokens_smaller_than_admin_are_refused(http: httpx.Client) -> None:
    body = add(http, kind="webhook", url=PUBLIC_URL)
    calls = [("GET", BASE, None), ("POST", BASE, {"kind": "webhook", "url": PUBLIC_URL}),
             ("GET", f"{BASE}/{body['id']}", None),
             ("PATCH", f"{BASE}/{body['id']}", {"enabled": False}),
             ("DELETE", f"{BASE}/{body['id']}", None),
             ("POST", f"{BASE}/{body['id']}/rotate-secret", None),
             ("GET", f"{BASE}/{body['id']}/deliveries", None),
             ("POST", f"{BASE}/{body['id']}/replay", {"after": 0}),
             ("POST", f"{BASE}/{body['id']}/test", None)]
    for method, path, json_body in calls:
        problem(http.request(method, path, json=json_body), 401)
        for headers in (READER, WRITER):
            problem(http.request(method, path, json=json_body, headers=headers), 403)
    still = http.get(f"{BASE}/{body['id']}", headers=ADMIN).json()
    assert still["enabled"] is True


def test_unknown_ids_are_404(http: httpx.Client) -> None:
    missing = f"{BASE}/integration-0123456789abcdef0123456789abcdef"
    for method, path, json_body in [
            ("GET", missing, None), ("PATCH", missing, {"enabled": False}),
            ("DELETE", missing, None), ("POST", f"{missing}/rotate-secret", None),
            ("GET", f"{missing}/deliveries", None),
            ("POST", f"{missing}/replay", {"after": 0}), ("POST", f"{missing}/test", None),
            ("GET", f"{BASE}/nonsense", None)]:
        problem(http.request(method, path, json=json_body, headers=ADMIN), 404)


def test_patch_changes_only_what_is_sent(http: httpx.Client) -> None:
    body = add(http, kind="webhook", name="ops", url=PUBLIC_URL, services=["api"])
    path = f"{BASE}/{body['id']}"
    paused = http.patch(path, json={"enabled": False}, headers=ADMIN)
    assert paused.status_code == 200, paused.text
    assert paused.json()["enabled"] is False
    assert paused.json()["services"] == ["api"]
    assert paused.json()["name"] == "ops"
    changed = http.patch(path, json={"name": "operations", "min_severity": "high",
                                     "event_types": ["resolved"]}, headers=ADMIN).json()
    assert changed["name"] == "operations"
    assert changed["min_severity"] == "high"
    assert changed["event_types"] == ["com.example.incident.resolved"]
    assert changed["enabled"] is False
    resumed = http.patch(path, json={"enabled": True}, headers=ADMIN).json()
    assert resumed["enabled"] is True
    assert resumed["disabled_reason"] is None
    assert http.get(path, headers=ADMIN).json() == resumed


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "slack"}, "kind"), ({"enabled": None}, "enabled"), ({"url": None}, "url"),
    ({"url": "gopher://x"}, "url"), ({"to": ["a@example.com"]}, "to"),
    ({"event_types": ["nope"]}, "event_types"), ({"colour": "red"}, "colour"),
    ({"min_severity": 3}, "min_severity"),
])
def test_bad_changes_are_422_and_change_nothing(http: httpx.Client, body: dict[str, Any],
                                                field: str) -> None:
    created = add(http, kind="webhook", url=PUBLIC_URL)
    path = f"{BASE}/{created['id']}"
    before = http.get(path, headers=ADMIN).json()
    problem(http.patch(path, json=body, headers=ADMIN), 422, field)
    assert http.get(path, headers=ADMIN).json() == before


def test_delete_removes_it(http: httpx.Client) -> None:
    body = add(http, kind="slack", url=PUBLIC_URL)
    assert http.delete(f"{BASE}/{body['id']}", headers=ADMIN).status_code == 204
    problem(http.get(f"{BASE}/{body['id']}", headers=ADMIN), 404)
    problem(http.delete(f"{BASE}/{body['id']}", headers=ADMIN), 404)
    assert http.get(BASE, headers=ADMIN).json()["items"] == []


def test_rotate_secret_gives_a_new_one_only_to_webhooks(http: httpx.Client) -> None:
    body = add(http, kind="webhook", url=PUBLIC_URL)
    rotated = http.post(f"{BASE}/{body['id']}/rotate-secret", headers=ADMIN)
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != body["secret"]
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret not in http.get(f"{BASE}/{body['id']}", headers=ADMIN).text
    slack = add(http, kind="slack", url=PUBLIC_URL)
    problem(http.post(f"{BASE}/{slack['id']}/rotate-secret", headers=ADMIN), 409)


def test_replay_is_202_from_a_position_the_store_has(http: httpx.Client) -> None:
    body = add(http, kind="webhook", url=PUBLIC_URL)
    path = f"{BASE}/{body['id']}/replay"
    accepted = http.post(path, json={"after": 0}, headers=ADMIN)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["after"] == 0
    head = accepted.json()["head"]
    problem(http.post(path, json={"after": head + 1}, headers=ADMIN), 422, "after")
    problem(http.post(path, json={"after": -1}, headers=ADMIN), 422, "after")
    problem(http.post(path, json={}, headers=ADMIN), 422, "after")
    problem(http.post(path, json={"after": "0"}, headers=ADMIN), 422, "after")


def test_deliveries_start_empty_and_refuse_a_foreign_cursor(http: httpx.Client) -> None:
    body = add(http, kind="webhook", url=PUBLIC_URL)
    path = f"{BASE}/{body['id']}/deliveries"
    listed = http.get(path, headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "next_cursor": None}
    problem(http.get(path, params={"cursor": "not-ours"}, headers=ADMIN), 400)
    problem(http.get(path, params={"limit": 0}, headers=ADMIN), 422)


def test_test_sends_a_signed_message_now_and_lists_the_attempt(
        http: httpx.Client, receiver: HttpReceiver) -> None:
    body = add(http, kind="webhook", url=receiver.url)
    receiver.secret = body["secret"]
    tested = http.post(f"{BASE}/{body['id']}/test", headers=ADMIN)
    assert tested.status_code == 200, tested.text
    attempt = tested.json()
    assert attempt["outcome"] == "delivered"
    assert attempt["status_code"] == 204
    assert attempt["error"] is None
    assert attempt["attempt"] == 1
    [got] = receiver.delivered()
    assert got.verified is True
    assert got.headers["webhook-id"] == attempt["event_id"]
    assert got.headers["Content-Type"] == "application/cloudevents+json"
    assert got.json()["type"] == attempt["type"]
    listed = http.get(f"{BASE}/{body['id']}/deliveries", headers=ADMIN).json()["items"]
    assert listed == [attempt]

    receiver.mode = "fail"
    failed = http.post(f"{BASE}/{body['id']}/test", headers=ADMIN).json()
    assert failed["outcome"] == "failed"
    assert failed["status_code"] == 500
    assert failed["error"] == "HTTP 500"
    receiver.stop()
    refused = http.post(f"{BASE}/{body['id']}/test", headers=ADMIN).json()
    assert refused["outcome"] == "failed"
    assert refused["status_code"] is None
    assert "connect" in refused["error"]
    listed = http.get(f"{BASE}/{body['id']}/deliveries", headers=ADMIN).json()["items"]
    assert [a["outcome"] for a in listed] == ["failed", "failed", "delivered"]


def test_deliveries_are_paged_newest_first(http: httpx.Client, receiver: HttpReceiver) -> None:
    body = add(http, kind="slack", url=receiver.url)
    for _ in range(5):
        assert http.post(f"{BASE}/{body['id']}/test", headers=ADMIN).status_code == 200
    path = f"{BASE}/{body['id']}/deliveries"
    seen: list[str] = []
    cursor = None
    while True:
        page = http.get(path, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                        headers=ADMIN).json()
        assert len(page["items"]) <= 2
        seen += [a["at"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    assert all(r.json()["text"].startswith("Test message") for r in receiver.delivered())


def test_destinations_must_show_a_trusted_certificate(http: httpx.Client,
                                                      tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver = HttpReceiver(tls=context).start()
    try:
        body = add(http, kind="webhook", url=receiver.url)
        assert body["url"].startswith("https://")
        attempt = http.post(f"{BASE}/{body['id']}/test", headers=ADMIN).json()
    finally:
        receiver.stop()
    assert attempt["outcome"] == "failed"
    assert attempt["error"].startswith("TLS: ")
    assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"]
    assert receiver.delivered() == []
