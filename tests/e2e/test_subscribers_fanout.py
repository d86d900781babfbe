"""The subscribers' fan-out survives the mail server going away in the middle: every
confirmed subscriber gets the update exactly once (receipts skip whoever has it when the
batch is tried again), and an integration beside it is not held back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from infra.bootstrap import Services
from infra.settings import Settings
from tests.conftest import delivering, make_settings
from tests.e2e.test_integrations_delivery import declare, post_update, wait_until
from tests.receivers import HttpReceiver, SmtpReceiver
from tests.subscribers import confirmed_subscribers

SUBSCRIBERS = 200
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    return make_settings(database_url, SMTP_URL=smtp.url,
                         INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    yield from delivering(settings)


def test_every_subscriber_gets_the_update_once_though_the_mail_server_died(
        http: httpx.Client, services: Services, smtp: SmtpReceiver) -> None:
    incident = declare(http, title="Payments failing", affected_services=["payments"])
    addresses = confirmed_subscribers(services, SUBSCRIBERS, name="reader",
                                      domain="example.net")
    hook = HttpReceiver().start()
    try:
        added = http.post("/api/v1/integrations", headers=ADMIN,
                          json={"kind": "webhook", "url": hook.url})
        assert added.status_code == 201, added.text
        post_update(http, incident, status="identified", public_message="Card processor down")

        # Stop the mail server once about half the mail is in, start it again a bit later.
        smtp.wait_for(SUBSCRIBERS // 2, timeout=120)
        smtp.stop()
        stopped_at = len(smtp.messages)
        # The integration is not held back meanwhile.
        hook.wait_for(1, timeout=60)
        threading.Event().wait(2.0)
        smtp.start()
        smtp.wait_for(SUBSCRIBERS, timeout=180)
        time.sleep(1.5)
    finally:
        hook.stop()
    assert stopped_at < SUBSCRIBERS, "the server was stopped in the middle"
    received = Counter(rcpt for recipients, _ in smtp.messages for rcpt in recipients)
    assert set(received) == set(addresses)
    assert [a for a, n in received.items() if n != 1] == []
    ids = {str(m["Message-ID"]) for _, m in smtp.messages}
    assert len(ids) == 1, "the same event's mail to everyone"
    wait_until(lambda: services.subscriber_mail.state().position
               == services.event_log.last_position(), 30, "the follower caught up")
    assert receipts(services) == SUBSCRIBERS

    # Receipts are kept only while they may be needed: the next batch drops them.
    post_update(http, incident, status="monitoring", public_message="Recovering")
    smtp.wait_for(2 * SUBSCRIBERS, timeout=180)
    wait_until(lambda: receipts(services) == SUBSCRIBERS, 30, "the older receipts dropped")


def receipts(services: Services) -> int:
    with services.database.transaction() as cursor:
        row = cursor.execute("SELECT COUNT(*) FROM subscriber_receipts").fetchone()
    assert row is not None
    return int(row[0])
