"""One integration's delivery handler against real receivers on loopback and a real store
(SQLite and PostgreSQL): what each kind sends, filters, order, retries and disabling.
A small loop stands in for its follower: read the events after the saved position, hand
them over, until nothing is left."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commands.application import NewIncident, NewUpdate
from domain.values import Severity, Status
from infra.bootstrap import Services
from infra.integrations.delivery import DeliveryFailed, IntegrationDelivery
from infra.integrations.occurrences import public_form
from infra.settings import Settings
from tests.conftest import make_settings
from tests.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
                         DELIVERY_RETRY_INITIAL_SECONDS="0.05",
                         DELIVERY_RETRY_MAX_SECONDS="0.2",
                         PUBLIC_BASE_URL="https://status.example.com")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    started = HttpReceiver().start()
    yield started
    started.stop()


def declare(services: Services, title: str = "Payments failing", **fields: Any) -> str:
    new = NewIncident(title=title, given=frozenset({"title", *fields}), **fields)
    return services.commands.create(new).incident_id


def update(services: Services, incident_id: str, **fields: Any) -> None:
    services.commands.add_update(incident_id, NewUpdate(**fields))


def handler_for(app: Services, **body: Any) -> IntegrationDelivery:
    integration = app.integrations.create(body)
    return IntegrationDelivery(integration, app.integrations.context, threading.Event())


def drain(handler: IntegrationDelivery, services: Services) -> None:
    """Delivers everything stored after the handler's saved position."""
    handler.open()
    try:
        while events := services.event_log.read(handler.saved, handler.batch_size):
            handler.deliver(events)
    finally:
        handler.close()


def stored(services: Services) -> list[bytes]:
    return [e.document for e in services.event_log.read(0, 10_000)]


def test_a_webhook_gets_each_event_once_in_order_as_stored_and_signed(
        services: Services, receiver: HttpReceiver) -> None:
    declare(services, "Before the integration existed")
    handler = handler_for(services, kind="webhook", url=receiver.url, include_internal=True)
    receiver.secret = handler.integration.secret
    first = declare(services, internal_notes="db01 is down", severity=Severity.HIGH)
    update(services, first, status=Status.IDENTIFIED, message="failover", public_message="Found")
    services.commands.change_details(first, {"internal_notes": "db02 promoted"})
    private = declare(services, "Private one", is_public=False)
    update(services, first, status=Status.RESOLVED, public_message="Fixed")
    services.commands.delete(private)
    drain(handler, services)
    drain(handler, services)  # nothing is sent twice
    expected = stored(services)[1:]
    got = receiver.delivered()
    assert [r.body for r in got] == expected
    assert all(r.verified for r in got)
    assert [r.headers["webhook-id"] for r in got] == [json.loads(d)["id"] for d in expected]
    assert {r.headers["Content-Type"] for r in got} == {"application/cloudevents+json"}
    attempts, _ = services.integrations.deliveries(handler.integration.id, None, 100)
    assert [a.event_id for a in reversed(attempts)] == [json.loads(d)["id"] for d in expected]
    assert {(a.outcome, a.attempt, a.status_code) for a in attempts} == {("delivered", 1, 204)}
    assert services.integrations.store.position(handler.integration.id) == \
        services.event_log.last_position()


def test_a_public_webhook_gets_only_what_an_anonymous_reader_may_see(
        services: Services, receiver: HttpReceiver) -> None:
    handler = handler_for(services, kind="webhook", url=receiver.url)
    public = declare(services, internal_notes="secret notes")
    update(services, public, status=Status.IDENTIFIED, message="internal", public_message="Found")
    services.commands.change_details(public, {"internal_notes": "more secrets"})
    hidden = declare(services, "Private", is_public=False)
    update(services, hidden, public_message="not for you")
    withdrawn = declare(services, "Withdrawn")
    services.commands.delete(withdrawn)  # the anonymous reader no longer sees it at all
    drain(handler, services)
    documents = {json.loads(d)["id"]: d for d in stored(services)}
    bodies = [r.body for r in receiver.delivered()]
    types = [json.loads(b)["type"].rpartition(".")[2] for b in bodies]
    assert types == ["created", "update_added", "created"]
    for body in bodies:
        assert body == public_form(documents[json.loads(body)["id"]])
        assert b"secret" not in body
        assert b"internal" not in body
        assert b"not for you" not in body


def test_filters_choose_types_services_and_severity(services: Services,
                                                    receiver: HttpReceiver) -> None:
    handler = handler_for(services, kind="webhook", url=receiver.url,
                          event_types=["created", "resolved"], services=["api", "db"],
                          min_severity="high")
    chosen = declare(services, "Chosen", severity=Severity.CRITICAL,
                     affected_services=("db", "web"))
    declare(services, "Too small", severity=Severity.MEDIUM, affected_services=("db",))
    declare(services, "Elsewhere", severity=Severity.CRITICAL, affected_services=("web",))
    update(services, chosen, status=Status.RESOLVED)
    drain(handler, services)
    got = [json.loads(r.body) for r in receiver.delivered()]
    assert [(g["type"], g["subject"]) for g in got] == [
        ("com.example.incident.created", chosen), ("com.example.incident.resolved", chosen)]


def test_a_failure_keeps_order_and_is_retried_after_a_back_off(
        services: Services, receiver: HttpReceiver) -> None:
    handler = handler_for(services, kind="webhook", url=receiver.url)
    receiver.secret = handler.integration.secret
    first = declare(services, "First")
    drain(handler, services)
    receiver.mode = "fail"
    declare(services, "Second")
    declare(services, "Third")
    with pytest.raises(DeliveryFailed, match="HTTP 500"):
        drain(handler, services)
    state = services.integrations.get(handler.integration.id).state
    assert state.failing_since is not None
    assert state.failures == 1
    assert state.next_attempt_at is not None
    latest, _ = services.integrations.deliveries(handler.integration.id, None, 1)
    failed = latest[0]
    ended = failed.at.timestamp() + failed.duration_ms / 1000
    delay = state.next_attempt_at.timestamp() - ended
    # The first wait, from the end of the attempt: 75-100 % of DELIVERY_RETRY_INITIAL (0.05 s),
    # give or take the few milliseconds between the answer and the reckoning.
    assert 0.0375 <= delay <= 0.07
    # What was delivered before the failure is done; the failed event is next.
    first_position = services.event_log.read_all(first)[-1].position
    assert services.integrations.store.position(handler.integration.id) == first_position
    time.sleep(1.1)  # so that the retry is signed in another second
    with pytest.raises(DeliveryFailed):
        drain(handler, services)  # the second failure
    assert services.integrations.get(handler.integration.id).state.failures == 2
    receiver.mode = "ok"
    drain(handler, services)
    titles = [r.json()["data"]["title"] for r in receiver.delivered()]
    assert titles == ["First", "Second", "Third"]
    assert all(r.verified for r in receiver.delivered())
    attempts, _ = services.integrations.deliveries(handler.integration.id, None, 100)
    assert [(a.outcome, a.attempt) for a in reversed(attempts)] == [
        ("delivered", 1), ("failed", 1), ("failed", 2), ("delivered", 3), ("delivered", 1)]
    second = receiver.received[1:4]
    assert len({r.headers["webhook-id"] for r in second}) == 1  # the same id each time ...
    assert len({r.headers["webhook-timestamp"] for r in second}) > 1  # ... signed afresh
    assert all(r.verified for r in receiver.received)
    state = services.integrations.get(handler.integration.id).state
    assert (state.failing_since, state.next_attempt_at, state.failures) == (None, None, 0)
    assert state.last_delivered_at is not None


def test_an_integration_failing_too_long_is_disabled_and_resumes_where_it_stopped(
        database_url: str, receiver: HttpReceiver) -> None:
    from infra.bootstrap import bootstrap

    services = bootstrap(make_settings(
        database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true",
        DELIVERY_RETRY_INITIAL_SECONDS="0.05", DELIVERY_RETRY_MAX_SECONDS="0.1",
        DELIVERY_DISABLE_AFTER_HOURS="0.0001"))  # 0.36 s
    try:
        handler = handler_for(services, kind="slack", url=receiver.url)
        receiver.mode = "fail"
        declare(services, "Down for long")
        deadline = time.monotonic() + 30
        while not handler.stop.is_set():
            assert time.monotonic() < deadline, "never disabled"
            with pytest.raises(DeliveryFailed):
                drain(handler, services)
        shown = services.integrations.describe(services.integrations.get(handler.integration.id))
        assert shown["enabled"] is False
        assert shown["disabled_reason"].startswith("failing since ")
        assert "HTTP 500" in shown["disabled_reason"]
        assert shown["lag"] == 1
        receiver.mode = "ok"
        resumed = services.integrations.change(handler.integration.id, {"enabled": True})
        assert resumed.state.disabled_reason is None
        assert resumed.state.failing_since is None
        again = IntegrationDelivery(resumed, services.integrations.context, threading.Event())
        drain(again, services)
        assert [r.json()["text"].split(" — ")[0] for r in receiver.delivered()] == [
            "Down for long"]
    finally:
        services.close()


def test_slack_gets_a_line_and_blocks_with_a_link(services: Services,
                                                  receiver: HttpReceiver) -> None:
    handler = handler_for(services, kind="slack", url=receiver.url)
    incident = declare(services, "Checkout <errors> & timeouts", severity=Severity.HIGH,
                       affected_services=("checkout", "payments"),
                       public_message="We are looking into it", internal_notes="hidden")
    update(services, incident, status=Status.IDENTIFIED, public_message="Cause found",
           message="internal only")
    drain(handler, services)
    created, identified = (r.json() for r in receiver.delivered())
    assert created["text"] == "Checkout <errors> & timeouts — Investigating, high severity"
    assert identified["text"] == "Checkout <errors> & timeouts — Identified, high severity"
    blocks = json.dumps(identified["blocks"])
    assert "Checkout &lt;errors&gt; &amp; timeouts" in blocks
    assert "Cause found" in blocks
    assert "checkout, payments" in blocks
    assert "high" in blocks
    assert f"<https://status.example.com/incidents/{incident}|View the incident>" in blocks
    assert "hidden" not in blocks
    assert "internal only" not in blocks
    assert identified["blocks"][0] == {
        "type": "header", "text": {"type": "plain_text", "text": "Checkout <errors> & timeouts"}}


def test_pagerduty_triggers_acknowledges_resolves_and_triggers_again_on_reopen(
        services: Services, receiver: HttpReceiver) -> None:
    handler = handler_for(services, kind="pagerduty", url=receiver.url,
                          routing_key="R0UTINGKEY0123456789")
    incident = declare(services, "Search down", severity=Severity.HIGH,
                       affected_services=("search", "api"), affected_regions=("eu",),
                       public_message="Searching is failing")
    services.commands.change_details(incident, {"description": "nothing sent for this"})
    update(services, incident, public_message="still looking")  # no status change
    update(services, incident, status=Status.IDENTIFIED, public_message="Index corrupt")
    update(services, incident, status=Status.MONITORING, public_message="Rebuilt")
    update(services, incident, status=Status.RESOLVED, public_message="Fixed")
    update(services, incident, status=Status.INVESTIGATING, public_message="Back again")
    services.commands.delete(incident)
    drain(handler, services)
    sent = [r.json() for r in receiver.delivered()]
    assert [s["event_action"] for s in sent] == [
        "trigger", "acknowledge", "acknowledge", "resolve", "trigger", "resolve"]
    assert {s["dedup_key"] for s in sent} == {incident}
    assert {s["routing_key"] for s in sent} == {"R0UTINGKEY0123456789"}
    trigger = sent[0]
    assert trigger["payload"]["summary"] == "Search down"
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["source"] == "search"
    assert trigger["payload"]["custom_details"] == {
        "status": "investigating", "services": ["search", "api"], "regions": ["eu"],
        "public_message": "Searching is failing"}
    assert trigger["links"] == [{"href": f"https://status.example.com/incidents/{incident}",
                                 "text": "Incident page"}]
    assert sent[4]["payload"]["custom_details"]["public_message"] == "Back again"
    attempts, _ = services.integrations.deliveries(handler.integration.id, None, 100)
    assert all("R0UTINGKEY" not in json.dumps(a.as_dict(), default=str) for a in attempts)


@pytest.mark.parametrize(("severity", "expected"), [
    (Severity.CRITICAL, "critical"), (Severity.HIGH, "error"), (Severity.MEDIUM, "warning"),
    (Severity.LOW, "info"), (Severity.MINOR, "info")])
def test_pagerduty_severity_mapping(services: Services, receiver: HttpReceiver,
                                    severity: Severity, expected: str) -> None:
    handler = handler_for(services, kind="pagerduty", url=receiver.url, routing_key="KEY")
    declare(services, severity=severity)
    drain(handler, services)
    [sent] = [r.json() for r in receiver.delivered()]
    assert sent["payload"]["severity"] == expected
    assert sent["payload"]["source"] == "product-status"


def test_email_threads_by_incident_with_text_and_html(database_url: str) -> None:
    from infra.bootstrap import bootstrap

    mail = SmtpReceiver().start()
    services = bootstrap(make_settings(
        database_url, SMTP_URL=mail.url, EMAIL_FROM="Status <status@example.com>",
        PUBLIC_BASE_URL="https://status.example.com"))
    try:
        handler = handler_for(services, kind="email", to=["ops@example.com", "cto@example.org"])
        incident = declare(services, "Login <broken>", severity=Severity.CRITICAL,
                           affected_services=("auth",), public_message="Logins fail",
                           internal_notes="never in mail")
        update(services, incident, status=Status.RESOLVED, public_message="Logins work",
               message="never either")
        drain(handler, services)
        received = mail.wait_for(3)
        ids = [json.loads(d)["id"] for d in stored(services)]
    finally:
        services.close()
        mail.stop()
    (to1, created), (_, updated), (_, resolved) = received
    assert sorted(to1) == ["cto@example.org", "ops@example.com"]
    assert created["Subject"] == "[Investigating] Login <broken>"
    assert updated["Subject"] == "[Resolved] Login <broken>"
    assert resolved["Subject"] == "[Resolved] Login <broken>"
    assert created["From"] == "Status <status@example.com>"
    root = created["Message-ID"]
    assert [m["Message-ID"] for _, m in received] == [f"<{i}@example.com>" for i in ids]
    assert "In-Reply-To" not in created
    for later in (updated, resolved):
        assert later["In-Reply-To"] == root
        assert later["References"] == root
    assert len({m["Message-ID"] for _, m in received}) == 3
    text_part, html_part = created.get_body(("plain",)), created.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Login <broken>" in text
    assert "Logins fail" in text
    assert "Login &lt;broken&gt;" in html
    assert "<broken>" not in html
    assert f"https://status.example.com/incidents/{incident}" in html
    for _, message in received:
        assert "never" not in message.as_string()


def test_secrets_and_routing_keys_stay_out_of_logs_and_attempts(
        services: Services, receiver: HttpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    receiver.mode = "fail"
    slack_url = receiver.url + "/T0SECRET/B0SECRET/XXSECRETPATH"
    slack = handler_for(services, kind="slack", url=slack_url)
    pager = handler_for(services, kind="pagerduty", url=receiver.url,
                        routing_key="ROUTINGKEYSECRET123")
    hook = handler_for(services, kind="webhook", url=receiver.url)
    declare(services, "Leaky?")
    for handler in (slack, pager, hook):
        with pytest.raises(DeliveryFailed):
            drain(handler, services)
        services.integrations.test(handler.integration.id)
    assert hook.integration.secret is not None
    attempts = [json.dumps([a.as_dict() for a in services.integrations.deliveries(
        h.integration.id, None, 100)[0]], default=str) for h in (slack, pager, hook)]
    shown = [json.dumps(services.integrations.describe(i), default=str)
             for i in services.integrations.all()]
    for text in (caplog.text, *attempts, *shown):
        assert "ROUTINGKEYSECRET123" not in text
        assert hook.integration.secret not in text
        assert "XXSECRETPATH" not in caplog.text
