"""The subscribers' mail follower against a real SMTP server (aiosmtpd), one batch at a
time: whoever unsubscribes while a batch is being sent gets none of its later mail."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from infra.bootstrap import Services
from infra.settings import Settings
from infra.subscribers.delivery import SubscriberDelivery
from infra.subscribers.store import unsubscribe_token
from tests.conftest import make_settings
from tests.integration.test_delivery import declare
from tests.receivers import SmtpReceiver
from tests.subscribers import confirm_subscribers

LEAVING, STAYING = "leaving@example.org", "staying@example.org"


@pytest.fixture
def settings(database_url: str, smtp: SmtpReceiver) -> Settings:
    return make_settings(database_url, SMTP_URL=smtp.url,
                         PUBLIC_BASE_URL="https://status.example.com")


@pytest.fixture
def delivery(services: Services) -> Iterator[SubscriberDelivery]:
    handler = SubscriberDelivery(services.subscribers.store, services.integrations.context)
    handler.open()
    yield handler
    handler.close()


def incident_mails(smtp: SmtpReceiver, address: str) -> list[str]:
    with smtp.lock:
        return [str(m["Subject"]) for rcpt, m in smtp.messages
                if address in rcpt and m["List-Unsubscribe"] is not None]


def test_who_unsubscribes_mid_batch_gets_none_of_its_later_mail(
        services: Services, smtp: SmtpReceiver, delivery: SubscriberDelivery) -> None:
    store = services.subscribers.store
    confirm_subscribers(services, [LEAVING, STAYING])
    leaving = next(s for s in store.confirmed() if s.email == LEAVING)
    start = services.event_log.last_position()
    declare(services, "First outage")
    declare(services, "Second outage")
    batch = services.event_log.read(start, 100)
    assert len(batch) == 2

    clicked: list[bool] = []

    def unsubscribe_on_first_mail(recipients: list[str], _: EmailMessage) -> None:
        if LEAVING in recipients and not clicked:  # the one-click POST, at once
            clicked.append(store.unsubscribe(unsubscribe_token(leaving.mail_key)))

    smtp.on_message = unsubscribe_on_first_mail
    delivery.deliver(batch)

    assert clicked == [True]

    assert incident_mails(smtp, STAYING) == ["[Investigating] First outage",
                                             "[Investigating] Second outage"]
    assert incident_mails(smtp, LEAVING) == ["[Investigating] First outage"]
